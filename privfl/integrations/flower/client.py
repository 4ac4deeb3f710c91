"""privfl client apps and mods inside Flower ClientApps.

Two entry points:

- :func:`flower_client_app` runs a whole privfl client app (a
  :class:`privfl.client.ClientApp` with its mods) as a Flower ``ClientApp``. Its
  ``client_fn`` may return a Flower ``NumPyClient``: the two APIs have the same
  ``get_parameters`` / ``fit`` / ``evaluate`` signatures, so existing training code
  runs unchanged.
- :func:`flower_mod` turns privfl mods into one Flower mod for an existing Flower
  Message-API ``ClientApp`` (``@app.train()`` functions reading the ``"arrays"`` and
  ``"config"`` records and replying with ``"arrays"`` and ``"metrics"``).

Messages from a privfl server (see :mod:`privfl.integrations.flower.server`) carry
privfl metadata; messages from a Flower strategy do not, and then the round is
taken from Flower's ``group_id`` and the node and run ids from Flower's (modulo
2**63). Flower's ``num-examples`` metric is read as privfl's ``num_examples``.

privfl mods keep their state in a privfl :class:`~privfl.core.context.Context`
held in the memory of the process that runs the ClientApp. Flower's ``Context.state``
(node-local) records a version number and the checkpoint form of the context's
:class:`~privfl.core.context.Stateful` objects (e.g. a local-DP ledger; only the
round id of a SecAgg+ client, whose secrets never leave memory). When a node's
message reaches a process that does not hold the node's current context (Flower's
deployment runtime starts one ``flwr-clientapp`` process per message; a simulation
may run several Ray actors), the context is rebuilt from that form exactly as after
a privfl checkpoint resume: Stateful objects are restored, others (caches such as a
CKKS cipher) are created afresh. A SecAgg+ client rebuilt mid-round refuses the
round's next stage (:class:`~privfl.errors.ProtocolError`), so SecAgg+ needs each
node's stages to reach one long-lived process: Flower's simulation runtime with one
actor (``init_args.num_cpus = client_resources.num_cpus``).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from flwr.app import ConfigRecord
from flwr.app import Context as FlowerContext
from flwr.app import Message as FlowerMessage
from flwr.clientapp import ClientApp as FlowerClientApp

from privfl.core.context import Context
from privfl.core.message import SERVER_NODE_ID, Message, Metadata
from privfl.core.mods import App, Mod, compose
from privfl.core.names import NUM_EXAMPLES
from privfl.errors import CheckpointError, MessageError, ProtocolError
from privfl.integrations.flower.convert import (
    FLOWER_NUM_EXAMPLES,
    from_recorddict,
    has_envelope,
    kind_of,
    to_recorddict,
)
from privfl.server import checkpoint

FlowerApp = Callable[[FlowerMessage, FlowerContext], FlowerMessage]
FlowerMod = Callable[[FlowerMessage, FlowerContext, FlowerApp], FlowerMessage]

CONTEXT_RECORD = "privfl.context"
"""ConfigRecord in Flower's ``Context.state``: ``version`` and ``saved`` (checkpoint form of Stateful state)."""

_MASK_63 = 2**63 - 1
_contexts: dict[tuple[int, int], tuple[int, Context]] = {}
"""This process's privfl contexts by (Flower run id, Flower node id), with the version they are at."""


def _load_state(blob: bytes) -> dict[str, Any]:
    try:
        return checkpoint.loads(blob, what="saved privfl client state")
    except CheckpointError as exc:
        raise ProtocolError(str(exc)) from None


def _enter(flower_ctx: FlowerContext, node_id: int) -> tuple[Context, int]:
    """The privfl context of this Flower node for the current message, and its version."""
    record = flower_ctx.state.config_records.get(CONTEXT_RECORD)
    version = int(record["version"]) if record else 0
    cached = _contexts.get((flower_ctx.run_id, flower_ctx.node_id))
    if cached is not None and cached[0] == version:
        context = cached[1]
        if context.node_id != node_id:
            raise ProtocolError(f"Flower node {flower_ctx.node_id} is privfl node {context.node_id}, not {node_id}")
        return context, version
    context = Context(node_id=node_id, run_config=dict(flower_ctx.run_config))
    if record and record["saved"]:
        context.restore_state(_load_state(record["saved"]))
    return context, version


def _leave(flower_ctx: FlowerContext, context: Context, version: int) -> None:
    _contexts[(flower_ctx.run_id, flower_ctx.node_id)] = (version + 1, context)
    saved = context.checkpoint_state()
    flower_ctx.state.config_records[CONTEXT_RECORD] = ConfigRecord(
        {"version": version + 1, "saved": checkpoint.dumps(saved) if saved else b""}
    )


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


def _serve(app: App, message: FlowerMessage, flower_ctx: FlowerContext) -> FlowerMessage:
    """Run privfl ``app`` on a Flower message and wrap its reply as a Flower reply."""
    envelope = has_envelope(message.content)
    kind = kind_of(message.metadata.message_type)
    request = from_recorddict(message.content, kind, None if envelope else _flower_metadata(message, flower_ctx))
    context, version = _enter(flower_ctx, request.metadata.dst_node)
    reply = app(request, context)
    _leave(flower_ctx, context, version)
    if not envelope:
        reply = _rename_metric(reply, NUM_EXAMPLES, FLOWER_NUM_EXAMPLES)
    return FlowerMessage(to_recorddict(reply, envelope=envelope), reply_to=message)


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


def _call_flower(
    message: FlowerMessage, flower_ctx: FlowerContext, call_next: FlowerApp, request: Message, context: Context
) -> Message:
    """The innermost privfl app of :func:`flower_mod`: hand ``request`` to the rest of the Flower chain."""
    del context  # the Flower chain sees its own Flower context
    inner = FlowerMessage(to_recorddict(request, envelope=False), metadata=message.metadata)
    reply = call_next(inner, flower_ctx)
    if reply.has_error():
        raise MessageError(f"the Flower app replied with error {reply.error.code}: {reply.error.reason}")
    reply_md = request.reply().metadata
    return _rename_metric(from_recorddict(reply.content, reply_md.kind, reply_md), FLOWER_NUM_EXAMPLES, NUM_EXAMPLES)


def flower_mod(*mods: Mod) -> FlowerMod:
    """One Flower client mod running privfl ``mods`` (first is outermost) around the rest of a Flower chain.

    Example::

        app = flwr.clientapp.ClientApp(mods=[flower_mod(FixedClippingMod(1.0), LocalDpMod(...))])
    """
    chain = tuple(mods)

    def privfl_mods(message: FlowerMessage, flower_ctx: FlowerContext, call_next: FlowerApp) -> FlowerMessage:
        inner = partial(_call_flower, message, flower_ctx, call_next)
        return _serve(compose(inner, chain), message, flower_ctx)

    return privfl_mods
