"""privfl client apps and mods inside Flower ClientApps.

Two entry points:

- :func:`flower_client_app` runs a whole privfl client app (a
  :class:`privfl.client.ClientApp` with its mods) as a Flower ``ClientApp``. Its
  ``client_fn`` may return a Flower ``NumPyClient``: the two APIs have the same
  ``get_parameters`` / ``fit`` / ``evaluate`` signatures, so existing training code
  runs unchanged.
- :func:`flower_mod` turns privfl mods into one Flower mod for an existing Flower
  ``ClientApp``: a legacy one (``ClientApp(client_fn=...)`` with Flower's
  ``client_fn(context)`` returning ``NumPyClient(...).to_client()``) or a Message-API
  one (``@app.train()`` functions reading ``"arrays"`` / ``"config"``). The Flower
  mods users put in ``mods=[...]`` are in :mod:`privfl.integrations.flower.mods`.

Three layouts of incoming messages are read: privfl's (from a privfl server or
workflow, metadata in an envelope), Flower's Message API (``"arrays"``,
``"config"``) and Flower's legacy layout (``fitins.*``). Messages without privfl
metadata take the round from Flower's ``group_id`` and the node and run ids from
Flower's (modulo 2**63); the reply uses the layout of the request. Flower's
``num-examples`` metric is read as privfl's ``num_examples``.

State: each message gets the node's privfl :class:`~privfl.core.context.Context`
rebuilt from Flower's node-local ``Context.state`` and saved back afterwards (also
when the app fails), secrets only sealed under a node-local key
(:mod:`privfl.integrations.flower.state`). Nothing is kept in process memory, so a
node's messages may run in different processes: Ray actors in simulation, one
``flwr-clientapp`` process per message in deployment.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from functools import partial

from flwr.app import Context as FlowerContext
from flwr.app import Message as FlowerMessage
from flwr.app import RecordDict
from flwr.clientapp import ClientApp as FlowerClientApp

from privfl.core.context import Context
from privfl.core.message import SERVER_NODE_ID, Message, Metadata
from privfl.core.mods import App, Mod, compose
from privfl.core.names import NUM_EXAMPLES
from privfl.errors import MessageError
from privfl.integrations.flower import legacy
from privfl.integrations.flower.convert import (
    FLOWER_NUM_EXAMPLES,
    from_recorddict,
    has_envelope,
    kind_of,
    to_recorddict,
)
from privfl.integrations.flower.state import STATE_RECORD, open_context, save_context

FlowerApp = Callable[[FlowerMessage, FlowerContext], FlowerMessage]
FlowerMod = Callable[[FlowerMessage, FlowerContext, FlowerApp], FlowerMessage]

_MASK_63 = 2**63 - 1


class Layout(str, Enum):
    """How a Flower message's content is laid out."""

    PRIVFL = "privfl"  # privfl envelope (sent by a privfl server or workflow)
    MESSAGE_API = "message-api"  # Flower's "arrays" / "config" / "metrics"
    LEGACY = "legacy"  # Flower's fitins.* / fitres.*


def layout_of(content: RecordDict) -> Layout:
    if has_envelope(content):
        return Layout.PRIVFL
    return Layout.LEGACY if legacy.is_legacy(content) else Layout.MESSAGE_API


def _rename_metric(message: Message, old: str, new: str) -> Message:
    if old not in message.metrics or new in message.metrics:
        return message
    metrics = {(new if k == old else k): v for k, v in message.metrics.items()}
    return message.replace(metrics=metrics)


def _flower_metadata(message: FlowerMessage, flower_ctx: FlowerContext) -> Metadata:
    """privfl metadata for a message from a Flower strategy (no privfl envelope)."""
    group = message.metadata.group_id
    return Metadata(
        run_id=message.metadata.run_id & _MASK_63,
        server_round=int(group) if group.isdecimal() else 0,
        src_node=SERVER_NODE_ID,
        dst_node=flower_ctx.node_id & _MASK_63,
        kind=kind_of(message.metadata.message_type),
    )


def read_request(message: FlowerMessage, flower_ctx: FlowerContext) -> tuple[Message, Layout]:
    """The privfl message held by a Flower instruction, and the layout it came in."""
    layout = layout_of(message.content)
    kind = kind_of(message.metadata.message_type)
    if layout is Layout.PRIVFL:
        return from_recorddict(message.content, kind), layout
    metadata = _flower_metadata(message, flower_ctx)
    if layout is Layout.LEGACY:
        return legacy.read_request(message.content, kind, metadata), layout
    return from_recorddict(message.content, kind, metadata), layout


