"""Safe wire format for :class:`~privfl.core.message.Message`: a msgpack header plus raw array buffers.

No pickle, no extension types, no object dtypes. Decoding validates every field
against :class:`WireLimits` before allocating, and any malformed or hostile input
raises :class:`~privfl.errors.WireError` and nothing else.

Layout (all integers little-endian)::

    b"PFW" | version (1 byte) | header length H (uint32) | header (H bytes of msgpack)
    | zero padding to a multiple of 64 | array 0 | zero padding | array 1 | ...

The header is the msgpack map ``{"meta": [run, round, src, dst, kind, stage],
"arrays": [[name, dtype, shape], ...], "metrics": {..}, "config": {..}}``. Array
buffers are little-endian (or byte-order free) C-contiguous bytes, each starting at
the next multiple of :data:`ALIGNMENT` from the start of the message, in header
order; the message ends where the last buffer ends. Offsets follow from the shapes,
so there is exactly one encoding of each message and no offset to check for overlap.

Large arrays never pass through msgpack: :func:`encode` copies each buffer once
into the output, and :func:`decode` copies nothing when it can: arrays are read-only
views of an immutable input (``bytes``), or writable views of a buffer the caller
hands over (``owned=True``: what transports do with a buffer they just received).
Any other input (a ``bytearray`` the caller may reuse) is copied once, array by
array, so that nobody can change a message after it was validated. The views keep
the input alive.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np

from privfl.core.message import Message, Metadata
from privfl.errors import MessageError, WireError

WIRE_VERSION = 2
ALIGNMENT = 64
"""Array buffers start at multiples of this many bytes from the start of the message (a cache line)."""

_MAGIC = b"PFW"
_PREFIX = struct.Struct("<3sBI")
_PADDING = bytes(ALIGNMENT)
_HEADER_KEYS = frozenset(["meta", "arrays", "metrics", "config"])
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


def _padding(offset: int) -> int:
    return -offset % ALIGNMENT


def encode(message: Message) -> bytes:
    """Serialise ``message`` to bytes. Raises :class:`MessageError` for content that cannot travel.

    Each array's bytes are copied once, into the returned buffer (a byte swap or a
    non-contiguous layout costs one more copy).
    """
    head, buffers = _layout(message)
    parts: list[Any] = [head]
    offset = len(head)
    for start, buf in buffers:
        parts += [_PADDING[: start - offset], buf]
        offset = start + buf.nbytes
    return b"".join(parts)


def encode_array(message: Message) -> np.ndarray:
    """The bytes of :func:`encode` in a new ``uint8`` array, the caller's own.

    Faster than :func:`encode` for large messages: numpy backs large arrays with huge
    pages, where a new ``bytes`` object pays a page fault every 4 KiB. Transports that
    move messages inside one process, or write them to a pipe or socket, use this form
    and hand it to :func:`decode` with ``owned=True``.
    """
    head, buffers = _layout(message)
    out = np.empty(buffers[-1][0] + buffers[-1][1].nbytes if buffers else len(head), dtype=np.uint8)
    out[: len(head)] = np.frombuffer(head, dtype=np.uint8)
    offset = len(head)
    for start, buf in buffers:
        out[offset:start] = 0
        # Copied in the array's own dtype: numpy moves wide words faster than bytes.
        np.copyto(out[start : start + buf.nbytes].view(buf.dtype), buf.reshape(-1))
        offset = start + buf.nbytes
    return out


def encoded_size(message: Message) -> int:
    """``len(encode(message))``, without copying any array: what a transport counts as traffic."""
    head, buffers = _layout(message)
    return buffers[-1][0] + buffers[-1][1].nbytes if buffers else len(head)


def _layout(message: Message) -> tuple[bytes, list[tuple[int, np.ndarray]]]:
    """The prefix and header, and each array's wire buffer with its offset in the message."""
    md = message.metadata
    entries = []
    arrays = []
    for name, arr in message.arrays.items():
        if not isinstance(name, str):
            raise MessageError(f"array names must be str, got {type(name).__name__}")
        a = np.asarray(arr)
        wire_dtype = _wire_dtype(a.dtype)
        entries.append([name, wire_dtype.str, list(a.shape)])
        # A no-op for contiguous little-endian input (0-d arrays come back 1-d: the shape is in the header).
        arrays.append(np.ascontiguousarray(a, dtype=wire_dtype))
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
    header = {
        "meta": [md.run_id, md.server_round, md.src_node, md.dst_node, md.kind.value, md.stage],
        "arrays": entries,
        "metrics": metrics,
        "config": config,
    }
    try:
        packed = msgpack.packb(header, use_bin_type=True)
    except (ValueError, OverflowError, TypeError) as exc:  # e.g. a str with lone surrogates is not UTF-8
        raise MessageError(f"message cannot be encoded: {exc}") from None
    head = _PREFIX.pack(_MAGIC, WIRE_VERSION, len(packed)) + packed
    buffers = []
    offset = len(head)
    for buf in arrays:
        offset += _padding(offset)
        buffers.append((offset, buf))
        offset += buf.nbytes
    return head, buffers


def _refuse_ext(code: int, data: bytes) -> Any:
    raise WireError(f"msgpack extension type {code} is not allowed")


