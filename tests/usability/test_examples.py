"""Every example in ``examples/`` runs, with the tiny settings of :data:`TINY`.

Each example runs in a fresh interpreter from its own folder, as its docstring says.
A new example must be added to :data:`TINY` (the first test fails until it is), so
none can rot unnoticed. Examples that need seconds of training, torch or Ray are
slow-marked (``make test-slow``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
TINY: dict[str, tuple[list[str], bool]] = {
    "quickstart.py": ([], False),
    "dp_fedavg.py": (["--seeds", "1", "--out", "{tmp}/dp_fedavg.png"], True),
    "opacus_client.py": (["--rounds", "1"], True),
    "ddp_fedavg.py": (["--bits", "16", "--mechanisms", "ddg", "--out", "{tmp}/ddp.png"], True),
    "flower_app/run_simulation.py": (["--num-rounds", "1"], True),
}
"""Example (relative to examples/) -> (arguments that make it tiny, whether it is slow)."""


def runnable_examples() -> set[str]:
    top = {p.name for p in EXAMPLES.glob("*.py")}
    apps = {str(p.relative_to(EXAMPLES)) for p in EXAMPLES.glob("*/run_*.py")}
    return top | apps


def test_every_example_has_tiny_settings() -> None:
    assert runnable_examples() == set(TINY)


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=[pytest.mark.slow] if slow else []) for n, (_, slow) in TINY.items()]
)
def test_example_runs(name: str, tmp_path: Path) -> None:
    script = EXAMPLES / name
    args = [a.format(tmp=tmp_path) for a in TINY[name][0]]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run(
        [sys.executable, script.name, *args], cwd=script.parent, env=env, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (proc.stdout + proc.stderr).strip()
    if not name.startswith("flower_app/"):  # Ray's workers log their own recovered errors on stderr
        assert "Traceback" not in proc.stderr
