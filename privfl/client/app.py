"""The client app: turns Messages into NumPy-style client calls, behind a chain of mods."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from privfl.client.numpy_client import NumPyClient
from privfl.core.context import Context
from privfl.core.message import ArrayDict, ConfigValue, Message, MessageKind, arrays_from_list
from privfl.core.mods import Mod, compose
from privfl.core.names import LOSS, NUM_EXAMPLES, check_num_examples
from privfl.errors import MessageError

ClientFn = Callable[[int], NumPyClient]


def _split_metrics(metrics: dict, who: str) -> tuple[dict[str, int | float], dict[str, ConfigValue]]:
    """Numeric metrics, and the other scalars Flower allows (str, bytes, bool), which travel as reply config."""
    numeric: dict[str, int | float] = {}
    other: dict[str, ConfigValue] = {}
    for key, value in metrics.items():
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, (str, bytes, bool)):
            other[str(key)] = value
        elif isinstance(value, (int, float)):
            numeric[str(key)] = value
        else:
            raise MessageError(
                f"{who}: metric {key!r} must be a number, str, bytes or bool, got {type(value).__name__}"
            )
    return numeric, other


def _writable(arrays: ArrayDict) -> list[np.ndarray]:
    """The arrays as the client's own, writable: arrays decoded from bytes are read-only views (one copy each).

    Flower's NumPyClient hands out writable arrays, and training code may update them in place.
    """
    return [a if a.flags.writeable else a.copy() for a in arrays.values()]


class ClientApp:
    """Runs a NumPy-style client for each message, wrapped in ``mods`` (first is outermost).

    Fit and evaluate metrics that are numbers become reply metrics; str, bytes and
    bool metrics (which Flower clients may return) travel in the reply's config.

    Args:
        client_fn: builds the client for a node id; called once per message, so a
            client keeps state across rounds through its own storage or the Context.
        mods: client mods, e.g. clipping, local DP, SecAgg+ or CKKS mods.
    """

    def __init__(self, client_fn: ClientFn, mods: Sequence[Mod] = ()) -> None:
        self.client_fn = client_fn
        self.mods = tuple(mods)
        self._handler = compose(self._handle, self.mods)

    def __call__(self, message: Message, context: Context) -> Message:
        if message.metadata.dst_node != context.node_id:
            raise MessageError(f"message for node {message.metadata.dst_node} delivered to node {context.node_id}")
        return self._handler(message, context)

    def _handle(self, message: Message, context: Context) -> Message:
        client = self.client_fn(context.node_id)
        config = dict(message.config)
        config.setdefault("server_round", message.metadata.server_round)
        kind = message.metadata.kind
        if kind is MessageKind.TRAIN:
            params, num_examples, metrics = client.fit(_writable(message.arrays), config)
            names = list(message.arrays) if len(params) == len(message.arrays) else None
            arrays = dict(zip(names, params, strict=False)) if names else arrays_from_list(params)
            out, extra = _split_metrics(metrics, "fit")
            out[NUM_EXAMPLES] = check_num_examples(num_examples, "fit")
            return message.reply(arrays=arrays, metrics=out, config=extra)
        if kind is MessageKind.EVALUATE:
            loss, num_examples, metrics = client.evaluate(_writable(message.arrays), config)
            out, extra = _split_metrics(metrics, "evaluate")
            out[LOSS] = float(loss)
            out[NUM_EXAMPLES] = check_num_examples(num_examples, "evaluate")
            return message.reply(metrics=out, config=extra)
        return message.reply(arrays=arrays_from_list(client.get_parameters(config)))
