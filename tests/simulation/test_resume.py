"""Kill a training run mid-round with SIGKILL, resume it, and compare with an uninterrupted run."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

from privfl.errors import CheckpointError
from privfl.server.checkpoint import load_checkpoint

HERE = Path(__file__).parent
sys.path[:0] = [str(HERE), str(HERE.parent)]
import resume_job  # noqa: E402
from kill_point import kill_mid_round  # noqa: E402

ROUNDS = 8
KILL_ROUND = 5


def test_killed_run_resumes_to_the_same_model(tmp_path: Path) -> None:
    ckpt = tmp_path / "run.ckpt"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])}
    kill_mid_round([str(HERE / "resume_job.py"), str(ckpt), str(ROUNDS), str(KILL_ROUND)], env, KILL_ROUND)
    assert load_checkpoint(ckpt)["round"] == KILL_ROUND - 1  # killed inside round 5, after round 4's checkpoint

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
