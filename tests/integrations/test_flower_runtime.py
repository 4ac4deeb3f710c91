"""privfl strategies on Flower's simulation runtime give the bundled loop's results for the same seeds and inputs.

One ``flwr.simulation.run_simulation`` (Ray backend, two actors: a node's consecutive
messages may run in different processes) hosts three privfl runs
on the same 8 Flower nodes, told apart by privfl's run id: plain FedAvg on the digits
task, SecAgg+ with a dropout, and central DP. Each is compared with
:func:`privfl.server.run_simulation` on the same inputs.
"""

from __future__ import annotations

import dataclasses
import os

import flwr  # noqa: F401
import numpy as np
import pytest
import ray  # noqa: F401
from flwr.serverapp import ServerApp
from flwr.simulation import run_simulation as flower_run_simulation

import privfl.dp as dp
import privfl.secagg as secagg
from privfl.client import ClientApp, NumPyClient
from privfl.core.message import Message
from privfl.integrations.flower import flower_client_app, run_on_grid
from privfl.server import FailurePlan, FedAvg, PoissonSampler
from privfl.server import run_simulation as bundled_run_simulation
from privfl.tasks.digits import DigitsFederation, initial_parameters

pytestmark = pytest.mark.slow  # starts Ray and a Flower simulation runtime (make test-slow runs it)

NUM_NODES = 8
TWO_ACTORS = {"init_args": {"num_cpus": 2}, "client_resources": {"num_cpus": 1}}
pytestmark = pytest.mark.slow  # starts Ray
FED = DigitsFederation(num_clients=NUM_NODES, alpha=0.5, seed=0)
PLAIN, SECAGG, DP = 1, 2, 3


class OnGridClient(NumPyClient):
    """Adds a fixed update of half-integers in [-127.5, 127.5]: exactly on the grid of the SecAgg+ quantiser
    below (8 bits, clip 127.5, step 1), so stochastic rounding never rounds and the sum is deterministic."""

    def __init__(self, node_id: int) -> None:
        self.node_id = node_id

    def fit(self, parameters, config):
        rng = np.random.default_rng([self.node_id, int(config["server_round"])])
        return [p + (rng.integers(0, 256, p.shape) - 127.5) for p in parameters], 10, {}


def on_grid_parameters() -> dict[str, np.ndarray]:
    return {"w": np.zeros((3, 4)), "b": np.zeros(5)}


SECAGG_CONFIG = secagg.SecAggConfig(coordinate_bound=127.5, bits=8, max_weight=1, weighting="uniform")
SECAGG_DROPOUT = FailurePlan.script([(2, "secagg.masked_input", 3)])


def plain_run() -> dict:
    return {
        "num_rounds": 2,
        "initial_parameters": initial_parameters(),
        "centralized_evaluate": FED.evaluate,
        "evaluate_fraction": 0.5,
        "seed": 4,
        "run_id": PLAIN,
    }


def secagg_run() -> dict:
    return {
        "num_rounds": 2,
        "initial_parameters": on_grid_parameters(),
        "strategy": FedAvg(aggregator=secagg.SecAggPlusAggregator(SECAGG_CONFIG, semi_honest=True)),
        "failures": SECAGG_DROPOUT,
        "seed": 4,
        "run_id": SECAGG,
    }


def dp_run() -> dict:
    central = dp.CentralDp.with_server_clipping(
        noise_multiplier=1.0, clip_norm=0.5, delta=1e-5, rng=np.random.default_rng(11)
    )
    return {
        "num_rounds": 3,
        "initial_parameters": initial_parameters(),
        "strategy": FedAvg(aggregator=central, min_clients=0),
        "sampler": PoissonSampler(0.5),
        "seed": 9,
        "run_id": DP,
    }


RUNS = {PLAIN: plain_run, SECAGG: secagg_run, DP: dp_run}
CLIENT_APPS = {
    PLAIN: ClientApp(FED),
    SECAGG: ClientApp(OnGridClient, mods=[secagg.SecAggMod(semi_honest=True)]),
    DP: ClientApp(FED),
}


PID_LOG = "PRIVFL_TEST_PID_LOG"