def decode(
    data: bytes | bytearray | memoryview | np.ndarray, limits: WireLimits = DEFAULT_LIMITS, *, owned: bool = False
) -> Message:
    """Parse and validate bytes produced by :func:`encode` or :func:`encode_array`.

    Args:
        data: the encoded message.
        limits: bounds checked before anything is allocated.
        owned: the caller hands a writable ``data`` over to the message and will not
            touch it again: arrays are writable views of it, with no copy.

    Arrays are views of ``data`` when nobody else can change it: read-only ones of
    ``bytes`` (or of a read-only array that owns its memory), writable ones of an
    ``owned`` buffer. Otherwise they are writable copies.

    Raises:
        WireError: for any input that is not a valid, in-limits encoded message.
    """
    try:
        return _decode(data, limits, owned)
    except WireError:
        raise
    except MessageError as exc:
        raise WireError(f"invalid message: {exc}") from None
    except Exception as exc:  # msgpack and numpy raise many types; none may escape
        raise WireError(f"malformed message: {type(exc).__name__}") from None


def _decode(data: bytes | bytearray | memoryview | np.ndarray, limits: WireLimits, owned: bool) -> Message:
    if not isinstance(data, (bytes, bytearray, memoryview, np.ndarray)):
        raise WireError(f"expected bytes, got {type(data).__name__}")
    view = memoryview(data)
    if view.itemsize != 1 or view.ndim != 1 or not view.c_contiguous:
        raise WireError("expected a contiguous buffer of bytes")
    size = view.nbytes
    if size > limits.max_message_bytes:
        raise WireError(f"message of {size} bytes exceeds the limit of {limits.max_message_bytes}")
    if size < _PREFIX.size:
        raise WireError("message shorter than its prefix")
    magic, version, header_size = _PREFIX.unpack_from(view)
    if magic != _MAGIC:
        raise WireError("not a privfl message (bad magic bytes)")
    if version != WIRE_VERSION:
        raise WireError(f"unsupported wire version {version}; this build reads version {WIRE_VERSION}")
    if header_size > size - _PREFIX.size:
        raise WireError(f"header of {header_size} bytes overruns a message of {size} bytes")
    obj = msgpack.unpackb(
        view[_PREFIX.size : _PREFIX.size + header_size],
        raw=False,
        strict_map_key=True,
        use_list=True,
        ext_hook=_refuse_ext,
        max_str_len=header_size,
        max_bin_len=header_size,
        max_array_len=max(limits.max_arrays, limits.max_list_items, 8),
        max_map_len=max(limits.max_entries, 8),
    )
    if not isinstance(obj, dict) or set(obj) != _HEADER_KEYS:
        raise WireError("header must be a map with keys meta, arrays, metrics, config")
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
    # Every size and offset is checked against the input before any array is built.
    offset = _PREFIX.size + header_size
    layout: list[tuple[str, np.dtype, list[int], int]] = []
    names: set[str] = set()
    for entry in raw_arrays:
        name, dtype, shape = _array_entry(entry, limits)
        if name in names:
            raise WireError(f"duplicate array name {name!r}")
        names.add(name)
        start = offset + _padding(offset)
        end = start + math.prod(shape) * dtype.itemsize
        if end > size:
            raise WireError(f"array {name!r}: shape {shape} of {dtype.str} overruns the message")
        if view[offset:start] != _PADDING[: start - offset]:  # canonical: one encoding per message
            raise WireError("padding bytes must be zero")
        layout.append((name, dtype, shape, start))
        offset = end
    if offset != size:
        raise WireError(f"message of {size} bytes, but its header describes {offset}")
    # Views only into buffers nobody else can write: bytes, a read-only array owning its memory, or an owned buffer.
    owner = view.obj
    immutable = isinstance(owner, bytes) or (
        isinstance(owner, np.ndarray) and owner.base is None and not owner.flags.writeable
    )
    share = immutable or (owned and not view.readonly)
    arrays = {name: _array_view(view, name, dtype, shape, start, share) for name, dtype, shape, start in layout}

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


def _array_entry(entry: Any, limits: WireLimits) -> tuple[str, np.dtype, list[int]]:
    """Name, dtype and shape of one header entry, validated (no buffer is touched)."""
    if not isinstance(entry, list) or len(entry) != 3:
        raise WireError("each array must be [name, dtype, shape]")
    name, dtype_str, shape = entry
    _check_name(name, limits)
    if dtype_str not in _ALLOWED_DTYPES:
        raise WireError(f"array {name!r}: dtype {dtype_str!r} is not allowed")
    if not isinstance(shape, list) or len(shape) > limits.max_ndim:
        raise WireError(f"array {name!r}: shape must be a list of at most {limits.max_ndim} dims")
    for dim in shape:
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 0:
            raise WireError(f"array {name!r}: dimensions must be non-negative integers")
    return name, np.dtype(dtype_str), shape


def _array_view(view: memoryview, name: str, dtype: np.dtype, shape: list[int], start: int, share: bool) -> np.ndarray:
    """The array at ``start`` of ``view``: a view of it if ``share``, else a copy (writable as ``view`` is)."""
    count = math.prod(shape)
    arr = np.frombuffer(view, dtype=dtype, count=count, offset=start) if count else np.empty(0, dtype)
    if not share or not dtype.isnative:
        arr = arr.astype(dtype.newbyteorder("="))  # copied before it is checked: the caller may mutate view
    if dtype.kind == "b" and count and arr.view(np.uint8).max() > 1:
        raise WireError(f"array {name!r}: boolean bytes must be 0 or 1")
    return arr.reshape(shape)
