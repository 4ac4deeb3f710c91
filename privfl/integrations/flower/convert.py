"""Converters between privfl :class:`~privfl.core.message.Message` and Flower messages.

A privfl message travels in a Flower ``RecordDict`` laid out as Flower's Message
API expects: an ``ArrayRecord`` named ``"arrays"``, a ``MetricRecord`` named
``"metrics"`` and a ``ConfigRecord`` named ``"config"``. The kind is Flower's
``message_type`` (``"train"``, ``"evaluate"``, ``"query"``). The rest of privfl's
metadata (run, round, privfl source and destination ids, stage) rides in the config
record under two reserved keys (:data:`META_KEY`, :data:`STAGE_KEY`): Flower message
types cannot hold a stage such as ``"secagg.share_keys"`` (the action after the dot
must be a Python identifier), and Flower node ids (64-bit, often >= 2**63) are not
privfl ids, so a :class:`NodeMap` translates between the two.

Round trips are exact: array names, order, dtype, byte order and shape; int and float
metrics; config scalars, bytes and lists. Flower cannot hold a config list that
mixes types (``[1, "a"]``, ``[1, 2.5]``, ``[1, True]``) or mixes negative ints with
ints >= 2**63; those raise :class:`~privfl.errors.MessageError`, as do arrays of
dtypes the privfl wire refuses (object, complex, strings) in either direction.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, MetricRecord, RecordDict
from flwr.app import Message as FlowerMessage
from numpy.lib import format as npy_format

from privfl.core.message import SERVER_NODE_ID, Config, Message, MessageKind, Metadata, Metrics
from privfl.errors import MessageError

ARRAYS = "arrays"
METRICS = "metrics"
CONFIG = "config"
META_KEY = "privfl:meta"
"""Config key of ``[run_id, server_round, src_node, dst_node]`` (privfl ids)."""
STAGE_KEY = "privfl:stage"
"""Config key of the privfl protocol stage."""
FLOWER_NUM_EXAMPLES = "num-examples"
"""Metric key Flower's Message-API strategies read the example count from (privfl uses ``num_examples``)."""

_INT64_MAX = 2**63 - 1
_NUMPY_STYPE = "numpy.ndarray"
R = TypeVar("R")


