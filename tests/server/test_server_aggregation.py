"""PlainAggregator, FedAvg and the federated evaluation exchange, driven by hand (sans-IO)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from privfl.core.exchange import RoundSpec, SamplingInfo
from privfl.core.message import Message, MessageKind, Metadata
from privfl.core.names import LOSS, NUM_EXAMPLES, REJECTED
from privfl.core.plain import PlainAggregator, evaluate_exchange, validate_fit_reply, weighted_client_metrics
from privfl.errors import ConfigError, MessageError, ProtocolAbort
from privfl.server.strategy import FedAvg

GLOBAL = {"w": np.array([1.0, 2.0]), "b": np.array([[0.5]])}


def spec(nodes: Sequence[int] = (1, 2, 3), kind: MessageKind = MessageKind.TRAIN, params=None) -> RoundSpec:
    return RoundSpec(
        run_id=11,
        server_round=4,
        nodes=tuple(nodes),
        parameters=GLOBAL if params is None else params,
        config={"lr": 0.1},
        sampling=SamplingInfo(population=10, rate=0.3, poisson=True),
        kind=kind,
    )


def fit_reply(node: int, arrays: dict, n: int | None, *, run: int = 11, rnd: int = 4, **metrics) -> Message:
    m = dict(metrics)
    if n is not None:
        m[NUM_EXAMPLES] = n
    return Message(Metadata(run, rnd, node, 0, MessageKind.TRAIN), arrays=arrays, metrics=m)


def run_one_stage(exchange, replies: list[Message]):
    """Drive a one-stage exchange: return (what it sent, its result)."""
    outbox = next(exchange)
    with pytest.raises(StopIteration) as stop:
        exchange.send(iter(replies))
    return outbox, stop.value.value


# ---------------------------------------------------------------- PlainAggregator


def two_replies() -> list[Message]:
    return [
        fit_reply(1, {"w": np.array([2.0, 2.0]), "b": np.array([[1.5]])}, 1, acc=0.2),
        fit_reply(2, {"w": np.array([1.0, 5.0]), "b": np.array([[0.5]])}, 3, acc=0.6),
    ]


def test_outbox_sends_the_task_to_each_selected_node() -> None:
    outbox, _ = run_one_stage(PlainAggregator().aggregate(spec()), two_replies())
    assert [m.metadata for m in outbox] == [Metadata(11, 4, 0, n, MessageKind.TRAIN) for n in (1, 2, 3)]
    for m in outbox:
        assert list(m.arrays) == ["w", "b"]
        np.testing.assert_array_equal(m.arrays["w"], GLOBAL["w"])
        assert m.config == {"lr": 0.1}


def test_example_weighted_sum_matches_hand_computation() -> None:
    _, agg = run_one_stage(PlainAggregator().aggregate(spec()), two_replies())
    # updates: node1 w +[1,0] b +[1] (n=1); node2 w +[0,3] b +[0] (n=3)
    np.testing.assert_array_equal(agg.update_sum["w"], [1.0, 9.0])
    np.testing.assert_array_equal(agg.update_sum["b"], [[1.0]])
    assert agg.update_sum["w"].dtype == np.float64
    assert agg.weight_sum == 4.0
    assert agg.num_clients == 2
    assert agg.dropped == (3,)
    assert [(r.node_id, r.num_examples) for r in agg.results] == [(1, 1), (2, 3)]
    assert agg.results[1].metrics["acc"] == 0.6


def test_uniform_sum_matches_hand_computation() -> None:
    _, agg = run_one_stage(PlainAggregator(weighting="uniform").aggregate(spec()), two_replies())
    np.testing.assert_array_equal(agg.update_sum["w"], [1.0, 3.0])
    np.testing.assert_array_equal(agg.update_sum["b"], [[1.0]])
    assert agg.weight_sum == 2.0


def test_transform_is_applied_to_each_update_before_weighting() -> None:
    seen: list[np.ndarray] = []

    def halve(update):
        seen.append(update["w"].copy())
        return {k: v / 2 for k, v in update.items()}

    _, agg = run_one_stage(PlainAggregator(transform=halve).aggregate(spec()), two_replies())
    np.testing.assert_array_equal(seen[0], [1.0, 0.0])
    np.testing.assert_array_equal(agg.update_sum["w"], [0.5, 4.5])


def test_no_replies_gives_an_empty_aggregate() -> None:
    _, agg = run_one_stage(PlainAggregator().aggregate(spec()), [])
    assert agg.num_clients == 0 and agg.weight_sum == 0.0 and agg.dropped == (1, 2, 3)
    np.testing.assert_array_equal(agg.update_sum["w"], [0.0, 0.0])


def test_bad_weighting_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        PlainAggregator(weighting="median")


GOOD = {"w": np.array([2.0, 2.0]), "b": np.array([[1.5]])}


@pytest.mark.parametrize(
    ("reply", "match"),
    [
        (fit_reply(9, GOOD, 1), "not selected"),
        (fit_reply(1, GOOD, 1, rnd=3), "round"),
        (fit_reply(1, GOOD, 1, run=12), "run"),
        (fit_reply(1, {"w": np.zeros(3), "b": np.zeros((1, 1))}, 1), "shape"),
        (fit_reply(1, {"w": np.zeros(2, np.float32), "b": np.zeros((1, 1))}, 1), "dtype"),
        (fit_reply(1, {"w": np.zeros(2)}, 1), "names"),
        (fit_reply(1, {"b": np.zeros((1, 1)), "w": np.zeros(2)}, 1), "names"),
        (fit_reply(1, {"w": np.array([np.nan, 0.0]), "b": np.zeros((1, 1))}, 1), "non-finite"),
        (fit_reply(1, {"w": np.array([0.0, np.inf]), "b": np.zeros((1, 1))}, 1), "non-finite"),
        (fit_reply(1, {"w": np.zeros(2), "b": np.array([[-np.inf]])}, 1), "non-finite"),
        (fit_reply(1, GOOD, -1), NUM_EXAMPLES),
        (fit_reply(1, GOOD, None, num_examples=2.5), NUM_EXAMPLES),
        (fit_reply(1, GOOD, True), NUM_EXAMPLES),
        (fit_reply(1, GOOD, None), NUM_EXAMPLES),
        (fit_reply(1, {"w": np.zeros(1 << 20), "b": np.zeros((1, 1))}, 1), "shape"),
    ],
    ids=[
        "unselected",
        "wrong-round",
        "wrong-run",
        "wrong-shape",
        "wrong-dtype",
        "missing-array",
        "wrong-order",
        "nan",
        "inf",
        "neg-inf",
        "negative-n",
        "float-n",
        "bool-n",
        "missing-n",
        "huge-array",
    ],
)
def test_invalid_replies_are_rejected(reply: Message, match: str) -> None:
    """The bad reply is recorded and its sender dropped; node 2's valid update is the whole sum."""
    good = fit_reply(2, {"w": np.array([1.0, 5.0]), "b": np.array([[0.5]])}, 3)
    _, agg = run_one_stage(PlainAggregator().aggregate(spec()), [reply, good])
    assert agg.num_clients == 1 and [r.node_id for r in agg.results] == [2]
    assert np.allclose(agg.update_sum["w"], 3 * np.array([0.0, 3.0])) and agg.weight_sum == 3.0
    (rejection,) = agg.rejected
    assert rejection.node == reply.metadata.src_node and rejection.stage == "train"
    routing = match in ("not selected", "round", "run")  # misrouted: ProtocolError; bad content: MessageError
    assert rejection.error == ("ProtocolError" if routing else "MessageError") and match in rejection.reason
    assert agg.metrics[REJECTED] == 1.0 and 1 in agg.dropped


