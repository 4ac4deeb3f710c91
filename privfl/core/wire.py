"""Safe wire format for :class:`~privfl.core.message.Message`: msgpack plus raw array buffers.

No pickle, no extension types, no object dtypes. Decoding validates every field
against :class:`WireLimits` before allocating, and any malformed or hostile input
raises :class:`~privfl.errors.WireError` and nothing else.

Layout (a msgpack map): ``{"v": 1, "meta": [run, round, src, dst, kind, stage],
"arrays": [[name, dtype, shape, buffer], ...], "metrics": {..}, "config": {..}}``.
Array buffers are little-endian (or byte-order free) C-contiguous bytes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np

from privfl.core.message import Message, Metadata
from privfl.errors import MessageError, WireError

WIRE_VERSION = 1

_ALLOWED_DTYPES = frozenset(["|b1", "|i1", "|u1", "<i2", "<u2", "<i4", "<u4", "<i8", "<u8", "<f2", "<f4", "<f8"])


@dataclass(frozen=True)
class WireLimits:
    """Upper bounds enforced while decoding (bytes unless stated).

    Attributes:
        max_message_bytes: size of one encoded message.
        max_arrays: number of named arrays.
        max_ndim: dimensions of one array.
        max_entries: entries in the metrics or config mapping.
        max_name_chars: characters in an array, metric or config name.
        max_list_items: items in one config list value.
    """

    max_message_bytes: int = 1 << 30
    max_arrays: int = 4096
    max_ndim: int = 16
    max_entries: int = 65536
    max_name_chars: int = 256
    max_list_items: int = 1 << 16

    def __post_init__(self) -> None:
        for name in self.__dataclass_fields__:
            if getattr(self, name) <= 0:
                raise MessageError(f"WireLimits.{name} must be positive, got {getattr(self, name)}")


DEFAULT_LIMITS = WireLimits()


def _wire_dtype(dtype: np.dtype) -> np.dtype:
    """The little-endian form of ``dtype``, or raise if it is not allowed on the wire."""
    wire = dtype.newbyteorder("<") if dtype.byteorder == ">" else dtype
    if wire.str not in _ALLOWED_DTYPES:
        allowed = ", ".join(sorted(_ALLOWED_DTYPES))
        raise MessageError(f"dtype {dtype} cannot travel on the wire; allowed: {allowed}")
    return wire


def _check_scalar(value: Any, where: str) -> None:
    if isinstance(value, (bool, int, str, bytes)):
        if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**64:
            raise MessageError(f"{where}: integer {value} does not fit in 64 bits")
        return
    if isinstance(value, float):
        return
    raise MessageError(f"{where}: values must be bool, int, float, str or bytes, got {type(value).__name__}")


def _check_key(key: Any, where: str) -> None:
    # The decoder only accepts string keys, so refuse others here rather than emit undecodable bytes.
    if not isinstance(key, str):
        raise MessageError(f"{where} names must be str, got {type(key).__name__}")


def encode(message: Message) -> bytes:
    """Serialise ``message`` to bytes. Raises :class:`MessageError` for content that cannot travel."""
    md = message.metadata
    arrays = []
    for name, arr in message.arrays.items():
        if not isinstance(name, str):
            raise MessageError(f"array names must be str, got {type(name).__name__}")
        a = np.asarray(arr)
        wire_dtype = _wire_dtype(a.dtype)
        # astype + tobytes(order="C") rather than ascontiguousarray, which turns 0-d arrays into 1-d.
        arrays.append([name, wire_dtype.str, list(a.shape), a.astype(wire_dtype, copy=False).tobytes(order="C")])
    metrics: dict[str, Any] = {}
    for key, value in message.metrics.items():
        _check_key(key, "metric")
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise MessageError(f"metric {key!r} must be int or float, got {type(value).__name__}")
        value = value.item() if isinstance(value, np.generic) else value
        _check_scalar(value, f"metric {key!r}")
        metrics[key] = value
    config: dict[str, Any] = {}
    for key, value in message.config.items():
        _check_key(key, "config")
        value = value.item() if isinstance(value, np.generic) else value
        if isinstance(value, (list, tuple)):
            items = [v.item() if isinstance(v, np.generic) else v for v in value]
            for v in items:
                _check_scalar(v, f"config {key!r}")
            config[key] = items
        else:
            _check_scalar(value, f"config {key!r}")
            config[key] = value
    payload = {
        "v": WIRE_VERSION,
        "meta": [md.run_id, md.server_round, md.src_node, md.dst_node, md.kind.value, md.stage],
        "arrays": arrays,
        "metrics": metrics,
        "config": config,
    }
    try:
        return msgpack.packb(payload, use_bin_type=True)
    except (ValueError, OverflowError, TypeError) as exc:  # e.g. a str with lone surrogates is not UTF-8
        raise MessageError(f"message cannot be encoded: {exc}") from None


def _refuse_ext(code: int, data: bytes) -> Any:
    raise WireError(f"msgpack extension type {code} is not allowed")


def decode(data: bytes | bytearray | memoryview, limits: WireLimits = DEFAULT_LIMITS) -> Message:
    """Parse and validate bytes produced by :func:`encode`.

    Raises:
        WireError: for any input that is not a valid, in-limits encoded message.
    """
    try:
        return _decode(data, limits)
    except WireError:
        raise
    except MessageError as exc:
        raise WireError(f"invalid message: {exc}") from None
    except Exception as exc:  # msgpack raises many types; none may escape
        raise WireError(f"malformed message: {type(exc).__name__}") from None


def _decode(data: bytes | bytearray | memoryview, limits: WireLimits) -> Message:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise WireError(f"expected bytes, got {type(data).__name__}")
    if len(data) > limits.max_message_bytes:
        raise WireError(f"message of {len(data)} bytes exceeds the limit of {limits.max_message_bytes}")
    obj = msgpack.unpackb(
        data,
        raw=False,
        strict_map_key=True,
        use_list=True,
        ext_hook=_refuse_ext,
        max_str_len=limits.max_message_bytes,
        max_bin_len=limits.max_message_bytes,
        max_array_len=max(limits.max_arrays, limits.max_list_items, 8),
        max_map_len=max(limits.max_entries, 8),
    )
    if not isinstance(obj, dict) or set(obj) != {"v", "meta", "arrays", "metrics", "config"}:
        raise WireError("message must be a map with keys v, meta, arrays, metrics, config")
    if type(obj["v"]) is not int or obj["v"] != WIRE_VERSION:  # not 1.0, not True
        raise WireError(f"unsupported wire version {obj['v']!r}; this build reads version {WIRE_VERSION}")
    meta = obj["meta"]
    if not isinstance(meta, list) or len(meta) != 6:
        raise WireError("meta must be a list of 6 fields")
    run_id, server_round, src, dst, kind, stage = meta
    for v in (run_id, server_round, src, dst):
        if isinstance(v, bool) or not isinstance(v, int):
            raise WireError("meta ids and round must be integers")
    if not isinstance(kind, str) or not isinstance(stage, str):
        raise WireError("meta kind and stage must be strings")
    metadata = Metadata(run_id, server_round, src, dst, kind, stage)  # type: ignore[arg-type]

    raw_arrays = obj["arrays"]
    if not isinstance(raw_arrays, list) or len(raw_arrays) > limits.max_arrays:
        raise WireError(f"arrays must be a list of at most {limits.max_arrays} entries")
    arrays: dict[str, np.ndarray] = {}
    for entry in raw_arrays:
        name, arr = _decode_array(entry, limits)
        if name in arrays:
            raise WireError(f"duplicate array name {name!r}")
        arrays[name] = arr

    metrics = obj["metrics"]
    if not isinstance(metrics, dict) or len(metrics) > limits.max_entries:
        raise WireError("metrics must be a map within the entry limit")
    for key, value in metrics.items():
        _check_name(key, limits)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise WireError(f"metric {key!r} must be int or float")

    config = obj["config"]
    if not isinstance(config, dict) or len(config) > limits.max_entries:
        raise WireError("config must be a map within the entry limit")
    for key, value in config.items():
        _check_name(key, limits)
        values = value if isinstance(value, list) else [value]
        if isinstance(value, list) and len(value) > limits.max_list_items:
            raise WireError(f"config list {key!r} exceeds {limits.max_list_items} items")
        for v in values:
            if not isinstance(v, (bool, int, float, str, bytes)):
                raise WireError(f"config {key!r} holds a {type(v).__name__}")
    return Message(metadata=metadata, arrays=arrays, metrics=metrics, config=config)


def _check_name(name: Any, limits: WireLimits) -> None:
    if not isinstance(name, str) or len(name) > limits.max_name_chars:
        raise WireError(f"names must be strings of at most {limits.max_name_chars} characters")


def _decode_array(entry: Any, limits: WireLimits) -> tuple[str, np.ndarray]:
    if not isinstance(entry, list) or len(entry) != 4:
        raise WireError("each array must be [name, dtype, shape, buffer]")
    name, dtype_str, shape, buf = entry
    _check_name(name, limits)
    if dtype_str not in _ALLOWED_DTYPES:
        raise WireError(f"array {name!r}: dtype {dtype_str!r} is not allowed")
    if not isinstance(shape, list) or len(shape) > limits.max_ndim:
        raise WireError(f"array {name!r}: shape must be a list of at most {limits.max_ndim} dims")
    for dim in shape:
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 0:
            raise WireError(f"array {name!r}: dimensions must be non-negative integers")
    if not isinstance(buf, bytes):
        raise WireError(f"array {name!r}: buffer must be bytes")
    dtype = np.dtype(dtype_str)
    count = math.prod(shape)
    if count * dtype.itemsize != len(buf):
        raise WireError(
            f"array {name!r}: shape {shape} of {dtype_str} needs {count * dtype.itemsize} bytes, got {len(buf)}"
        )
    arr = np.frombuffer(buf, dtype=dtype).reshape(shape)
    if dtype.kind == "b" and count and np.frombuffer(buf, dtype=np.uint8).max() > 1:
        raise WireError(f"array {name!r}: boolean bytes must be 0 or 1")
    # Native byte order and writable, so receivers may update arrays in place.
    return name, arr.astype(dtype.newbyteorder("="), copy=True)
