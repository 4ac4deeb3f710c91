"""Mod composition order, short-circuiting mods, and Context state handling."""

from __future__ import annotations

from typing import Any

import numpy as np

from privfl.core.context import Context, Stateful
from privfl.core.message import Message, MessageKind, Metadata
from privfl.core.mods import App, compose


def request() -> Message:
    return Message(Metadata(0, 1, 0, 3, MessageKind.TRAIN), config={"trace": ""})


def tracing_mod(tag: str, log: list[str]):
    def mod(message: Message, context: Context, call_next: App) -> Message:
        log.append(f"{tag}>")
        # Each mod appends its tag on the way in, and on the way out.
        inner = call_next(message.replace(config={"trace": message.config["trace"] + tag}), context)
        log.append(f"<{tag}")
        return inner.replace(metrics={**inner.metrics, "out": inner.metrics["out"] + "|" + tag})

    return mod


def echo_app(log: list[str]) -> App:
    def app(message: Message, context: Context) -> Message:
        log.append("app")
        return message.reply(metrics={"out": message.config["trace"]})  # type: ignore[dict-item]

    return app


def test_first_mod_is_outermost() -> None:
    log: list[str] = []
    app = compose(echo_app(log), [tracing_mod("A", log), tracing_mod("B", log), tracing_mod("C", log)])
    reply = app(request(), Context(node_id=3))
    assert log == ["A>", "B>", "C>", "app", "<C", "<B", "<A"]
    # The app saw the message after A, B, C; the reply passed C, B, A.
    assert reply.metrics["out"] == "ABC|C|B|A"


def test_no_mods_is_the_app_itself() -> None:
    log: list[str] = []
    reply = compose(echo_app(log), [])(request(), Context(node_id=3))
    assert reply.metrics == {"out": ""} and log == ["app"]


def test_short_circuiting_mod_stops_the_chain() -> None:
    log: list[str] = []

    def refuse(message: Message, context: Context, call_next: App) -> Message:
        log.append("refuse")
        return message.reply(metrics={"out": "refused"})

    app = compose(echo_app(log), [tracing_mod("A", log), refuse, tracing_mod("C", log)])
    reply = app(request(), Context(node_id=3))
    assert log == ["A>", "refuse", "<A"]
    assert reply.metrics["out"] == "refused|A"
    assert reply.metadata.src_node == 3 and reply.metadata.dst_node == 0


def test_mods_share_the_context() -> None:
    def counting(message: Message, context: Context, call_next: App) -> Message:
        counter = context.get_or_create("count", lambda: [0])
        counter[0] += 1
        return call_next(message, context)

    ctx = Context(node_id=3)
    app = compose(lambda m, c: m.reply(metrics={"n": c.state["count"][0]}), [counting])
    assert [app(request(), ctx).metrics["n"] for _ in range(3)] == [1, 2, 3]


class Counter:
    """A Stateful component state with an array and a scalar."""

    def __init__(self) -> None:
        self.calls = 0
        self.vec = np.zeros(3)

    def state_dict(self) -> dict[str, Any]:
        return {"calls": self.calls, "vec": self.vec.copy()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.calls = state["calls"]
        self.vec = np.array(state["vec"])


def test_get_or_create_creates_once() -> None:
    ctx = Context(node_id=1)
    made: list[int] = []

    def factory() -> Counter:
        made.append(1)
        return Counter()

    a = ctx.get_or_create("c", factory)
    b = ctx.get_or_create("c", factory)
    assert a is b and len(made) == 1
    assert isinstance(a, Stateful)


def test_checkpoint_and_restore_state_of_a_stateful_object() -> None:
    ctx = Context(node_id=1)
    c = ctx.get_or_create("counter", Counter)
    c.calls = 4
    c.vec[:] = [1, 2, 3]
    ctx.state["plain"] = {"not": "stateful"}  # not Stateful: not saved
    saved = ctx.checkpoint_state()
    assert set(saved) == {"counter"}
    assert saved["counter"]["calls"] == 4
    np.testing.assert_array_equal(saved["counter"]["vec"], [1, 2, 3])

    fresh = Context(node_id=1)
    fresh.restore_state(saved)
    assert fresh.state == {}
    # Not yet re-created: the queued state is still part of a new checkpoint.
    assert fresh.checkpoint_state()["counter"]["calls"] == 4
    restored = fresh.get_or_create("counter", Counter)
    assert restored.calls == 4
    np.testing.assert_array_equal(restored.vec, [1, 2, 3])
    # Loaded once; later changes are what gets checkpointed.
    restored.calls = 9
    assert fresh.checkpoint_state()["counter"]["calls"] == 9
    assert fresh.get_or_create("counter", Counter) is restored


def test_restore_state_clears_existing_state() -> None:
    ctx = Context(node_id=2)
    ctx.get_or_create("counter", Counter).calls = 7
    ctx.restore_state({})
    assert ctx.state == {}
    assert ctx.get_or_create("counter", Counter).calls == 0