def test_duplicate_replies_are_rejected_and_the_first_counts() -> None:
    first, second = fit_reply(1, GOOD, 1), fit_reply(1, {"w": np.array([9.0, 9.0]), "b": np.array([[9.0]])}, 5)
    _, agg = run_one_stage(PlainAggregator().aggregate(spec()), [first, second])
    assert agg.num_clients == 1 and agg.weight_sum == 1.0
    assert np.allclose(agg.update_sum["w"], [1.0, 0.0])
    assert [(r.node, r.error) for r in agg.rejected] == [(1, "ProtocolError")] and "duplicate" in agg.rejected[0].reason


def test_reply_of_the_wrong_kind_is_rejected() -> None:
    wrong = Message(Metadata(11, 4, 1, 0, MessageKind.EVALUATE), arrays=dict(GOOD), metrics={NUM_EXAMPLES: 1})
    _, agg = run_one_stage(PlainAggregator().aggregate(spec()), [wrong])
    assert agg.num_clients == 0 and "evaluate" in agg.rejected[0].reason


def test_a_strict_aggregator_lets_one_bad_reply_abort_the_round() -> None:
    """The attack on a weakened variant (validation errors propagate), then on the real aggregator."""

    def strict(round_spec: RoundSpec):
        replies = yield [round_spec.message_to(node) for node in round_spec.nodes]
        seen: set[int] = set()
        return [validate_fit_reply(reply, round_spec, seen) for reply in replies]

    replies = [*two_replies(), fit_reply(3, GOOD, True)]  # node 3 sends a bool count
    exchange = strict(spec())
    next(exchange)
    with pytest.raises(MessageError, match=NUM_EXAMPLES):
        exchange.send(iter(replies))  # the whole round is lost to one client
    _, outcome = run_one_stage(FedAvg().fit_round(spec()), replies)
    assert outcome.num_clients == 2 and [r.node for r in outcome.rejected] == [3] and 3 in outcome.dropped


