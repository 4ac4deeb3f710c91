"""SecAgg+ rounds end to end at the exchange level: exactness, dropouts, aborts, server-side checks."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from secagg_helpers import FixedClient, Harness, client_update, client_weight, finish, graph_of

from privfl.client.app import ClientApp
from privfl.core.plain import PlainAggregator
from privfl.errors import ProtocolAbort
from privfl.secagg import SecAggConfig, SecAggPlusAggregator, secagg_mod
from privfl.secagg import protocol as p
from privfl.secagg.server import _prune
from privfl.server.failures import FailurePlan
from privfl.server.transport import InProcessClients, drive


def weighted_truth(nodes, d: int, clip: float, max_weight: int) -> tuple[np.ndarray, int]:
    """sum_i w_i * clip(u_i) and sum_i w_i in float64 / int (weights capped at max_weight)."""
    total, weights = np.zeros(d), 0
    for u in nodes:
        w = min(client_weight(u), max_weight)
        total += w * np.clip(client_update(u, d).astype(np.float64), -clip, clip)
        weights += w
    return total, weights


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(3, 9), d=st.integers(1, 5), bits=st.integers(2, 16), data=st.data())
def test_no_dropouts_sum_is_exact(make_harness, n: int, d: int, bits: int, data: st.DataObject) -> None:
    k = data.draw(st.integers(2, n - 1).filter(lambda k: k % 2 == 0 or n % 2 == 0))
    t = data.draw(st.integers(k // 2 + 1, k))
    config = SecAggConfig(coordinate_bound=1.5, bits=bits, max_weight=40, num_neighbours=k, threshold=t, corruption=0.0)
    h = make_harness(n, d, config)
    result = h.run()
    assert result.survivors == h.nodes
    assert np.array_equal(result.total, h.expected_total(result))
    q = result.params.quantizer
    truth, weight = weighted_truth(h.nodes, d, 1.5, 40)
    assert int(result.total[-1]) == weight
    estimate = q.dequantize_sum(result.total[:-1], n) * 40
    assert np.all(np.abs(estimate - truth) <= n * 40 * q.step * (1 + 1e-9))


def test_aggregator_agrees_with_plain_aggregation_over_the_wire() -> None:
    d, n = 300, 12
    spec = Harness(n, d, SecAggConfig(), {}).spec()
    plain = drive(PlainAggregator().aggregate(spec), InProcessClients(ClientApp(lambda u: FixedClient(u, d))).deliver)
    clients = InProcessClients(ClientApp(lambda u: FixedClient(u, d), mods=[secagg_mod]))
    config = SecAggConfig(coordinate_bound=4.0, bits=20, max_weight=64)
    secure = drive(SecAggPlusAggregator(config).aggregate(spec), clients.deliver)
    assert secure.weight_sum == plain.weight_sum and secure.num_clients == n
    bound = n * 64 * config.coordinate_bound * 2 / (2**20 - 1)
    assert np.max(np.abs(secure.update_sum["w"] - plain.update_sum["w"])) <= bound
    assert secure.results and all(r.num_examples == 0 and not r.metrics for r in secure.results)
    # Upload of the masked input: uint32 words, at most 1.1x the float32 update plus a fixed header.
    masked_reply_bytes = clients.traffic.bytes_up / clients.traffic.messages_up
    assert masked_reply_bytes < 1.1 * 4 * d + 1000


@pytest.mark.parametrize("stage", p.STAGES)
def test_scripted_dropouts_at_each_stage_keep_the_sum_exact(make_harness, stage: str) -> None:
    h = make_harness(12, 7)
    result = h.run(drops=[(stage, 3), (stage, 8)])
    assert result.dropped[stage] == (3, 8)
    expected_survivors = set(h.nodes) - ({3, 8} if stage != p.STAGE_UNMASK else set())
    assert set(result.survivors) == expected_survivors
    assert np.array_equal(result.total, h.expected_total(result))
    assert int(result.total[-1]) == sum(client_weight(u) for u in result.survivors)


def test_dropouts_spread_over_all_stages(make_harness) -> None:
    h = make_harness(16, 5, SecAggConfig(num_neighbours=10, threshold=6))  # 4 losses leave every client t
    drops = [(p.STAGE_SETUP, 1), (p.STAGE_SHARE_KEYS, 6), (p.STAGE_MASKED_INPUT, 11), (p.STAGE_UNMASK, 14)]
    result = h.run(drops=drops)
    assert set(result.survivors) == set(h.nodes) - {1, 6, 11}
    assert np.array_equal(result.total, h.expected_total(result))


@pytest.mark.parametrize("seed", range(6))
def test_random_dropouts_recover_exactly_or_abort_cleanly(make_harness, seed: int) -> None:
    h = make_harness(20, 4)
    try:
        result = h.run(failures=FailurePlan(dropout={"*": 0.08}, seed=seed))
    except ProtocolAbort:
        return
    assert np.array_equal(result.total, h.expected_total(result))
    lost = set().union(*result.dropped.values(), *result.excluded.values())
    assert set(result.survivors) | lost == set(h.nodes)


@pytest.mark.parametrize("stage", p.STAGES)
def test_below_threshold_aborts_with_typed_error(make_harness, stage: str) -> None:
    h = make_harness(6, 3, SecAggConfig(num_neighbours=4, threshold=3))
    with pytest.raises(ProtocolAbort):
        h.run(drops=[(stage, u) for u in (1, 2, 3, 4)])


def test_client_with_too_few_live_neighbours_is_excluded_not_fatal(make_harness) -> None:
    h = make_harness(40, 3, SecAggConfig(num_neighbours=6, threshold=4, corruption=0.0))
    exchange = h.exchange()
    outbox = next(exchange)
    graph = graph_of(outbox)
    # Lose 3 of some client x's 6 neighbours at setup (x falls below t = 4) without emptying the round.
    x, lost = next(
        (x, set(lost))
        for x in h.nodes
        for lost in itertools.combinations(graph[x], 3)
        if len(_prune(set(h.nodes) - set(lost), graph, 4)) >= 20
    )
    h.drops = {(p.STAGE_SETUP, v) for v in lost}
    result = finish(exchange, h.deliver, outbox)
    expected_live = _prune(set(h.nodes) - lost, graph, 4)
    assert x in result.excluded[p.STAGE_SETUP]
    assert set(result.excluded[p.STAGE_SETUP]) == set(h.nodes) - lost - expected_live
    assert set(result.survivors) == expected_live
    assert np.array_equal(result.total, h.expected_total(result))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(3, 10), drops=st.lists(st.tuples(st.sampled_from(p.STAGES), st.integers(1, 10)), max_size=5))
def test_any_dropout_pattern_recovers_exactly_or_aborts(make_harness, n: int, drops) -> None:
    h = make_harness(n, 3)
    try:
        result = h.run(drops=drops)
    except ProtocolAbort:
        return
    assert np.array_equal(result.total, h.expected_total(result))
    first_drop = {}
    for stage, node in drops:
        first_drop[node] = min(first_drop.get(node, 4), p.STAGES.index(stage))
    lost_before_input = {u for u, i in first_drop.items() if i <= p.STAGES.index(p.STAGE_MASKED_INPUT)}
    assert set(result.survivors).isdisjoint(lost_before_input)