def by_run_id(message: Message, context) -> Message:
    """One Flower ClientApp for the three privfl runs, told apart by the run id privfl carries.

    Logs (run, node, stage, process id) so the test can see stages of one node in different actors.
    """
    md = message.metadata
    with open(os.environ[PID_LOG], "a") as log:
        log.write(f"{md.run_id} {md.server_round} {md.dst_node} {md.stage or '-'} {os.getpid()}\n")
    return CLIENT_APPS[md.run_id](message, context)


@pytest.fixture(scope="module")
def flower_results(tmp_path_factory: pytest.TempPathFactory) -> dict:
    results: dict = {}
    pid_log = tmp_path_factory.mktemp("pids") / "pids.txt"
    os.environ[PID_LOG] = str(pid_log)  # set before Ray starts, so its actors inherit it
    server = ServerApp()

    @server.main()
    def main(grid, context) -> None:
        for run_id, make in RUNS.items():
            results[run_id] = run_on_grid(grid, min_nodes=NUM_NODES, **make())

    flower_run_simulation(
        server_app=server,
        client_app=flower_client_app(by_run_id),
        num_supernodes=NUM_NODES,
        backend_config=TWO_ACTORS,
    )
    assert set(results) == set(RUNS), "the ServerApp failed; see the Flower log above"
    results["pids"] = [line.split() for line in pid_log.read_text().splitlines()]
    return results


def bundled(run_id: int):
    return bundled_run_simulation(CLIENT_APPS[run_id], num_clients=NUM_NODES, progress=False, **RUNS[run_id]())


def assert_same_run(flower, reference) -> None:
    assert list(flower.parameters) == list(reference.parameters)
    for name, value in reference.parameters.items():
        assert flower.parameters[name].dtype == value.dtype
        assert flower.parameters[name].tobytes() == value.tobytes(), name  # bit for bit
    assert flower.stopped == reference.stopped
    assert len(flower.history.rounds) == len(reference.history.rounds)
    for ours, theirs in zip(flower.history.rounds, reference.history.rounds):
        assert dataclasses.replace(ours, seconds=0.0) == dataclasses.replace(theirs, seconds=0.0)


def test_plain_fedavg_on_flower_equals_bundled_loop(flower_results: dict) -> None:
    result = flower_results[PLAIN]
    assert_same_run(result, bundled(PLAIN))
    assert result.history.rounds[-1].evaluate["num_examples"] > 0
    assert result.history.last("centralized", "accuracy") > 0.5


def test_secagg_on_flower_equals_bundled_loop_bit_for_bit_with_a_dropout(flower_results: dict) -> None:
    # The stages of some node's SecAgg+ round ran in different Ray actors (processes).
    pids: dict = {}
    for run_id, rnd, node, stage, pid in flower_results["pids"]:
        if int(run_id) == SECAGG:
            pids.setdefault((rnd, node), set()).add(pid)
    assert any(len(p) > 1 for p in pids.values())
    result = flower_results[SECAGG]
    assert_same_run(result, bundled(SECAGG))
    first, second = result.history.rounds
    assert (first.num_clients, second.num_clients) == (8, 7)
    assert second.fit["secagg.masked_input.dropped"] == 1.0
    # The unmasked sum is exact: the model is the plain mean of the on-grid updates.
    expected = {k: v.copy() for k, v in on_grid_parameters().items()}
    for rnd, survivors in ((1, range(1, 9)), (2, [u for u in range(1, 9) if u != 3])):
        total = {k: np.zeros_like(v) for k, v in expected.items()}
        for node in survivors:
            new = OnGridClient(node).fit(list(expected.values()), {"server_round": rnd})[0]
            for (k, old), n in zip(expected.items(), new):
                total[k] += n - old
        expected = {k: v + (1.0 / len(survivors)) * total[k] for k, v in expected.items()}
    for name, value in expected.items():
        np.testing.assert_array_equal(result.parameters[name], value)


def test_central_dp_on_flower_spends_the_bundled_loops_epsilon(flower_results: dict) -> None:
    result = flower_results[DP]
    reference = bundled(DP)
    assert_same_run(result, reference)  # the noise generator is injected, so even the noise matches
    ours, theirs = result.strategy.aggregator.ledger, reference.strategy.aggregator.ledger
    assert len(ours.entries) == len(theirs.entries) == 3
    assert ours.epsilon(1e-5) == theirs.epsilon(1e-5) > 0
    assert result.history.rounds[-1].fit["dp_epsilon"] == ours.epsilon(1e-5)
