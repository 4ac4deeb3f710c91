"""One client of n sends a malformed reply: the plain round completes without it and records why.

Each case runs a full simulated round (wire codec both ways) with FedAvg over the plain
aggregator and federated evaluation; node 3 misbehaves in the way the case names.
(A bool ``num_examples`` cannot cross the wire codec; the exchange-level tests in
``test_server_aggregation.py`` cover it, and duplicates, which one transport call cannot send.)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pytest

from privfl.core.context import Context
from privfl.core.message import Message, MessageKind
from privfl.core.names import LOSS, NUM_EXAMPLES, REJECTED
from privfl.server.simulation import run_simulation

N, BAD = 5, 3
GLOBAL = {"w": np.zeros(4), "b": np.zeros((2, 2), dtype=np.float32)}


def honest_model(node: int) -> dict[str, np.ndarray]:
    return {"w": np.full(4, float(node)), "b": np.full((2, 2), node / 10, dtype=np.float32)}


def honest(message: Message, context: Context) -> Message:
    node = context.node_id
    if message.metadata.kind == MessageKind.EVALUATE:
        return message.reply(metrics={NUM_EXAMPLES: node, LOSS: float(node)})
    return message.reply(arrays=honest_model(node), metrics={NUM_EXAMPLES: node})


def _header(message: Message, **changes: object) -> Message:
    return message.replace(metadata=dataclasses.replace(message.metadata, **changes))


MALFORMED: dict[str, Callable[[Message], Message]] = {
    "wrong-shape": lambda m: m.replace(arrays={**m.arrays, "w": np.zeros(5)}),
    "wrong-dtype": lambda m: m.replace(arrays={**m.arrays, "b": m.arrays["b"].astype(np.float64)}),
    "nan": lambda m: m.replace(arrays={**m.arrays, "w": np.array([0.0, np.nan, 0.0, 0.0])}),
    "inf": lambda m: m.replace(arrays={**m.arrays, "w": np.array([0.0, np.inf, 0.0, 0.0])}),
    "extra-array": lambda m: m.replace(arrays={**m.arrays, "x": np.zeros(1)}),
    "missing-array": lambda m: m.replace(arrays={"w": m.arrays["w"]}),
    "huge-array": lambda m: m.replace(arrays={**m.arrays, "w": np.zeros(1 << 21)}),
    "wrong-round": lambda m: _header(m, server_round=m.metadata.server_round + 1),
    "wrong-run": lambda m: _header(m, run_id=m.metadata.run_id + 1),
    "wrong-stage": lambda m: _header(m, stage="secagg.unmask"),
    "wrong-kind": lambda m: _header(m, kind=MessageKind.QUERY),
    "wrong-destination": lambda m: _header(m, dst_node=1),
    "impersonates-a-stranger": lambda m: _header(m, src_node=99),
    "missing-num-examples": lambda m: m.replace(metrics={}),
    "float-num-examples": lambda m: m.replace(metrics={NUM_EXAMPLES: 2.0}),
    "negative-num-examples": lambda m: m.replace(metrics={NUM_EXAMPLES: -1}),
}


def _run(corrupt: Callable[[Message], Message]):
    def app(message: Message, context: Context) -> Message:
        reply = honest(message, context)
        return corrupt(reply) if context.node_id == BAD else reply

    return run_simulation(
        app, num_clients=N, num_rounds=1, initial_parameters=GLOBAL, seed=1, progress=False, evaluate_fraction=1.0
    )


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_one_malformed_fit_reply_is_a_recorded_dropout(case: str) -> None:
    result = _run(lambda m: MALFORMED[case](m) if m.metadata.kind == MessageKind.TRAIN else m)
    (record,) = result.history.rounds
    assert record.status == "ok" and record.num_clients == N - 1
    honest_nodes = [u for u in range(1, N + 1) if u != BAD]
    weights = np.array(honest_nodes, dtype=float)
    for name in GLOBAL:
        expected = sum(w * honest_model(u)[name].astype(np.float64) for u, w in zip(honest_nodes, weights))
        np.testing.assert_allclose(result.parameters[name], expected / weights.sum(), rtol=1e-6)
    (rejection,) = record.rejected
    assert rejection["node"] == (99 if case == "impersonates-a-stranger" else BAD)
    routing = case.startswith(("wrong-round", "wrong-run", "wrong-stage", "wrong-kind", "wrong-dest", "impersonates"))
    assert rejection["error"] == ("ProtocolError" if routing else "MessageError")  # misrouted vs bad content
    assert rejection["stage"] == "train" and rejection["reason"]
    assert record.fit[REJECTED] == 1.0
    assert record.evaluate[NUM_EXAMPLES] == sum(range(1, N + 1))  # evaluation is untouched


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda m: m.replace(metrics={NUM_EXAMPLES: 3, LOSS: float("nan")}),
        lambda m: m.replace(metrics={NUM_EXAMPLES: 2.5, LOSS: 1.0}),
        lambda m: m.replace(metrics={LOSS: 1.0}),
        lambda m: _header(m, server_round=7),
    ],
    ids=["nan-loss", "float-num-examples", "missing-num-examples", "wrong-round"],
)
def test_one_malformed_evaluate_reply_is_left_out_and_counted(corrupt: Callable[[Message], Message]) -> None:
    result = _run(lambda m: corrupt(m) if m.metadata.kind == MessageKind.EVALUATE else m)
    (record,) = result.history.rounds
    assert record.status == "ok" and record.num_clients == N and record.rejected == []
    assert record.evaluate[REJECTED] == 1.0
    assert record.evaluate[NUM_EXAMPLES] == sum(range(1, N + 1)) - BAD


def test_a_round_still_aborts_when_no_valid_reply_remains() -> None:
    def app(message: Message, context: Context) -> Message:
        return honest(message, context).replace(metrics={NUM_EXAMPLES: -1})

    result = run_simulation(app, num_clients=3, num_rounds=1, initial_parameters=GLOBAL, seed=1, progress=False)
    (record,) = result.history.rounds
    assert record.status == "aborted" and "3 invalid" in record.note
    np.testing.assert_array_equal(result.parameters["w"], GLOBAL["w"])