# ---------------------------------------------------------------- FedAvg


def test_fedavg_is_the_example_weighted_mean_of_client_models() -> None:
    rng = np.random.default_rng(3)
    params = {"w": rng.normal(size=(3, 4)), "b": rng.normal(size=4)}
    nodes = (2, 5, 7, 8)
    counts = [3, 10, 1, 6]
    models = [{k: v + rng.normal(size=v.shape) for k, v in params.items()} for _ in nodes]
    replies = [fit_reply(n, m, c, acc=a) for n, m, c, a in zip(nodes, models, counts, [0.1, 0.2, 0.3, 0.4])]
    outbox, outcome = run_one_stage(FedAvg().fit_round(spec(nodes, params=params)), replies)
    assert len(outbox) == 4
    for name in params:
        expected = np.average(np.stack([m[name] for m in models]), axis=0, weights=counts)
        np.testing.assert_allclose(outcome.parameters[name], expected, rtol=1e-12, atol=1e-12)
    assert outcome.num_clients == 4 and outcome.dropped == ()
    assert outcome.metrics[NUM_EXAMPLES] == 20.0
    assert outcome.metrics["acc"] == pytest.approx((0.3 + 2.0 + 0.3 + 2.4) / 20)
    # The input model is not modified in place.
    assert not np.allclose(params["w"], outcome.parameters["w"])


def test_fedavg_server_learning_rate_and_dtype() -> None:
    params = {"w": np.array([0.0, 4.0], dtype=np.float32)}
    replies = [
        fit_reply(1, {"w": np.array([2.0, 4.0], np.float32)}, 1),
        fit_reply(2, {"w": np.array([4.0, 0.0], np.float32)}, 1),
    ]
    _, outcome = run_one_stage(FedAvg(server_lr=0.5).fit_round(spec((1, 2), params=params)), replies)
    # mean update = [3, -2]; half of it applied.
    np.testing.assert_array_equal(outcome.parameters["w"], np.array([1.5, 3.0], np.float32))
    assert outcome.parameters["w"].dtype == np.float32


def test_fedavg_uniform_weighting() -> None:
    params = {"w": np.zeros(1)}
    replies = [fit_reply(1, {"w": np.array([1.0])}, 1), fit_reply(2, {"w": np.array([4.0])}, 99)]
    _, outcome = run_one_stage(
        FedAvg(aggregator=PlainAggregator(weighting="uniform")).fit_round(spec((1, 2), params=params)), replies
    )
    np.testing.assert_array_equal(outcome.parameters["w"], [2.5])


def test_fedavg_aborts_below_min_clients() -> None:
    exchange = FedAvg(min_clients=3).fit_round(spec())
    next(exchange)
    with pytest.raises(ProtocolAbort, match="2 client"):
        exchange.send(iter(two_replies()))


def test_fedavg_aborts_when_total_weight_is_zero() -> None:
    exchange = FedAvg().fit_round(spec())
    next(exchange)
    with pytest.raises(ProtocolAbort):
        exchange.send(iter([fit_reply(1, GOOD, 0)]))


