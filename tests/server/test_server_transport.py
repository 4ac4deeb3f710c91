"""Transports (in-process and process pool), byte counting, client errors, and `drive` over multi-stage exchanges."""

from __future__ import annotations

import os
import signal
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest

from privfl.client.app import ClientApp
from privfl.client.numpy_client import NumPyClient
from privfl.core.context import Context
from privfl.core.exchange import RoundSpec, SamplingInfo
from privfl.core.message import Message, MessageKind, Metadata
from privfl.core.names import NUM_EXAMPLES
from privfl.core.wire import encode
from privfl.errors import WireError
from privfl.server.failures import FailurePlan
from privfl.server.strategy import FedAvg
from privfl.server.transport import ClientError, InProcessClients, ProcessPoolClients, drive

# ---------------------------------------------------------------- module-level (picklable) clients


class ShiftClient(NumPyClient):
    """Moves every parameter by its node id; node 13 always fails."""

    def __init__(self, node_id: int) -> None:
        self.node_id = node_id

    def get_parameters(self, config):
        return []

    def fit(self, parameters, config):
        if self.node_id == 13:
            raise RuntimeError("client 13 is broken")
        return [p + self.node_id for p in parameters], self.node_id, {"node": self.node_id}


def shift_client_fn(node_id: int) -> NumPyClient:
    return ShiftClient(node_id)


SHIFT_APP = ClientApp(shift_client_fn)


def counting_app(message: Message, context: Context) -> Message:
    """Counts calls per node in its Context; echoes arrays back, doubled."""
    state = context.get_or_create("calls", lambda: {"n": 0})
    state["n"] += 1
    return message.reply(
        arrays={k: v * 2 for k, v in message.arrays.items()},
        metrics={"calls": state["n"], "node": context.node_id},
    )


@contextmanager
def time_limit(seconds: int):
    """Fail (instead of hanging forever) if the block deadlocks."""

    def on_alarm(signum: int, frame: Any) -> None:
        raise TimeoutError(f"no progress within {seconds} s (deadlock?)")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def task(node: int, rnd: int = 1, arrays: dict | None = None, stage: str = "") -> Message:
    return Message(Metadata(0, rnd, 0, node, MessageKind.TRAIN, stage), arrays=arrays or {})


def round_spec(nodes, params) -> RoundSpec:
    return RoundSpec(
        run_id=0,
        server_round=1,
        nodes=tuple(nodes),
        parameters=params,
        config={},
        sampling=SamplingInfo(population=20, rate=0.5, poisson=False),
    )


PARAMS = {"w": np.arange(6, dtype=np.float64).reshape(2, 3), "b": np.array([0.5, -0.5])}


# ---------------------------------------------------------------- in-process


def test_in_process_counts_encoded_bytes_both_ways() -> None:
    clients = InProcessClients(counting_app)
    outbox = [task(n, arrays={"x": np.ones(n, dtype=np.float32)}) for n in (1, 2, 3)]
    replies = list(clients.deliver(outbox))
    assert [r.metadata.src_node for r in replies] == [1, 2, 3]
    assert clients.traffic.bytes_down == sum(len(encode(m)) for m in outbox)
    assert clients.traffic.bytes_up == sum(len(encode(r)) for r in replies)
    assert clients.traffic.bytes_up > clients.traffic.bytes_down  # replies carry metrics too
    assert (clients.traffic.messages_down, clients.traffic.messages_up) == (3, 3)
    np.testing.assert_array_equal(replies[2].arrays["x"], np.full(3, 2.0, np.float32))
    clients.traffic.reset()
    assert clients.traffic.bytes_down == clients.traffic.bytes_up == clients.traffic.messages_up == 0


def test_in_process_keeps_context_per_node() -> None:
    clients = InProcessClients(counting_app)
    for _ in range(2):
        list(clients.deliver([task(1), task(2)]))
    replies = list(clients.deliver([task(2)]))
    assert replies[0].metrics == {"calls": 3, "node": 2}
    assert clients.context(1).state["calls"]["n"] == 2


def test_dropped_clients_are_not_called_nor_counted() -> None:
    clients = InProcessClients(counting_app, failures=FailurePlan.script([(1, "train", 2)]))
    outbox = [task(1), task(2), task(3)]
    replies = list(clients.deliver(outbox))
    assert [r.metadata.src_node for r in replies] == [1, 3]
    assert clients.traffic.messages_down == 2
    assert clients.traffic.bytes_down == len(encode(outbox[0])) + len(encode(outbox[2]))
    assert 2 not in clients.contexts


def test_client_sees_exactly_the_decoded_message() -> None:
    seen: list[Message] = []

    def app(message: Message, context: Context) -> Message:
        seen.append(message)
        return message.reply()

    big_endian = np.array([1.0, 2.0], dtype=">f8")
    list(InProcessClients(app).deliver([task(1, arrays={"x": big_endian})]))
    assert seen[0].arrays["x"].dtype == np.dtype("<f8")
    assert seen[0].arrays["x"] is not big_endian


