"""Every example runs as the README says and prints what it promises."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_example(name: str, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name), *args], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.slow  # trains 3 budgets end to end
def test_dp_fedavg_spends_each_target_budget_and_writes_the_plot(tmp_path: Path) -> None:
    plot = tmp_path / "dp.png"
    out = run_example("dp_fedavg.py", "--seeds", "1", "--out", str(plot))
    rows = re.findall(r"^\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+) \+-", out, flags=re.M)
    assert [(target, spent) for target, _, spent, _ in rows] == [("1", "1.0000"), ("3", "3.0000"), ("8", "8.0000")]
    assert all(float(acc) > 0.7 for *_, acc in rows)
    assert plot.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow  # DP-SGD with Opacus on every client
def test_opacus_client_reports_record_level_epsilon() -> None:
    out = run_example("opacus_client.py")
    match = re.search(r"final test accuracy ([\d.]+); record-level epsilon .* max ([\d.]+), median ([\d.]+)", out)
    assert match, out[-2000:]
    accuracy, eps_max, eps_median = map(float, match.groups())
    assert accuracy > 0.5 and eps_max >= eps_median > 0


@pytest.mark.slow
def test_ddp_fedavg_reports_the_distributed_dp_row(tmp_path: Path) -> None:
    plot = tmp_path / "ddp.png"
    out = run_example("ddp_fedavg.py", "--bits", "16", "--mechanisms", "ddg", "--out", str(plot))
    row = re.search(r"^\| ddg \| 16 \| ([\d.]+) \| [-+\d.]+ pts \| ([\d.]+) \|", out, flags=re.M)
    assert row, out[-2000:]
    assert float(row.group(1)) > 0.7 and float(row.group(2)) <= 3.0
    assert plot.read_bytes()[:4] == b"\x89PNG"
