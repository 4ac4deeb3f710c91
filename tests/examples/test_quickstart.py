"""The quickstart example runs as a user would run it and trains a useful model."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_quickstart_runs_and_reaches_90_percent() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py")], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    accuracies = [float(a) for a in re.findall(r"test accuracy ([0-9.]+)", proc.stdout)]
    assert len(accuracies) == 6
    assert accuracies[-1] >= 0.9