@dataclass(frozen=True)
class NodeMap:
    """Bijection between the Flower node ids of a run and privfl ids ``1..N``.

    privfl id ``i`` is ``flower_ids[i - 1]``; :meth:`from_flower_ids` sorts the ids so
    the map depends only on the set of connected nodes.
    """

    flower_ids: tuple[int, ...]
    _index: dict[int, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.flower_ids:
            raise MessageError("a node map needs at least one Flower node id")
        if len(set(self.flower_ids)) != len(self.flower_ids):
            raise MessageError("Flower node ids in a node map must be distinct")
        object.__setattr__(self, "_index", {fid: i for i, fid in enumerate(self.flower_ids, start=1)})

    @classmethod
    def from_flower_ids(cls, ids: Iterable[int]) -> NodeMap:
        return cls(tuple(sorted(int(i) for i in ids)))

    @property
    def population(self) -> tuple[int, ...]:
        """The privfl ids ``1..N``."""
        return tuple(range(1, len(self.flower_ids) + 1))

    def to_flower(self, node: int) -> int:
        if not 1 <= node <= len(self.flower_ids):
            raise MessageError(f"privfl node {node} is not in this run's node map (1..{len(self.flower_ids)})")
        return self.flower_ids[node - 1]

    def to_privfl(self, flower_id: int) -> int:
        try:
            return self._index[flower_id]
        except KeyError:
            raise MessageError(f"Flower node {flower_id} is not in this run's node map") from None


def _check_dtype(dtype: np.dtype, where: str) -> None:
    # The privfl wire's dtypes: bool, (u)int 8-64, float 16-64, either byte order.
    if dtype.kind not in "biuf" or dtype.itemsize > 8:
        raise MessageError(f"{where} has dtype {dtype}; allowed: bool, integer and float of at most 64 bits")


def arrays_to_record(arrays: Mapping[str, np.ndarray]) -> ArrayRecord:
    """An ``ArrayRecord`` holding ``arrays`` in order (numpy ``.npy`` encoding, no pickle)."""
    out: dict[str, Array] = {}
    for name, value in arrays.items():
        arr = np.asarray(value)
        _check_dtype(arr.dtype, f"array {name!r}")
        out[name] = Array(arr)
    return ArrayRecord(out)


def decode_npy(data: bytes, name: str) -> np.ndarray:
    """Parse ``.npy`` bytes; the declared size must match the data before anything is allocated."""
    buffer = io.BytesIO(data)
    try:
        version = npy_format.read_magic(buffer)
        if version == (1, 0):
            shape, fortran_order, dtype = npy_format.read_array_header_1_0(buffer)
        elif version == (2, 0):
            shape, fortran_order, dtype = npy_format.read_array_header_2_0(buffer)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except Exception as exc:  # numpy raises several types on a damaged header; none may escape untyped
        raise MessageError(f"array {name!r} cannot be decoded: {type(exc).__name__}: {exc}") from None
    _check_dtype(dtype, f"array {name!r}")
    count = math.prod(shape)
    if len(data) - buffer.tell() != count * dtype.itemsize:
        raise MessageError(
            f"array {name!r} declares shape {shape} of {dtype} ({count * dtype.itemsize} bytes) "
            f"but carries {len(data) - buffer.tell()} bytes"
        )
    flat = np.frombuffer(data, dtype=dtype, count=count, offset=buffer.tell()).copy()
    return flat.reshape(shape, order="F" if fortran_order else "C")


def arrays_from_record(record: ArrayRecord) -> dict[str, np.ndarray]:
    """The arrays of a Flower ``ArrayRecord``, validated (dtype, size, shape) and decoded without pickle."""
    out: dict[str, np.ndarray] = {}
    for name, array in record.items():
        if array.stype != _NUMPY_STYPE:
            raise MessageError(f"array {name!r} has serialisation type {array.stype!r}; expected {_NUMPY_STYPE!r}")
        arr = decode_npy(array.data, name)
        if tuple(arr.shape) != tuple(array.shape) or arr.dtype.str != np.dtype(array.dtype).str:
            raise MessageError(
                f"array {name!r} decodes to {arr.dtype} {arr.shape}, its record says {array.dtype} {tuple(array.shape)}"
            )
        out[name] = arr
    return out


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _config_value(key: str, value: Any) -> Any:
    value = _plain(value)
    if not isinstance(value, (list, tuple)):
        return value
    items = [_plain(v) for v in value]
    if items:
        kind = type(items[0])
        if any(type(v) is not kind for v in items):
            kinds = sorted({type(v).__name__ for v in items})
            raise MessageError(f"config {key!r}: Flower lists must hold one type, got {kinds}")
        if kind is int and min(items) < 0 and max(items) > _INT64_MAX:
            raise MessageError(f"config {key!r}: Flower cannot hold negative ints and ints >= 2**63 in one list")
    return items


def config_to_record(config: Config) -> ConfigRecord:
    """A Flower ``ConfigRecord`` of privfl config values (numpy scalars become Python scalars)."""
    for key in (META_KEY, STAGE_KEY):
        if key in config:
            raise MessageError(f"config key {key!r} is reserved for privfl metadata on Flower")
    try:
        return ConfigRecord({key: _config_value(key, value) for key, value in config.items()})
    except TypeError as exc:
        raise MessageError(f"config cannot be held by a Flower ConfigRecord: {exc}") from None


def metrics_to_record(metrics: Metrics) -> MetricRecord:
    try:
        return MetricRecord({key: _plain(value) for key, value in metrics.items()})
    except TypeError as exc:
        raise MessageError(f"metrics cannot be held by a Flower MetricRecord: {exc}") from None


def metrics_from_record(record: MetricRecord | None) -> Metrics:
    out: Metrics = {}
    for key, value in (record or {}).items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise MessageError(f"metric {key!r} must be an int or float, got {type(value).__name__}")
        out[key] = value
    return out


def to_recorddict(message: Message, *, envelope: bool = True) -> RecordDict:
    """The Flower content of ``message``: arrays, metrics and config records.

    With ``envelope`` the config record also carries privfl's metadata, so
    :func:`from_recorddict` restores the message exactly. Without it the content is laid
    out as Flower's Message API does: a request has arrays and config, a reply arrays
    and metrics, and the other record only when it is not empty.
    """
    md = message.metadata
    config = config_to_record(message.config)
    if envelope:
        config[META_KEY] = [md.run_id, md.server_round, md.src_node, md.dst_node]
        config[STAGE_KEY] = md.stage
    request = md.src_node == SERVER_NODE_ID
    content = RecordDict({ARRAYS: arrays_to_record(message.arrays)})
    if envelope or not request or message.metrics:
        content[METRICS] = metrics_to_record(message.metrics)
    if envelope or request or message.config:
        content[CONFIG] = config
    return content


def _pick(records: Mapping[str, R], preferred: str, what: str) -> R | None:
    """The record named ``preferred``, else the only record of its type, else None if there is none."""
    if preferred in records:
        return records[preferred]
    if len(records) <= 1:
        return next(iter(records.values()), None)
    raise MessageError(f"Flower message has {what} records {sorted(records)} and none named {preferred!r}")


def has_envelope(content: RecordDict) -> bool:
    """Whether ``content`` carries privfl metadata (i.e. was sent by a privfl server or client)."""
    config = content.config_records.get(CONFIG)
    return config is not None and META_KEY in config


def kind_of(message_type: str) -> MessageKind:
    """The privfl kind of a Flower message type (``"train"`` or ``"train.<action>"`` is train)."""
    category = message_type.split(".", 1)[0]
    try:
        return MessageKind(category)
    except ValueError:
        raise MessageError(f"Flower message type {message_type!r} is not train, evaluate or query") from None


def from_recorddict(content: RecordDict, kind: MessageKind, metadata: Metadata | None = None) -> Message:
    """The privfl message held by Flower ``content``.

    Metadata comes from the envelope (see :func:`to_recorddict`) or, for content without
    one, from ``metadata``; ``kind`` comes from the Flower message type.
    """
    arrays = _pick(content.array_records, ARRAYS, "array")
    metrics = _pick(content.metric_records, METRICS, "metric")
    config_record = _pick(content.config_records, CONFIG, "config")
    config: Config = dict(config_record or {})
    meta = config.pop(META_KEY, None)
    stage = config.pop(STAGE_KEY, "")
    if meta is not None:
        if not (isinstance(meta, list) and len(meta) == 4 and all(type(v) is int for v in meta)):
            raise MessageError(f"privfl metadata {META_KEY!r} must be a list of four ints, got {meta!r}")
        if not isinstance(stage, str):
            raise MessageError(f"privfl stage {STAGE_KEY!r} must be a string, got {type(stage).__name__}")
        metadata = Metadata(*meta, kind=kind, stage=stage)
    elif metadata is None:
        raise MessageError("Flower message carries no privfl metadata and none was given")
    return Message(
        metadata=metadata,
        arrays=arrays_from_record(arrays) if arrays is not None else {},
        metrics=metrics_from_record(metrics),
        config=config,
    )


def to_flower(message: Message, node_map: NodeMap) -> FlowerMessage:
    """A Flower instruction message carrying server message ``message`` to its destination node."""
    if message.metadata.src_node != SERVER_NODE_ID:
        raise MessageError(f"only server messages become Flower instructions, not one from {message.metadata.src_node}")
    return FlowerMessage(
        to_recorddict(message),
        dst_node_id=node_map.to_flower(message.metadata.dst_node),
        message_type=message.metadata.kind.value,
        group_id=str(message.metadata.server_round),
    )


def from_flower_reply(reply: FlowerMessage, node_map: NodeMap) -> Message:
    """The privfl reply held by a Flower reply, checked against the node that sent it."""
    if not has_envelope(reply.content):
        raise MessageError(f"reply from Flower node {reply.metadata.src_node_id} carries no privfl metadata")
    message = from_recorddict(reply.content, kind_of(reply.metadata.message_type))
    expected = node_map.to_privfl(reply.metadata.src_node_id)
    md = message.metadata
    if md.src_node != expected or md.dst_node != SERVER_NODE_ID:
        raise MessageError(
            f"reply from Flower node {reply.metadata.src_node_id} (privfl node {expected}) claims to be "
            f"from node {md.src_node} to node {md.dst_node}"
        )
    return message
