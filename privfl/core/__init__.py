"""The core every other package builds on.

The message model, per-node context, mod composition and the wire codec, plus the
sans-IO protocol contract (:mod:`privfl.core.exchange`) that every privacy-enhancing
technology implements and every driver (the bundled loop, Flower's grid) consumes,
the shared metric names (:mod:`privfl.core.names`) and the plain protocols
(:mod:`privfl.core.plain`).
"""

from privfl.core.context import Context, SecretStateful, Stateful
from privfl.core.exchange import (
    Aggregate,
    Aggregator,
    BoundedDistortion,
    ClientResult,
    Exchange,
    FitOutcome,
    Rejection,
    RoundSpec,
    SamplingInfo,
    Strategy,
)
from privfl.core.message import ArrayDict, Config, Message, MessageKind, Metadata, Metrics
from privfl.core.mods import App, Mod, compose
from privfl.core.names import LOSS, NUM_EXAMPLES, check_num_examples
from privfl.core.plain import PlainAggregator
from privfl.core.wire import WireLimits, decode, encode, encode_array, encoded_size

__all__ = [
    "LOSS",
    "NUM_EXAMPLES",
    "Aggregate",
    "Aggregator",
    "App",
    "ArrayDict",
    "BoundedDistortion",
    "ClientResult",
    "Config",
    "Context",
    "Exchange",
    "FitOutcome",
    "Message",
    "MessageKind",
    "Metadata",
    "Metrics",
    "Mod",
    "PlainAggregator",
    "Rejection",
    "RoundSpec",
    "SamplingInfo",
    "SecretStateful",
    "Stateful",
    "Strategy",
    "WireLimits",
    "check_num_examples",
    "compose",
    "decode",
    "encode",
    "encode_array",
    "encoded_size",
]
