"""SecAgg+ with central DP on Flower's deployment runtime: a real SuperLink, 5 SuperNodes, one killed mid-round.

Every ClientApp message runs in a fresh ``flwr-clientapp`` process, so each SecAgg+
stage rebuilds the client from the sealed state in the SuperNode's node-local Context.
SuperNode 4 sleeps in ``fit`` and is killed (SIGKILL, with its ClientApp) once its fit
has started, i.e. after it shared its keys and before it sent its masked input: the
server must recover its pairwise masks from the survivors' shares.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from privfl.integrations.flower.local import LocalDeployment
from privfl.integrations.flower.state import STATE_DIR_ENV

APP = Path(__file__).resolve().parent / "deploy_app"
NUM_NODES, VICTIM, DIM = 5, 4, 8  # n = 5: k = 4, t = 3 (privfl's floor) tolerates one dropout
pytestmark = pytest.mark.slow  # starts 5 Flower processes; each message starts one more (minutes on 2 cores)


def test_secagg_with_central_dp_survives_a_supernode_killed_mid_round(tmp_path: Path) -> None:
    started = tmp_path / "victim-fit-started"
    node_configs = [{"partition-id": i, "num-partitions": NUM_NODES} for i in range(NUM_NODES)]
    node_configs[VICTIM].update({"fit-delay": 600.0, "started-file": str(started)})
    result_path = tmp_path / "result.json"
    env = {STATE_DIR_ENV: str(tmp_path / "node-keys")}
    with LocalDeployment(tmp_path / "deploy", NUM_NODES, node_configs=node_configs, env=env) as deployment:
        run = deployment.run(APP, {"result-path": str(result_path), "dim": DIM})
        deadline = time.monotonic() + 600
        while not started.exists():
            assert run.poll() is None, (tmp_path / "deploy" / "flwr-run-0.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the victim's fit never started"
            time.sleep(0.5)
        deployment.kill_supernode(VICTIM)
        deployment.wait(run, timeout=900)  # raises unless the run finished:completed
    result = json.loads(result_path.read_text())
    fit = result["fit"]
    assert [r for r, _ in fit["dp-epsilon"]] == [1, 2]
    assert fit["secagg-masked-input-dropped"][0][1] == 1.0  # the victim, recovered from its neighbours' shares
    # Survivors add 1, 2, 3 and 4; central DP divides the noised sum by the expected count q N.
    expected = sum(10.0 / expected_clients for _, expected_clients in fit["dp-expected-clients"])
    np.testing.assert_allclose(np.array(result["model"][0]), expected, atol=0.3)


def test_a_privfl_failure_in_the_serverapp_fails_the_run_visibly(tmp_path: Path) -> None:
    """``flwr run`` exits 0 whatever happens (flwr 1.41); the run's status names privfl's error."""
    env = {STATE_DIR_ENV: str(tmp_path / "node-keys")}
    with LocalDeployment(tmp_path / "deploy", 1, env=env) as deployment:
        run = deployment.run(APP, {"num-sampled-clients": 0})
        with pytest.raises(RuntimeError, match=r"finished:failed.*num_sampled_clients must be an int >= 1"):
            deployment.wait(run, timeout=600)