def test_wire_limits_apply_to_replies() -> None:
    from privfl.core.wire import WireLimits

    def chatty(message: Message, context: Context) -> Message:
        return message.reply(metrics={f"m{i}": i for i in range(10)})

    clients = InProcessClients(chatty, limits=WireLimits(max_entries=5))
    with pytest.raises(WireError):
        list(clients.deliver([task(1)]))


def test_on_client_error_raise_and_drop_in_process() -> None:
    outbox = [task(12, arrays={"w": np.zeros(2)}), task(13, arrays={"w": np.zeros(2)})]
    with pytest.raises(ClientError, match="client 13"):
        list(InProcessClients(SHIFT_APP).deliver(outbox))
    replies = list(InProcessClients(SHIFT_APP, on_client_error="drop").deliver(outbox))
    assert [r.metadata.src_node for r in replies] == [12]


def test_drop_mode_round_records_the_failed_client_as_dropped() -> None:
    clients = InProcessClients(SHIFT_APP, on_client_error="drop")
    outcome = drive(FedAvg().fit_round(round_spec((1, 13, 3), PARAMS)), clients.deliver)
    assert outcome.dropped == (13,)
    assert outcome.num_clients == 2
    # Example-weighted mean of +1 (n=1) and +3 (n=3) is +2.5.
    np.testing.assert_allclose(outcome.parameters["w"], PARAMS["w"] + 2.5)


# ---------------------------------------------------------------- drive over several stages


def staged_app(message: Message, context: Context) -> Message:
    """setup: remember a secret; share: send it; sum: send secret * factor from config."""
    stage = message.metadata.stage
    state = context.get_or_create("staged", dict)
    if stage == "setup":
        state["secret"] = context.node_id * 10
        return message.reply()
    if stage == "share":
        return message.reply(metrics={"secret": state["secret"]})
    return message.reply(arrays={"v": np.array([state["secret"] * message.config["factor"]])})


def three_stage_exchange(nodes: tuple[int, ...], log: list[Any]):
    md = lambda n, s: Metadata(0, 1, 0, n, MessageKind.TRAIN, s)  # noqa: E731
    replies = yield [Message(md(n, "setup")) for n in nodes]
    alive = [r.metadata.src_node for r in replies]
    log.append(("setup", alive))
    replies = yield [Message(md(n, "share")) for n in alive]
    secrets_ = {r.metadata.src_node: r.metrics["secret"] for r in replies}
    log.append(("share", sorted(secrets_)))
    replies = list((yield [Message(md(n, "sum"), config={"factor": len(secrets_)}) for n in secrets_]))
    total = sum(float(r.arrays["v"][0]) for r in replies)
    log.append(("sum", sorted(r.metadata.src_node for r in replies)))
    return total


def test_drive_runs_a_multi_stage_exchange_with_a_mid_protocol_dropout() -> None:
    plan = FailurePlan.script([(1, "share", 2), (1, "setup", 4)])
    clients = InProcessClients(staged_app, failures=plan)
    log: list[Any] = []
    total = drive(three_stage_exchange((1, 2, 3, 4), log), clients.deliver)
    assert log == [("setup", [1, 2, 3]), ("share", [1, 3]), ("sum", [1, 3])]
    assert total == (10 + 30) * 2
    assert clients.traffic.messages_down == 3 + 2 + 2  # 4 setup - 1 dead; share to 3 - 1 dead; sum to 2


def test_drive_without_any_stage_returns_immediately() -> None:
    def no_io():
        return 42
        yield  # pragma: no cover

    assert drive(no_io(), lambda outbox: []) == 42


def test_drive_discards_unread_replies() -> None:
    def reads_one():
        replies = yield [task(1), task(2), task(3)]
        first = next(replies)
        second_round = yield [task(4)]
        return first.metadata.src_node, [r.metadata.src_node for r in second_round]

    clients = InProcessClients(counting_app)
    assert drive(reads_one(), clients.deliver) == (1, [4])


# ---------------------------------------------------------------- process pool


def test_process_pool_matches_in_process_and_keeps_context() -> None:
    nodes = (1, 2, 3, 4, 5)
    local = drive(FedAvg().fit_round(round_spec(nodes, PARAMS)), InProcessClients(SHIFT_APP).deliver)
    pool = ProcessPoolClients(SHIFT_APP, workers=2)
    try:
        with time_limit(60):
            remote = drive(FedAvg().fit_round(round_spec(nodes, PARAMS)), pool.deliver)
    finally:
        pool.close()
    # Integer-valued updates: the sum is exact whatever order replies arrive in.
    for name in PARAMS:
        np.testing.assert_array_equal(remote.parameters[name], local.parameters[name])
    expected_shift = sum(n * n for n in nodes) / sum(nodes)
    np.testing.assert_allclose(remote.parameters["w"], PARAMS["w"] + expected_shift)
    assert remote.num_clients == 5 and remote.metrics[NUM_EXAMPLES] == 15.0


