"""The one message model every privfl component speaks.

A :class:`Message` is metadata (run, round, source and destination node, kind,
protocol stage) plus content: ordered named numpy arrays, numeric metrics and a
config mapping of scalars. Mods, protocols, the bundled loop and the Flower
adapter all exchange Messages; torch tensors and ciphertext objects live only at
the edges (ciphertexts travel as ``uint8`` arrays or ``bytes`` config values).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Union

import numpy as np

from privfl.errors import ConfigError, MessageError

ArrayDict = dict[str, np.ndarray]
"""Ordered mapping of array names to numpy arrays (insertion order is kept on the wire)."""

Scalar = Union[bool, int, float, str, bytes]
ConfigValue = Union[Scalar, list[Scalar]]
Config = dict[str, ConfigValue]
Metrics = dict[str, Union[int, float]]

SERVER_NODE_ID = 0
"""Node id of the server; client node ids are positive."""


class MessageKind(str, Enum):
    """What a message asks for (or answers)."""

    TRAIN = "train"
    EVALUATE = "evaluate"
    QUERY = "query"


@dataclass(frozen=True)
class Metadata:
    """Routing and protocol information of a message.

    Attributes:
        run_id: identifier of the federated run (non-negative).
        server_round: round number, starting at 1 (0 for out-of-round queries).
        src_node: sender's node id (0 is the server).
        dst_node: receiver's node id.
        kind: what is asked or answered.
        stage: protocol stage within the round (e.g. ``"secagg.share_keys"``); empty
            for a plain one-shot exchange.
    """

    run_id: int
    server_round: int
    src_node: int
    dst_node: int
    kind: MessageKind
    stage: str = ""

    def __post_init__(self) -> None:
        for name in ("run_id", "server_round", "src_node", "dst_node"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise MessageError(f"metadata {name} must be an int, got {type(value).__name__}")
            if not 0 <= int(value) < 2**63:
                raise MessageError(f"metadata {name} must be in [0, 2**63), got {value}")
            object.__setattr__(self, name, int(value))
        try:
            object.__setattr__(self, "kind", MessageKind(self.kind))
        except ValueError:
            allowed = ", ".join(k.value for k in MessageKind)
            raise MessageError(f"metadata kind must be one of {allowed}; got {self.kind!r}") from None
        if not isinstance(self.stage, str) or len(self.stage) > 128:
            raise MessageError("metadata stage must be a string of at most 128 characters")


@dataclass(frozen=True)
class Message:
    """A message between a server and a client.

    Content mappings are owned by the message: build a new message with
    :meth:`replace` or :meth:`reply` rather than mutating them in place.
    """

    metadata: Metadata
    arrays: ArrayDict = field(default_factory=dict)
    metrics: Metrics = field(default_factory=dict)
    config: Config = field(default_factory=dict)

    def reply(
        self,
        *,
        arrays: ArrayDict | None = None,
        metrics: Metrics | None = None,
        config: Config | None = None,
        stage: str | None = None,
    ) -> Message:
        """A message answering this one: source and destination swapped, same run/round/kind."""
        md = self.metadata
        return Message(
            metadata=Metadata(
                run_id=md.run_id,
                server_round=md.server_round,
                src_node=md.dst_node,
                dst_node=md.src_node,
                kind=md.kind,
                stage=md.stage if stage is None else stage,
            ),
            arrays={} if arrays is None else dict(arrays),
            metrics={} if metrics is None else dict(metrics),
            config={} if config is None else dict(config),
        )

    def replace(self, **changes: object) -> Message:
        """A copy with the given fields (``arrays``, ``metrics``, ``config``, ``metadata``) replaced."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def with_stage(self, stage: str) -> Message:
        """A copy with a different protocol stage."""
        return self.replace(metadata=dataclasses.replace(self.metadata, stage=stage))

    @property
    def num_bytes(self) -> int:
        """Bytes held by the arrays (not the encoded size; see :func:`privfl.core.wire.encode`)."""
        return sum(int(a.nbytes) for a in self.arrays.values())


def arrays_from_list(values: list[np.ndarray]) -> ArrayDict:
    """Name a list of arrays by position (``"0"``, ``"1"``, ...), as NumPy-style clients use."""
    return {str(i): np.asarray(v) for i, v in enumerate(values)}


def as_array_dict(parameters: Mapping[str, np.ndarray] | Sequence[np.ndarray]) -> ArrayDict:
    """A model as named arrays: a mapping keeps its names; a list or tuple of arrays, as a
    Flower-style ``get_parameters`` returns it, is named by position like :func:`arrays_from_list`.

    Raises:
        ConfigError: ``parameters`` is neither, a name is not a string, or a value is not numeric.
    """
    if isinstance(parameters, Mapping):
        arrays = {name: np.asarray(value) for name, value in parameters.items()}
    elif isinstance(parameters, (list, tuple)):
        arrays = arrays_from_list(list(parameters))
    else:
        raise ConfigError(
            f"parameters must be a dict of named arrays or a list of arrays, got {type(parameters).__name__}"
        )
    for name, value in arrays.items():
        if not isinstance(name, str) or value.dtype.kind not in "biuf":
            raise ConfigError(f"parameter {name!r} must be a numeric array with a string name, got dtype {value.dtype}")
    return arrays


def arrays_to_list(arrays: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """The arrays of a mapping in order."""
    return list(arrays.values())


def check_same_layout(expected: Mapping[str, np.ndarray], got: Mapping[str, np.ndarray], who: str) -> None:
    """Raise :class:`MessageError` unless ``got`` has the names, shapes and dtypes of ``expected``."""
    if list(expected) != list(got):
        raise MessageError(f"{who}: array names {list(got)[:8]} do not match expected {list(expected)[:8]}")
    for name, ref in expected.items():
        arr = got[name]
        if arr.shape != ref.shape or arr.dtype != ref.dtype:
            raise MessageError(
                f"{who}: array {name!r} has shape {arr.shape} dtype {arr.dtype}, "
                f"expected shape {ref.shape} dtype {ref.dtype}"
            )
