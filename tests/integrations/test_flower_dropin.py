"""Flower's fl-dp-sa app with privfl's pieces, run by Flower's own DefaultWorkflow over an in-process grid.

The ServerApp and ClientApp are ``examples/flower_dp_sa``: Flower's ``client_fn(context)``
reading ``node_config``, ``NumPyClient.to_client()``, Flower's ``FedAvg``, ``LegacyContext``
and ``DefaultWorkflow``; only the DP wrapper, the SecAgg+ workflow and the two client mods
are privfl's.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import flwr  # noqa: F401
import numpy as np
import pytest
from flower_inprocess import InProcessGrid
from flwr.app import Context, RecordDict
from flwr.client import NumPyClient
from flwr.clientapp import ClientApp
from flwr.common import ndarrays_to_parameters
from flwr.server import LegacyContext, ServerConfig
from flwr.server.strategy import FedAvg
from flwr.server.workflow import DefaultWorkflow
from flwr.server.workflow import SecAggPlusWorkflow as FlowerSecAggPlusWorkflow

from privfl.accounting import GaussianEvent, PoissonSampledEvent, PrivacyLedger
from privfl.errors import ProtocolAbort
from privfl.integrations.flower import (
    DifferentialPrivacyClientSideFixedClipping,
    SecAggPlusWorkflow,
    aggregate_client_metrics,
    fixedclipping_mod,
    secaggplus_mod,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "flower_dp_sa"
NUM_NODES = 6
pytestmark = pytest.mark.usefixtures("flower_task")


@pytest.fixture
def example(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(EXAMPLE))
    from flower_dp_sa import client_app, server_app

    yield client_app, server_app
    for name in [m for m in sys.modules if m.startswith("flower_dp_sa")]:
        del sys.modules[name]


def server_context(**run_config) -> Context:
    defaults = {
        "num-rounds": 2,
        "noise-multiplier": 1.0,
        "clipping-norm": 1.0,
        "num-sampled-clients": NUM_NODES,  # q = 1: every node, so the test's node set is fixed
        "num-shares": 4,
        "reconstruction-threshold": 3,
        "delta": 1e-5,
        "max-epsilon": 0.0,
        "ledger-path": "",
    }
    return Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config={**defaults, **run_config})


def test_fl_dp_sa_trains_with_privfl_secagg_and_central_dp(example, tmp_path: Path) -> None:
    client_app, server_app = example
    grid = InProcessGrid(client_app.app, NUM_NODES)
    ledger_path = tmp_path / "ledger.json"
    server_app.app(grid, server_context(**{"ledger-path": str(ledger_path)}))
    assert grid.errors == []
    ledger = PrivacyLedger.load(ledger_path)
    expected = PrivacyLedger()
    for rnd in (1, 2):
        expected.record(PoissonSampledEvent(1.0, GaussianEvent(1.0)), server_round=rnd, scope="client")
    assert len(ledger.entries) == 2
    assert ledger.epsilon(1e-5) == pytest.approx(expected.epsilon(1e-5), rel=1e-12)


class AddOne(NumPyClient):
    """Adds 0.25 * (partition + 1) to every parameter; reports a local epsilon equal to its partition."""

    def __init__(self, partition: int, fail: bool = False) -> None:
        self.partition, self.fail = partition, fail

    def fit(self, parameters, config):
        if self.fail:
            raise RuntimeError(f"partition {self.partition} broke")
        return [p + 0.25 * (self.partition + 1) for p in parameters], 10, {"local_dp_epsilon": float(self.partition)}


def client_app(mods: list, failing: frozenset[int] = frozenset()) -> ClientApp:
    def client_fn(context: Context):
        partition = context.node_config["partition-id"]
        return AddOne(partition, fail=partition in failing).to_client()

    return ClientApp(client_fn=client_fn, mods=mods)


def run_workflow(grid: InProcessGrid, strategy, fit_workflow, num_rounds: int = 1) -> LegacyContext:
    context = LegacyContext(context=server_context(), config=ServerConfig(num_rounds=num_rounds), strategy=strategy)
    DefaultWorkflow(fit_workflow=fit_workflow)(grid, context)
    return context


def plain_fedavg(initial: list[np.ndarray], min_nodes: int = 2) -> FedAvg:
    return FedAvg(
        fraction_fit=1.0,
        fraction_evaluate=0.0,
        min_fit_clients=min_nodes,
        min_available_clients=min_nodes,
        initial_parameters=ndarrays_to_parameters(initial),
        fit_metrics_aggregation_fn=aggregate_client_metrics,
    )


def final_model(context: LegacyContext) -> list[np.ndarray]:
    from flwr.server.workflow.constant import MAIN_PARAMS_RECORD

    return [a.numpy() for a in context.state.array_records[MAIN_PARAMS_RECORD].values()]


def test_privfl_secagg_workflow_gives_flower_strategies_the_mean_and_a_failing_client_is_a_dropout(caplog) -> None:
    initial = [np.zeros(4), np.zeros((2, 3))]
    grid = InProcessGrid(client_app([secaggplus_mod], failing=frozenset({2})), NUM_NODES)
    with caplog.at_level(logging.ERROR):
        context = run_workflow(grid, plain_fedavg(initial), SecAggPlusWorkflow(clipping_range=8.0, max_weight=10))
    # Partition 2 raised: it is a dropout, recorded, and the round completes without it.
    assert len(grid.errors) == 1 and "partition 2 broke" in grid.errors[0]
    assert any("partition 2 broke" in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records)
    fit = context.history.metrics_distributed_fit
    assert fit["secagg-masked-input-dropped"] == [(1, 1.0)]
    # SecAgg+ weights by example count (10 each) and hides per-client metrics: the model is the mean update.
    steps = [0.25 * (p + 1) for p in range(NUM_NODES) if p != 2]
    # Quantisation error per coordinate < n W 2 c / (2^16 - 1) / sum of weights (SecAggConfig's bound).
    bound = len(steps) * 10 * 2 * 8.0 / (2**16 - 1) / (10 * len(steps))
    for value in final_model(context):
        np.testing.assert_allclose(value, np.mean(steps), atol=bound)
    assert all("local-dp-epsilon" not in key and "_" not in key for key in fit)  # one (Flower) style


def test_central_dp_over_the_plain_fit_workflow_clips_on_the_clients_and_reports_the_largest_local_epsilon() -> None:
    initial = [np.zeros(3)]
    grid = InProcessGrid(client_app([fixedclipping_mod]), NUM_NODES)
    seen_norms = []
    grid.on_message = lambda m: seen_norms.append(m.content.config_records["fitins.config"]["clipping_norm"])
    strategy = DifferentialPrivacyClientSideFixedClipping(
        plain_fedavg(initial), noise_multiplier=1e-3, clipping_norm=0.5, num_sampled_clients=NUM_NODES
    )
    context = run_workflow(grid, strategy, None)
    assert grid.errors == [] and set(seen_norms) == {0.5}  # the server's clip norm, sent once, applied by clients
    fit = context.history.metrics_distributed_fit
    assert fit["local-dp-epsilon"] == [(1, float(NUM_NODES - 1))]  # the maximum, not a weighted mean
    assert fit["dp-epsilon"][0][1] > 0
    # Every update (0.25 (p + 1) on 3 coordinates) has norm > 0.5: each is clipped to 0.5.
    update = final_model(context)[0]
    np.testing.assert_allclose(update, 0.5 / np.sqrt(3), atol=0.01)


def test_a_server_without_privfls_workflow_is_refused_by_name_and_the_run_fails_loudly() -> None:
    grid = InProcessGrid(client_app([secaggplus_mod]), NUM_NODES)
    strategy = DifferentialPrivacyClientSideFixedClipping(
        plain_fedavg([np.zeros(3)]), noise_multiplier=1.0, clipping_norm=1.0, num_sampled_clients=NUM_NODES
    )
    with pytest.raises(ProtocolAbort, match="all 6 sampled clients failed"):
        run_workflow(grid, strategy, None)  # Flower's default (plain) fit workflow
    assert len(grid.errors) == NUM_NODES
    assert all("SecAggPlusWorkflow" in e and "in the clear" in e for e in grid.errors)


def test_flowers_own_secagg_server_is_refused_with_what_to_change() -> None:
    grid = InProcessGrid(client_app([secaggplus_mod]), NUM_NODES)
    run_workflow(grid, plain_fedavg([np.zeros(3)]), FlowerSecAggPlusWorkflow(num_shares=4, reconstruction_threshold=3))
    assert grid.errors and all("server runs Flower's SecAggPlusWorkflow" in e for e in grid.errors)


def test_every_client_failing_under_secagg_aborts_the_run_with_the_cause(caplog) -> None:
    grid = InProcessGrid(client_app([secaggplus_mod], failing=frozenset(range(NUM_NODES))), NUM_NODES)
    with caplog.at_level(logging.ERROR), pytest.raises(ProtocolAbort):
        run_workflow(grid, plain_fedavg([np.zeros(3)]), SecAggPlusWorkflow())
    assert any("aborted, model unchanged" in r.getMessage() for r in caplog.records)


def test_secagg_workflow_checks_its_arguments_with_flowers_names() -> None:
    from privfl.errors import ConfigError

    with pytest.raises(ConfigError, match="k/2 < t <= k"):
        SecAggPlusWorkflow(num_shares=7, reconstruction_threshold=3)
    with pytest.raises(ConfigError, match="quantization_range must be a power of two"):
        SecAggPlusWorkflow(quantization_range=1000)
    with pytest.raises(ConfigError, match="num_shares must be an int"):
        SecAggPlusWorkflow(num_shares=0.5)


def test_metric_names_take_flowers_style_and_epsilons_aggregate_as_a_maximum() -> None:
    from privfl.integrations.flower.names import flower_name, round_metrics

    assert flower_name("dp_epsilon") == "dp-epsilon"
    assert flower_name("secagg.setup.dropped") == "secagg-setup-dropped"
    results = [(10, {"local_dp_epsilon": 1.5, "loss": 1.0}), (30, {"local_dp_epsilon": 0.5, "loss": 3.0})]
    assert aggregate_client_metrics(results) == {"local-dp-epsilon": 1.5, "loss": 2.5}  # weighted mean would be 0.75
    assert round_metrics({"num_examples": 0.0, "dp_noise_std": 2.0}) == {"dp-noise-std": 2.0}
    assert round_metrics({"num_examples": 40.0}) == {"num-examples": 40.0}


def test_server_side_clipping_wrappers_clip_plain_flower_clients_and_stop_at_the_budget(tmp_path: Path) -> None:
    from privfl.integrations.flower import (
        DifferentialPrivacyServerSideAdaptiveClipping,
        DifferentialPrivacyServerSideFixedClipping,
    )

    grid = InProcessGrid(client_app([]), NUM_NODES)  # Flower clients without any privfl mod
    fixed = DifferentialPrivacyServerSideFixedClipping(
        plain_fedavg([np.zeros(3)]), noise_multiplier=1e-3, clipping_norm=0.5, num_sampled_clients=NUM_NODES
    )
    context = run_workflow(grid, fixed, None)
    np.testing.assert_allclose(final_model(context)[0], 0.5 / np.sqrt(3), atol=0.01)  # clipped by the server

    adaptive = DifferentialPrivacyServerSideAdaptiveClipping(
        plain_fedavg([np.zeros(3)]), noise_multiplier=0.5, num_sampled_clients=NUM_NODES, initial_clipping_norm=0.1
    )
    context = run_workflow(grid, adaptive, None, num_rounds=2)
    norms = context.history.metrics_distributed_fit["dp-clip-norm"]
    assert norms[0] == (1, 0.1) and norms[1][1] > 0.1  # every update exceeded C_1: the norm grows (Andrew et al.)

    # Budget stop: after round 1 the next round would overspend, so no client is selected again.
    one_round = PrivacyLedger()
    one_round.record(PoissonSampledEvent(1.0, GaussianEvent(1.0)), server_round=1, scope="client")
    budget = 1.01 * one_round.epsilon(1e-5)
    ledger_path = tmp_path / "ledger.json"
    capped = DifferentialPrivacyServerSideFixedClipping(
        plain_fedavg([np.zeros(3)]),
        noise_multiplier=1.0,
        clipping_norm=1.0,
        num_sampled_clients=NUM_NODES,
        max_epsilon=budget,
        ledger_path=ledger_path,
    )
    context = run_workflow(grid, capped, None, num_rounds=3)
    assert [r for r, _ in context.history.metrics_distributed_fit["dp-epsilon"]] == [1]
    assert len(PrivacyLedger.load(ledger_path).entries) == 1


def test_a_round_with_one_sampled_client_releases_noise_only_under_secagg_and_is_charged() -> None:
    grid = InProcessGrid(client_app([secaggplus_mod, fixedclipping_mod]), 1)
    sent = []
    grid.on_message = lambda m: sent.append(m.metadata.message_type)
    strategy = DifferentialPrivacyClientSideFixedClipping(
        plain_fedavg([np.zeros(3)], min_nodes=1), noise_multiplier=1.0, clipping_norm=1.0, num_sampled_clients=1
    )
    context = run_workflow(grid, strategy, SecAggPlusWorkflow(), num_rounds=2)
    assert not [t for t in sent if t.startswith("train")]  # the lone update is never collected
    assert [r for r, _ in context.history.metrics_distributed_fit["dp-epsilon"]] == [1, 2]
    assert len(strategy.ledger.entries) == 2
    assert np.any(final_model(context)[0] != 0.0)  # noise, released as the mechanism's output
