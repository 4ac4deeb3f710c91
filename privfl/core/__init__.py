"""The message model, per-node context, mod composition and the wire codec."""

from privfl.core.context import Context, Stateful
from privfl.core.message import ArrayDict, Config, Message, MessageKind, Metadata, Metrics
from privfl.core.mods import App, Mod, compose
from privfl.core.wire import WireLimits, decode, encode

__all__ = [
    "App",
    "ArrayDict",
    "Config",
    "Context",
    "Message",
    "MessageKind",
    "Metadata",
    "Metrics",
    "Mod",
    "Stateful",
    "WireLimits",
    "compose",
    "decode",
    "encode",
]
