"""SecAgg+ rounds end to end at the exchange level: exactness, dropouts, aborts, server-side checks."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from secagg_helpers import FixedClient, Harness, client_update, client_weight, finish

from privfl.client.app import ClientApp
from privfl.core.plain import PlainAggregator
from privfl.errors import ProtocolAbort
from privfl.secagg import Federation, SecAggConfig, SecAggMod, SecAggPlusAggregator
from privfl.secagg import protocol as p
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


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(3, 9), d=st.integers(1, 5), bits=st.integers(2, 16), data=st.data())
def test_no_dropouts_sum_is_exact(make_harness, n: int, d: int, bits: int, data: st.DataObject) -> None:
    k = data.draw(st.integers(2, n - 1).filter(lambda k: k % 2 == 0 or n % 2 == 0))
    t = data.draw(st.integers(max(2, k // 2 + 1), k))  # params.check_structure: t >= 2 and t > k / 2
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
    config = SecAggConfig(coordinate_bound=4.0, bits=20, max_weight=64)
    federation = Federation.generate(spec.nodes, config.corruption)
    clients = InProcessClients(ClientApp(lambda u: FixedClient(u, d), mods=[SecAggMod(trust=federation.trust)]))
    secure = drive(SecAggPlusAggregator(config, roster=federation.roster).aggregate(spec), clients.deliver)
    assert secure.metrics["secagg.active_server"] == 1.0 and secure.metrics["secagg.rejected"] == 0.0
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
    masked_before = p.STAGES.index(stage) > p.STAGES.index(p.STAGE_MASKED_INPUT)
    expected_survivors = set(h.nodes) - (set() if masked_before else {3, 8})
    assert set(result.survivors) == expected_survivors
    assert np.array_equal(result.total, h.expected_total(result))
    assert int(result.total[-1]) == sum(client_weight(u) for u in result.survivors)


def test_dropouts_spread_over_all_stages(make_harness) -> None:
    h = make_harness(16, 5, SecAggConfig(num_neighbours=10, threshold=6))  # 4 losses leave every client t
    drops = [(p.STAGE_SETUP, 1), (p.STAGE_SHARE_KEYS, 6), (p.STAGE_MASKED_INPUT, 11), (p.STAGE_UNMASK, 14)]
    result = h.run(drops=drops)
    assert set(result.survivors) == set(h.nodes) - {1, 6, 11}
    assert np.array_equal(result.total, h.expected_total(result))


def unrecoverable(h, drops, graph) -> set[int]:
    """Reference model of recovery: the clients whose secret lacks t shares (empty: the round must finish).

    Written from the protocol's liveness rules, not from the server's code: a client is
    asked at a stage only with t live neighbours; masked inputs come from the t-core; a
    survivor's self-mask seed and a dropped partner's mask key each need t neighbours
    that answer the last stage. ``graph`` maps each client to its neighbours that
    advertised keys (the share-keys requests), which is all the model needs.
    """
    t = h.config.round_params(len(h.nodes)).threshold
    gone = lambda stage: {u for s, u in drops if s == stage}  # noqa: E731
    nbrs = lambda u, live: set(graph.get(u, ())) & live  # noqa: E731
    able = lambda cands: {u for u in cands if len(nbrs(u, cands)) >= t}  # noqa: E731
    u1 = set(graph)
    u2 = {u for u in u1 if len(nbrs(u, u1)) >= t} - gone(p.STAGE_SHARE_KEYS)
    core = set(u2)
    while able(core) != core:
        core = able(core)
    u3 = core - gone(p.STAGE_MASKED_INPUT)
    u4 = {u for u in u3 if len(nbrs(u, u3)) >= t} - gone(p.STAGE_CONSISTENCY)
    u5 = {u for u in u4 if len(nbrs(u, u4 if h.federation else u3)) >= t} - gone(p.STAGE_UNMASK)
    if not u3:
        return set(h.nodes)
    dropped = {v for v in core - u3 if nbrs(v, u3)}
    return {w for w in u3 | dropped if len(nbrs(w, u5)) < t}


def run_recording_graph(h, drops=(), failures=None):
    """Run a round; return (result or ProtocolAbort, advertised neighbours per client, drops that happened)."""
    from privfl.server.failures import FailureInjector

    graph: dict[int, tuple[int, ...]] = {}
    seen_drops: list[tuple[str, int]] = []
    h.drops, h.failures = set(drops), FailureInjector(failures)

    def deliver(outbox):
        for message in outbox:
            stage, node = message.metadata.stage, message.metadata.dst_node
            if stage == p.STAGE_SHARE_KEYS:
                graph[node] = tuple(int(v) for v in message.arrays[p.PEERS])
            if (stage, node) in h.drops or h.failures.drops(message):
                seen_drops.append((stage, node))
                continue
            yield h.send(message)

    exchange = h.exchange()
    try:
        return finish(exchange, deliver, next(exchange)), graph, seen_drops
    except ProtocolAbort as abort:
        return abort, graph, seen_drops


def check_outcome(h, outcome, graph, drops) -> None:
    """Either the exact sum, or an abort that the reference model also predicts."""
    if isinstance(outcome, ProtocolAbort):
        assert unrecoverable(h, drops, graph), f"the round aborted although every secret had t shares: {outcome}"
        return
    assert not unrecoverable(h, drops, graph)
    assert np.array_equal(outcome.total, h.expected_total(outcome))


@pytest.mark.parametrize("seed", range(6))
def test_random_dropouts_recover_exactly_or_abort_only_when_unrecoverable(make_harness, seed: int) -> None:
    h = make_harness(20, 4)
    outcome, graph, drops = run_recording_graph(h, failures=FailurePlan(dropout={"*": 0.08}, seed=seed))
    check_outcome(h, outcome, graph, drops)
    if not isinstance(outcome, ProtocolAbort):
        lost = set().union(*outcome.dropped.values(), *outcome.excluded.values())
        assert set(outcome.survivors) | lost == set(h.nodes)


@pytest.mark.parametrize("stage", p.STAGES)
def test_below_threshold_aborts_with_typed_error_naming_the_clients(make_harness, stage: str) -> None:
    h = make_harness(6, 3, SecAggConfig(num_neighbours=4, threshold=3))
    with pytest.raises(ProtocolAbort) as caught:
        h.run(drops=[(stage, u) for u in (1, 2, 3, 4)])
    assert "node" in str(caught.value) or "no masked input" in str(caught.value)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(3, 10), drops=st.lists(st.tuples(st.sampled_from(p.STAGES), st.integers(1, 10)), max_size=5))
def test_any_dropout_pattern_recovers_exactly_or_aborts_as_predicted(make_harness, n: int, drops) -> None:
    h = make_harness(n, 3)
    outcome, graph, seen = run_recording_graph(h, drops=drops)
    check_outcome(h, outcome, graph, seen)
    if isinstance(outcome, ProtocolAbort):
        return
    first_drop = {}
    for stage, node in drops:
        first_drop[node] = min(first_drop.get(node, 4), p.STAGES.index(stage))
    lost_before_input = {u for u, i in first_drop.items() if i <= p.STAGES.index(p.STAGE_MASKED_INPUT)}
    assert set(outcome.survivors).isdisjoint(lost_before_input)