@pytest.mark.parametrize("kwargs", [{"server_lr": 0.0}, {"server_lr": -1.0}, {"min_clients": -1}])
def test_fedavg_config_validation(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        FedAvg(**kwargs)


def test_fedavg_state_round_trip() -> None:
    strategy = FedAvg()
    assert strategy.state_dict() == {"aggregator": {}}
    strategy.load_state_dict({"aggregator": {}})


def test_weighted_client_metrics() -> None:
    out = weighted_client_metrics([(2, {"a": 1.0, "b": 5.0}), (6, {"a": 3.0}), (0, {"b": 100.0})])
    assert out == {NUM_EXAMPLES: 8.0, "a": 2.5, "b": 5.0}
    assert weighted_client_metrics([]) == {NUM_EXAMPLES: 0.0}


# ---------------------------------------------------------------- federated evaluation


def eval_reply(node: int, n: object, loss: object = None, *, rnd: int = 4, **metrics) -> Message:
    m = {NUM_EXAMPLES: n, **metrics}
    if loss is not None:
        m[LOSS] = loss
    return Message(Metadata(11, rnd, node, 0, MessageKind.EVALUATE), metrics=m)


def test_evaluate_exchange_weighted_means() -> None:
    s = spec((1, 2, 3), kind=MessageKind.EVALUATE)
    replies = [eval_reply(1, 10, 1.0, acc=0.9), eval_reply(3, 30, 3.0, acc=0.5)]
    outbox, result = run_one_stage(evaluate_exchange(s), replies)
    assert [m.metadata.kind for m in outbox] == [MessageKind.EVALUATE] * 3
    assert result[NUM_EXAMPLES] == 40.0
    assert result[LOSS] == pytest.approx(2.5)
    assert result["acc"] == pytest.approx(0.6)


def test_fedavg_evaluate_round_is_the_evaluate_exchange() -> None:
    s = spec((1,), kind=MessageKind.EVALUATE)
    _, result = run_one_stage(FedAvg().evaluate_round(s), [eval_reply(1, 4, 0.25)])
    assert result == {NUM_EXAMPLES: 4.0, LOSS: 0.25}


@pytest.mark.parametrize(
    "replies",
    [
        [eval_reply(9, 1, 1.0)],
        [eval_reply(1, 1, 1.0), eval_reply(1, 1, 1.0)],
        [eval_reply(1, 1)],
        [eval_reply(1, -1, 1.0)],
        [eval_reply(1, 1.5, 1.0)],
        [eval_reply(1, 1, float("nan"))],
        [eval_reply(1, 1, float("inf"))],
        [eval_reply(1, True, 1.0)],
        [eval_reply(1, 1, True)],
    ],
    ids=["unselected", "duplicate", "no-loss", "negative-n", "float-n", "nan-loss", "inf-loss", "bool-n", "bool-loss"],
)
def test_evaluate_exchange_rejects(replies: list[Message]) -> None:
    """Bad replies are counted and left out; node 2's valid reply is the whole result."""
    _, result = run_one_stage(evaluate_exchange(spec(kind=MessageKind.EVALUATE)), [*replies, eval_reply(2, 4, 0.5)])
    assert result[NUM_EXAMPLES] == (5.0 if len(replies) == 2 else 4.0)  # a duplicate's first reply counts
    assert result[REJECTED] == 1.0


def test_evaluate_exchange_rejects_a_reply_for_another_round() -> None:
    _, result = run_one_stage(evaluate_exchange(spec(kind=MessageKind.EVALUATE)), [eval_reply(1, 5, 1.0, rnd=3)])
    assert result == {NUM_EXAMPLES: 0.0, REJECTED: 1.0}


@pytest.mark.parametrize(
    "metadata",
    [
        Metadata(11, 4, 1, 2, MessageKind.TRAIN),  # addressed to another client, not the server
        Metadata(11, 4, 1, 0, MessageKind.TRAIN, "secagg.unmask"),  # a stage this exchange never asked for
        Metadata(11, 4, 1, 0, MessageKind.QUERY),
    ],
    ids=["wrong-destination", "wrong-stage", "query-kind"],
)
def test_fit_reply_header_must_match_the_request(metadata: Metadata) -> None:
    reply = Message(metadata, arrays=dict(GOOD), metrics={NUM_EXAMPLES: 1})
    _, agg = run_one_stage(PlainAggregator().aggregate(spec()), [reply])
    assert agg.num_clients == 0 and [r.node for r in agg.rejected] == [1]


def test_evaluate_exchange_rejects_a_train_reply() -> None:
    exchange = evaluate_exchange(spec(kind=MessageKind.EVALUATE))
    next(exchange)
    train = Message(Metadata(11, 4, 1, 0, MessageKind.TRAIN), metrics={NUM_EXAMPLES: 1, LOSS: 0.5})
    with pytest.raises(StopIteration) as stop:
        exchange.send(iter([train]))
    assert stop.value.value == {NUM_EXAMPLES: 0.0, REJECTED: 1.0}


@pytest.mark.parametrize("weighting", ["examples", "uniform"])
@pytest.mark.parametrize("size", [1, 1000, 3 * (1 << 16) + 5])  # below, at and across the chunk size
def test_chunked_accumulation_equals_the_whole_array_expression_bit_for_bit(weighting: str, size: int) -> None:
    rng = np.random.default_rng(size)
    params = {"w": rng.normal(size=size).astype(np.float32), "i": np.arange(4, dtype=np.int64)}
    replies = {n: {"w": rng.normal(size=size).astype(np.float32), "i": rng.integers(-9, 9, 4)} for n in (1, 2, 3)}
    agg = run_one_stage(
        PlainAggregator(weighting).aggregate(spec(params=params, nodes=(1, 2, 3))),
        [fit_reply(n, arrays, 7 * n) for n, arrays in replies.items()],
    )[1]
    for name in params:
        expected = np.zeros(params[name].shape, np.float64)
        for n, arrays in replies.items():
            weight = float(7 * n) if weighting == "examples" else 1.0
            expected += weight * (arrays[name] - params[name])
        assert agg.update_sum[name].tobytes() == expected.tobytes()
