"""privfl's client mods under Flower's names, for ``flwr.clientapp.ClientApp(..., mods=[...])``.

Replace ``from flwr.client.mod import fixedclipping_mod, secaggplus_mod`` with
``from privfl.integrations.flower import fixedclipping_mod, secaggplus_mod``; the
``client_fn(context)``, ``NumPyClient.to_client()`` and ``node_config`` code stays as
it is. The server must run privfl's :class:`~privfl.integrations.flower.SecAggPlusWorkflow`
and central-DP strategy wrappers: a message of another protocol is refused with an
error that names what to change (Flower then returns it to the server as the node's
error reply).
"""

from __future__ import annotations

from flwr.app import Context as FlowerContext
from flwr.app import Message as FlowerMessage

from privfl.core.context import Context
from privfl.core.message import Message, MessageKind
from privfl.core.mods import App
from privfl.dp import FixedClippingMod
from privfl.errors import ProtocolError
from privfl.integrations.flower.client import FlowerApp, Layout, flower_mod, layout_of
from privfl.secagg import SecAggMod

CLIPPING_NORM = "clipping_norm"
"""Config key of the clip norm C the server's DP strategy sends (Flower's name); the client clips to it."""
_FLOWER_SECAGG_RECORD = "secaggplus_configs"  # the config record of Flower's own SecAgg+ workflow
# Flower's SecAgg+ trusts the server to follow the protocol; so does this drop-in (see the workflow's docs).
_privfl_secagg = flower_mod(SecAggMod(semi_honest=True))


def secaggplus_mod(message: FlowerMessage, context: FlowerContext, call_next: FlowerApp) -> FlowerMessage:
    """privfl's SecAgg+ client (Bonawitz et al. CCS'17; Bell et al. CCS'20) as a Flower mod.

    Takes part in the SecAgg+ stages sent by privfl's ``SecAggPlusWorkflow``; the
    update handed to the server is only the masked vector. Evaluate messages pass
    through. A train message from another server is refused (:class:`ProtocolError`)
    rather than answered in the clear.
    """
    if message.metadata.message_type.startswith("train") and layout_of(message.content) is not Layout.PRIVFL:
        if _FLOWER_SECAGG_RECORD in message.content.config_records:
            raise ProtocolError(
                "this ClientApp runs privfl's secaggplus_mod but the server runs Flower's SecAggPlusWorkflow: "
                "use privfl.integrations.flower.SecAggPlusWorkflow on the server (or Flower's own mod here)"
            )
        raise ProtocolError(
            "privfl's secaggplus_mod refuses a plain Flower train message (it would send the update in the clear): "
            "run the server with DefaultWorkflow(fit_workflow=privfl.integrations.flower.SecAggPlusWorkflow(...))"
        )
    return _privfl_secagg(message, context, call_next)


def _clip_to_server_norm(message: Message, context: Context, call_next: App) -> Message:
    """Clip the update to the L2 norm the server's DP strategy announced (one source of truth)."""
    if message.metadata.kind is not MessageKind.TRAIN:
        return call_next(message, context)
    norm = message.config.get(CLIPPING_NORM)
    if isinstance(norm, bool) or not isinstance(norm, (int, float)):
        raise ProtocolError(
            f"fixedclipping_mod needs the clip norm {CLIPPING_NORM!r} in the train config (got {norm!r}): wrap the "
            "server's strategy in privfl.integrations.flower.DifferentialPrivacyClientSideFixedClipping"
        )
    return FixedClippingMod(float(norm))(message, context, call_next)


fixedclipping_mod = flower_mod(_clip_to_server_norm)
"""Client-side fixed clipping (McMahan et al. 2018) to the norm the server sends, as a Flower mod."""