def write_reply(reply: Message, layout: Layout) -> RecordDict:
    """Flower content of privfl ``reply`` in the layout of the request it answers."""
    if layout is Layout.PRIVFL:
        return to_recorddict(reply)
    if layout is Layout.LEGACY:
        return legacy.write_reply(reply)
    return to_recorddict(_rename_metric(reply, NUM_EXAMPLES, FLOWER_NUM_EXAMPLES), envelope=False)


def _serve(app: App, message: FlowerMessage, flower_ctx: FlowerContext, record: str = STATE_RECORD) -> FlowerMessage:
    """Run privfl ``app`` on a Flower message with the node's state (in ``Context.state[record]``)."""
    request, layout = read_request(message, flower_ctx)
    md = request.metadata
    where = {"run_id": md.run_id, "server_round": md.server_round, "record_name": record}
    context = open_context(flower_ctx, node_id=md.dst_node, **where)
    try:
        reply = app(request, context)
    finally:
        # Saved even when the app fails: a protocol that abandoned its round must stay abandoned.
        save_context(flower_ctx, context, **where)
    return FlowerMessage(write_reply(reply, layout), reply_to=message)


def flower_client_app(app: App) -> FlowerClientApp:
    """A Flower ``ClientApp`` running privfl client app ``app`` for train, evaluate and query messages.

    Example::

        app = flower_client_app(privfl.client.ClientApp(client_fn, mods=[SecAggMod(semi_honest=True)]))
    """
    flower_app = FlowerClientApp()
    handler = partial(_serve, app)
    flower_app.train()(handler)
    flower_app.evaluate()(handler)
    flower_app.query()(handler)
    return flower_app


def _inner_content(request: Message, layout: Layout) -> RecordDict:
    """What the rest of the Flower chain is given: the request's own layout; for a privfl request,
    both Flower layouts, so a legacy ``client_fn`` app and a Message-API app can each read it."""
    if layout is Layout.LEGACY:
        return legacy.write_request(request)
    content = to_recorddict(request, envelope=False)
    if layout is Layout.PRIVFL:
        for name, record in legacy.write_request(request).items():
            content[name] = record
    return content


def _call_flower(
    message: FlowerMessage,
    flower_ctx: FlowerContext,
    call_next: FlowerApp,
    layout: Layout,
    request: Message,
    context: Context,
) -> Message:
    """The innermost privfl app of :func:`flower_mod`: hand ``request`` to the rest of the Flower chain."""
    del context  # the Flower chain sees its own Flower context
    inner = FlowerMessage(_inner_content(request, layout), metadata=message.metadata)
    reply = call_next(inner, flower_ctx)
    if reply.has_error():
        raise MessageError(f"the Flower app replied with error {reply.error.code}: {reply.error.reason}")
    if legacy.has_reply(reply.content, request.metadata.kind):
        return legacy.read_reply(reply.content, request)
    reply_md = request.reply().metadata
    return _rename_metric(from_recorddict(reply.content, reply_md.kind, reply_md), FLOWER_NUM_EXAMPLES, NUM_EXAMPLES)


def flower_mod(*mods: Mod) -> FlowerMod:
    """One Flower client mod running privfl ``mods`` (first is outermost) around the rest of a Flower chain.

    Flower's legacy ``get_parameters`` / ``get_properties`` messages pass through untouched.

    Example::

        app = flwr.clientapp.ClientApp(client_fn=client_fn, mods=[flower_mod(FixedClippingMod(1.0))])
    """
    chain = tuple(mods)
    # Each Flower mod keeps its privfl state in its own record: mods nest, and an inner one
    # must not overwrite the outer one's state.
    record = f"{STATE_RECORD}:" + "+".join(getattr(m, "__name__", type(m).__name__) for m in chain)

    def privfl_mods(message: FlowerMessage, flower_ctx: FlowerContext, call_next: FlowerApp) -> FlowerMessage:
        if message.metadata.message_type.startswith(("get_parameters", "get_properties")):
            return call_next(message, flower_ctx)
        layout = layout_of(message.content)
        inner = partial(_call_flower, message, flower_ctx, call_next, layout)
        return _serve(compose(inner, chain), message, flower_ctx, record)

    return privfl_mods
