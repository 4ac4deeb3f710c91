"""README.md says what is true: its Python runs, its commands parse, its links resolve.

Every fenced ``python`` block runs in a fresh interpreter in an empty directory, after
:data:`PRELUDE` (shared set-up, empty today). So that the default run stays fast, the
lines listed in :data:`TINY` are swapped for tiny settings (each must still appear in
the README word for word, so the README cannot drift from this table); the slow test
runs every block exactly as written.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from privfl.cli import build_parser
from privfl.cli.options import all_parsers

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
PYTHON_BLOCKS = re.findall(r"^```python\n(.*?)^```", README, flags=re.S | re.M)
PRELUDE = ""
"""Code run before every block (set-up several blocks would share)."""
TINY = {
    "NUM_CLIENTS, SAMPLE_RATE, ROUNDS = 1000, 0.1, 60": "NUM_CLIENTS, SAMPLE_RATE, ROUNDS = 200, 0.2, 2",
}
"""README line -> the tiny setting the default run uses instead."""


def run_block(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.run(
        [sys.executable, "-c", PRELUDE + code], cwd=cwd, env=env, capture_output=True, text=True, timeout=900
    )


def tiny(code: str) -> str:
    for line, replacement in TINY.items():
        code = code.replace(line, replacement)
    return code


def test_the_readme_has_python_blocks_and_every_tiny_setting_matches_it() -> None:
    assert PYTHON_BLOCKS
    for line in TINY:
        assert sum(line in block for block in PYTHON_BLOCKS) == 1, f"README no longer has the line {line!r}"


@pytest.mark.parametrize("index", range(len(PYTHON_BLOCKS)))
def test_python_block_runs_with_tiny_settings(index: int, tmp_path: Path) -> None:
    proc = run_block(tiny(PYTHON_BLOCKS[index]), tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    if "calibrate_noise_multiplier" in PYTHON_BLOCKS[index]:  # the wrapping snippet: what it claims to print
        match = re.search(r"z = ([\d.]+); test accuracy ([\d.]+); epsilon spent ([\d.]+) of 3.0", proc.stdout)
        assert match, proc.stdout
        assert float(match.group(3)) == pytest.approx(3.0, abs=1e-3)  # the whole budget, never more
        assert (tmp_path / "run.ckpt").exists()


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(PYTHON_BLOCKS)))
def test_python_block_runs_as_written(index: int, tmp_path: Path) -> None:
    proc = run_block(PYTHON_BLOCKS[index], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]


def readme_commands() -> list[list[str]]:
    """Every ``privfl ...`` command quoted in the README (inline code), split into arguments."""
    found = [cmd for cmd in re.findall(r"`(privfl [^`]*)`", README) if "COMMAND" not in cmd]  # skip placeholders
    return [shlex.split(cmd.replace("[", "").replace("]", ""))[1:] for cmd in found]


def test_every_quoted_privfl_command_and_flag_exists() -> None:
    parsers = dict(all_parsers(build_parser()))
    commands = readme_commands()
    assert len(commands) >= 8
    for argv in commands:
        leading = [w for w in argv[: next((i for i, w in enumerate(argv) if w.startswith("-")), len(argv))]]
        path = max((p for p in parsers if tuple(leading[: len(p)]) == p), key=len)
        assert len(path) == len(leading), f"README quotes privfl {' '.join(argv)}: no such command"
        options = {o for a in parsers[path]._actions for o in a.option_strings}
        unknown = [w.split("=")[0] for w in argv if w.startswith("-") and w.split("=")[0] not in options]
        assert not unknown, f"README quotes privfl {' '.join(argv)}: no such flag {unknown}"


def test_relative_links_point_to_files_in_the_repository() -> None:
    links = re.findall(r"\]\(([^)#\s]+)\)", README)
    local = [link for link in links if "://" not in link]
    assert local
    missing = [link for link in local if not (ROOT / link).exists()]
    assert not missing


def test_no_reference_to_notes_outside_the_repository() -> None:
    assert "issue notes" not in README and "curve, below" not in README
