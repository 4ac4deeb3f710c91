"""Kill a training run mid-round with SIGKILL, resume it, and compare with an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from privfl.errors import CheckpointError
from privfl.server.checkpoint import load_checkpoint

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
import resume_job  # noqa: E402

ROUNDS = 12


def _wait_for_round(marker: Path, proc: subprocess.Popen, at_least: int, timeout: float = 60.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"job exited early with {proc.returncode}: {proc.stderr.read().decode()}")
        if marker.exists() and marker.read_text() and int(marker.read_text()) >= at_least:
            return int(marker.read_text())
        time.sleep(0.005)
    raise AssertionError("job made no progress")


def test_killed_run_resumes_to_the_same_model(tmp_path: Path) -> None:
    ckpt, marker = tmp_path / "run.ckpt", tmp_path / "round.txt"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])}
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "resume_job.py"), str(ckpt), str(ROUNDS), str(marker)],
        env=env,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_for_round(marker, proc, at_least=4)
        time.sleep(0.03)  # clients sleep in fit: the kill lands inside a round
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    done = load_checkpoint(ckpt)["round"]
    assert 4 <= done < ROUNDS, "the kill must land before the run finished"

    resumed = resume_job.run(ckpt, ROUNDS)
    uninterrupted = resume_job.run(None, ROUNDS)

    assert [r.server_round for r in resumed.history.rounds] == list(range(1, ROUNDS + 1))
    for name, value in uninterrupted.parameters.items():
        np.testing.assert_array_equal(resumed.parameters[name], value)
    assert load_checkpoint(ckpt)["round"] == ROUNDS


def test_resume_refuses_a_checkpoint_of_another_run(tmp_path: Path) -> None:
    ckpt = tmp_path / "run.ckpt"
    resume_job.run(ckpt, 2)
    from privfl.client.app import ClientApp
    from privfl.server.simulation import run_simulation
    from privfl.tasks.digits import initial_parameters

    with pytest.raises(CheckpointError, match="clients"):
        run_simulation(
            ClientApp(resume_job.FEDERATION),
            num_clients=5,
            num_rounds=3,
            initial_parameters=initial_parameters(),
            checkpoint=ckpt,
            progress=False,
        )
