"""The package layering: the protocol contract lives in the core, PETs never reach up.

Parses every module's imports (``ast``, nothing is imported) and fails on an edge
from a privacy package (``dp``, ``accounting``, ``secagg``, ``he``, ``ddp``) or the core to a
consumer package (``server``, ``client``, ``cli``, ``integrations``), and on any import
cycle between subpackages.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "privfl"
PETS = ("dp", "accounting", "secagg", "he", "ddp")
CONSUMERS = ("server", "client", "cli", "integrations", "audit", "tasks")
LOWER = ("core", "errors")


def _subpackage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "privfl" else None


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Absolute names of the privfl modules ``path`` imports (at any depth in the file)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("privfl"))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.startswith("privfl"):
            found.add(node.module)
    return found


def _edges() -> dict[str, set[tuple[str, str]]]:
    """subpackage -> {(importing module, imported module)} across subpackage boundaries."""
    edges: dict[str, set[tuple[str, str]]] = {}
    for path in PACKAGE.rglob("*.py"):
        src = _module_name(path)
        src_pkg = _subpackage(src)
        for target in _imports(path):
            dst_pkg = _subpackage(target)
            if src_pkg and dst_pkg and src_pkg != dst_pkg:
                edges.setdefault(src_pkg, set()).add((src, target))
    return edges


@pytest.mark.parametrize("pet", PETS + LOWER)
def test_pets_and_core_never_import_consumers(pet: str) -> None:
    bad = sorted((src, dst) for src, dst in _edges().get(pet, ()) if _subpackage(dst) in CONSUMERS)
    assert not bad, f"privfl.{pet} must not import consumer packages: {bad}"


def test_core_imports_only_errors() -> None:
    bad = sorted((s, d) for s, d in _edges().get("core", ()) if _subpackage(d) not in ("errors",))
    assert not bad, f"privfl.core may import only privfl.errors: {bad}"


def test_no_import_cycles_between_subpackages() -> None:
    graph = {pkg: {_subpackage(d) for _, d in pairs} for pkg, pairs in _edges().items()}
    cycles = []
    for start in graph:
        stack = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for nxt in graph.get(node, ()):
                if nxt == start:
                    cycles.append([*path, start])
                elif nxt not in path:
                    stack.append((nxt, [*path, nxt]))
    assert not cycles, f"import cycles between subpackages: {cycles[:5]}"


def test_the_checker_sees_a_planted_violation(tmp_path: Path) -> None:
    """The parser finds an upward import when one is there (the test can fail)."""
    planted = tmp_path / "planted.py"
    planted.write_text("def f():\n    from privfl.server.strategy import FedAvg\n    return FedAvg\n")
    assert _imports(planted) == {"privfl.server.strategy"}


def _third_party_imports(path: Path) -> set[str]:
    """Top-level names of the modules ``path`` imports, at any depth in the file."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def _imports_flower(path: Path) -> bool:
    privfl_flower = any(m.startswith("privfl.integrations.flower") for m in _imports(path))
    return privfl_flower or "flwr" in _third_party_imports(path)


def test_only_the_flower_integration_imports_flwr_or_is_imported_for_it(tmp_path: Path) -> None:
    """Core privfl runs without Flower: ``flwr`` and ``privfl.integrations.flower`` stay inside that package."""
    flower = PACKAGE / "integrations" / "flower"
    bad = sorted(p.name for p in PACKAGE.rglob("*.py") if flower not in p.parents and _imports_flower(p))
    assert not bad, f"modules outside privfl.integrations.flower import Flower: {bad}"
    planted = tmp_path / "planted.py"
    planted.write_text("def f():\n    import flwr.serverapp\n")
    assert _imports_flower(planted)
