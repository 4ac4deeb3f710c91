"""The ``privfl demo`` command as a user runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from privfl.cli import main


def test_demo_prints_accuracy_per_round_and_writes_plot(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    plot = tmp_path / "acc.png"
    assert main(["demo", "--rounds", "3", "--clients", "5", "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    assert out.count("accuracy") >= 3 and "round   3" in out
    assert "final test accuracy" in out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_help_runs_from_the_module_entry_point() -> None:
    """``python -m privfl``; every subcommand's help is checked in-process in tests/usability."""
    proc = subprocess.run([sys.executable, "-m", "privfl", "demo", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "usage: privfl demo" in proc.stdout


def test_bad_arguments_exit_with_a_clear_error(capsys: pytest.CaptureFixture) -> None:
    assert main(["demo", "--clients", "0", "--rounds", "1", "--quiet"]) == 2
    assert "error" in capsys.readouterr().err