def test_process_pool_context_persists_and_bytes_are_counted() -> None:
    pool = ProcessPoolClients(counting_app, workers=2)
    try:
        with time_limit(60):
            for _ in range(2):
                list(pool.deliver([task(n) for n in (1, 2, 3)]))
            outbox = [task(n, arrays={"x": np.arange(n, dtype=np.int16)}) for n in (1, 2, 3, 4)]
            pool.traffic.reset()
            replies = list(pool.deliver(outbox))
    finally:
        pool.close()
    calls = {r.metadata.src_node: r.metrics["calls"] for r in replies}
    assert calls == {1: 3, 2: 3, 3: 3, 4: 1}
    assert {r.metadata.src_node: r.metrics["node"] for r in replies} == {1: 1, 2: 2, 3: 3, 4: 4}
    assert pool.traffic.bytes_down == sum(len(encode(m)) for m in outbox)
    assert pool.traffic.bytes_up == sum(len(encode(r)) for r in replies)
    assert pool.traffic.messages_up == 4


def test_process_pool_large_messages_do_not_deadlock() -> None:
    big = {"w": np.ones(4_000_000, dtype=np.float32)}  # 16 MB each way, far above a pipe buffer
    pool = ProcessPoolClients(counting_app, workers=2)
    try:
        with time_limit(60):
            replies = list(pool.deliver([task(n, arrays=big) for n in (1, 2, 3, 4)]))
    finally:
        pool.close()
    assert sorted(r.metadata.src_node for r in replies) == [1, 2, 3, 4]
    for r in replies:
        assert r.arrays["w"].shape == (4_000_000,)
        assert r.arrays["w"][0] == 2.0 and r.arrays["w"][-1] == 2.0
    assert pool.traffic.bytes_down > 4 * 16_000_000


def test_process_pool_on_client_error_raise_and_drop() -> None:
    outbox = [task(n, arrays={"w": np.zeros(2)}) for n in (12, 13, 14)]
    pool = ProcessPoolClients(SHIFT_APP, workers=2, on_client_error="drop")
    try:
        with time_limit(60):
            replies = list(pool.deliver(outbox))
    finally:
        pool.close()
    assert sorted(r.metadata.src_node for r in replies) == [12, 14]

    pool = ProcessPoolClients(SHIFT_APP, workers=2)
    try:
        with time_limit(60), pytest.raises(ClientError, match="client 13 is broken"):
            list(pool.deliver(outbox))
    finally:
        pool.close()


def test_process_pool_applies_failures() -> None:
    pool = ProcessPoolClients(counting_app, workers=2, failures=FailurePlan.script([(1, "train", 3)]))
    try:
        with time_limit(60):
            replies = list(pool.deliver([task(n) for n in (1, 2, 3, 4)]))
    finally:
        pool.close()
    assert sorted(r.metadata.src_node for r in replies) == [1, 2, 4]
    assert pool.traffic.messages_down == 3


def test_process_pool_rejects_zero_workers() -> None:
    with pytest.raises(ValueError):
        ProcessPoolClients(counting_app, workers=0)


def test_process_pool_abandoned_replies_do_not_leak_into_the_next_delivery() -> None:
    pool = ProcessPoolClients(counting_app, workers=2)
    try:
        with time_limit(60):
            first = pool.deliver([task(n, rnd=1) for n in (1, 2, 3, 4)])
            next(first)
            first.close()  # the consumer stops reading (as drive() does for unread replies)
            replies = list(pool.deliver([task(n, rnd=2) for n in (1, 2, 3, 4)]))
    finally:
        pool.close()
    assert [r.metadata.server_round for r in replies] == [2, 2, 2, 2]
    assert sorted(r.metadata.src_node for r in replies) == [1, 2, 3, 4]


def crashing_app(message: Message, context: Context) -> Message:
    """Node 3's process dies outright (as a segfaulting or OOM-killed client would)."""
    if context.node_id == 3:
        os._exit(1)
    return message.reply()


def test_process_pool_worker_death_raises_client_error() -> None:
    pool = ProcessPoolClients(crashing_app, workers=2)
    try:
        with time_limit(60), pytest.raises(ClientError):
            list(pool.deliver([task(n) for n in (1, 2, 3, 4)]))
    finally:
        pool.close()


def test_process_pool_worker_death_is_a_dropout_in_drop_mode() -> None:
    pool = ProcessPoolClients(crashing_app, workers=2, on_client_error="drop")
    try:
        with time_limit(60):
            replies = list(pool.deliver([task(n) for n in (1, 2, 3, 4)]))
    finally:
        pool.close()
    assert 3 not in {r.metadata.src_node for r in replies}
    assert {2, 4} <= {r.metadata.src_node for r in replies}
