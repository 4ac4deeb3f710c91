"""Wire codec: round-trip properties, fuzzing of the decoder, hostile inputs and encoder refusals."""

from __future__ import annotations

import math
import struct
import time
import tracemalloc

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from privfl.core.message import Message, MessageKind, Metadata
from privfl.core.wire import (
    ALIGNMENT,
    DEFAULT_LIMITS,
    WIRE_VERSION,
    WireLimits,
    decode,
    encode,
    encode_array,
    encoded_size,
)
from privfl.errors import MessageError, WireError

FAST = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


def depths(quick: int, deep: int) -> pytest.MarkDecorator:
    """Run a property test with ``quick`` examples by default and ``deep`` ones under the slow marker."""
    return pytest.mark.parametrize(
        "examples", [pytest.param(quick, id="quick"), pytest.param(deep, id="deep", marks=pytest.mark.slow)]
    )


# ---------------------------------------------------------------- strategies

INT64 = st.integers(-(2**63), 2**63 - 1)
UINT64 = st.integers(0, 2**64 - 1)
IDS = st.integers(0, 2**63 - 1)
NAMES = st.text(max_size=12)

BASE_DTYPES = ["b1", "i1", "u1", "i2", "u2", "i4", "u4", "i8", "u8", "f2", "f4", "f8"]


@st.composite
def wire_dtypes(draw: st.DrawFn) -> np.dtype:
    base = np.dtype(draw(st.sampled_from(BASE_DTYPES)))
    if base.itemsize > 1:
        base = base.newbyteorder(draw(st.sampled_from(["<", ">", "="])))
    return base


@st.composite
def any_arrays(draw: st.DrawFn, max_side: int = 4) -> np.ndarray:
    dtype = draw(wire_dtypes())
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=max_side))
    floats = st.floats(allow_nan=True, allow_infinity=True, width=8 * dtype.itemsize) if dtype.kind == "f" else None
    arr = draw(hnp.arrays(dtype, shape, elements=floats))
    if draw(st.booleans()) and arr.ndim >= 2:
        arr = arr.T  # non-C-contiguous input
    return arr


SCALARS = st.one_of(
    st.booleans(),
    INT64,
    UINT64,
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.binary(max_size=20),
)
CONFIG_VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=5))
METRIC_VALUES = st.one_of(INT64, UINT64, st.floats(allow_nan=True, allow_infinity=True))


@st.composite
def metadatas(draw: st.DrawFn) -> Metadata:
    return Metadata(
        run_id=draw(IDS),
        server_round=draw(IDS),
        src_node=draw(IDS),
        dst_node=draw(IDS),
        kind=draw(st.sampled_from(list(MessageKind))),
        stage=draw(st.text(max_size=128)),
    )


@st.composite
def messages(draw: st.DrawFn, max_arrays: int = 4, max_side: int = 4) -> Message:
    return Message(
        metadata=draw(metadatas()),
        arrays=draw(st.dictionaries(NAMES, any_arrays(max_side=max_side), max_size=max_arrays)),
        metrics=draw(st.dictionaries(NAMES, METRIC_VALUES, max_size=4)),
        config=draw(st.dictionaries(NAMES, CONFIG_VALUES, max_size=4)),
    )


# ---------------------------------------------------------------- helpers


def same_scalar(a: object, b: object) -> bool:
    """Equal in type and value; floats compared bit for bit (NaN and -0.0 included)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return struct.pack("<d", a) == struct.pack("<d", b)
    return a == b


def assert_same_message(decoded: Message, original: Message) -> None:
    assert decoded.metadata == original.metadata
    assert list(decoded.arrays) == list(original.arrays)
    for name, orig in original.arrays.items():
        got = decoded.arrays[name]
        assert got.dtype == orig.dtype.newbyteorder("="), (name, got.dtype, orig.dtype)
        assert got.dtype.isnative
        assert got.shape == orig.shape
        # Bit-exact values, NaN payloads included.
        assert got.tobytes() == orig.astype(got.dtype).tobytes()
        assert got.flags.c_contiguous
    assert list(decoded.metrics) == list(original.metrics)
    for key, value in original.metrics.items():
        assert same_scalar(decoded.metrics[key], value), (key, decoded.metrics[key], value)
    assert list(decoded.config) == list(original.config)
    for key, value in original.config.items():
        got = decoded.config[key]
        if isinstance(value, list):
            assert isinstance(got, list) and len(got) == len(value)
            assert all(same_scalar(g, v) for g, v in zip(got, value, strict=True))
        else:
            assert same_scalar(got, value), (key, got, value)


def decode_or_wire_error(data: bytes, limits: WireLimits = DEFAULT_LIMITS) -> Message | None:
    """Decode; a WireError is fine, anything else propagates and fails the test.

    A message that does decode must be valid: it re-encodes and decodes to itself.
    """
    try:
        msg = decode(data, limits)
    except WireError:
        return None
    assert isinstance(msg, Message)
    assert_same_message(decode(encode(msg)), msg)
    return msg


def meta(**kw: object) -> Metadata:
    base = {"run_id": 7, "server_round": 3, "src_node": 0, "dst_node": 5, "kind": MessageKind.TRAIN, "stage": ""}
    base.update(kw)
    return Metadata(**base)  # type: ignore[arg-type]


PREFIX = struct.Struct("<3sBI")  # b"PFW", version, header length: the layout in privfl.core.wire's docstring


def frame(header: bytes, buffers: list[bytes] = (), version: int = WIRE_VERSION) -> bytes:
    """A message laid out by hand: prefix, header, then each buffer at the next multiple of ALIGNMENT."""
    out = bytearray(PREFIX.pack(b"PFW", version, len(header)) + header)
    for buf in buffers:
        out += bytes(-len(out) % ALIGNMENT) + buf
    return bytes(out)


def unpack(data: bytes) -> dict:
    """The header of an encoded message with each array entry given its buffer: [name, dtype, shape, buffer]."""
    _, _, size = PREFIX.unpack_from(data)
    header = msgpack.unpackb(data[PREFIX.size : PREFIX.size + size], raw=False)
    offset = PREFIX.size + size
    for entry in header["arrays"]:
        offset += -offset % ALIGNMENT
        nbytes = math.prod(entry[2]) * np.dtype(entry[1]).itemsize
        entry.append(data[offset : offset + nbytes])
        offset += nbytes
    return header


def valid_payload() -> dict:
    """The header of a small valid message with its array buffers inline (see :func:`unpack`), to tamper with."""
    msg = Message(
        meta(stage="s"),
        arrays={"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.array([True, False])},
        metrics={"loss": 0.5, "num_examples": 10},
        config={"lr": 0.1, "tags": ["a", 1, b"x"]},
    )
    return unpack(encode(msg))


def pack(payload: object) -> bytes:
    """Inverse of :func:`unpack`: well-formed array entries give their buffer to the body, others stay as they are."""
    buffers = []
    if isinstance(payload, dict) and isinstance(payload.get("arrays"), list):
        entries = []
        for entry in payload["arrays"]:
            if isinstance(entry, list) and len(entry) == 4 and isinstance(entry[3], bytes):
                entries.append(entry[:3])
                buffers.append(entry[3])
            else:
                entries.append(entry)
        payload = {**payload, "arrays": entries}
    return frame(msgpack.packb(payload, use_bin_type=True), buffers)


# ---------------------------------------------------------------- round trip


@depths(60, 300)
def test_round_trip_random_messages(examples: int) -> None:
    @settings(FAST, max_examples=examples)
    @given(messages())
    def check(msg: Message) -> None:
        data = encode(msg)
        decoded = decode(data)
        assert_same_message(decoded, msg)
        # Encoding is deterministic and stable under a second round trip.
        assert encode(decoded) == data

    check()


@settings(FAST, max_examples=200)
@given(any_arrays(max_side=6))
def test_round_trip_single_array_every_dtype_and_shape(arr: np.ndarray) -> None:
    msg = Message(meta(), arrays={"x": arr})
    assert_same_message(decode(encode(msg)), msg)


@pytest.mark.parametrize("base", BASE_DTYPES)
@pytest.mark.parametrize("shape", [(), (0,), (3, 0, 2), (5,), (2, 3, 4)])
def test_round_trip_each_dtype_explicitly(base: str, shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(0)
    values = rng.integers(0, 2, size=shape) if base == "b1" else rng.integers(0, 100, size=shape)
    for order in ("<", ">"):
        dtype = np.dtype(base).newbyteorder(order) if np.dtype(base).itemsize > 1 else np.dtype(base)
        arr = values.astype(dtype)
        decoded = decode(encode(Message(meta(), arrays={"x": arr}))).arrays["x"]
        assert decoded.shape == shape  # 0-d arrays stay 0-d
        assert decoded.dtype == np.dtype(base)
        np.testing.assert_array_equal(decoded, values.astype(base))


def test_big_endian_input_is_little_endian_on_the_wire() -> None:
    arr = np.array([1.5, -2.25], dtype=">f8")
    payload = unpack(encode(Message(meta(), arrays={"x": arr})))
    name, dtype, shape, buf = payload["arrays"][0]
    assert (name, dtype, shape) == ("x", "<f8", [2])
    assert buf == np.array([1.5, -2.25], dtype="<f8").tobytes()


def test_nan_and_inf_survive() -> None:
    arr = np.array([np.nan, np.inf, -np.inf, -0.0, 1.0], dtype=np.float32)
    msg = Message(meta(), arrays={"x": arr}, metrics={"m": float("nan")}, config={"c": float("-inf")})
    out = decode(encode(msg))
    assert out.arrays["x"].tobytes() == arr.tobytes()
    assert math.isnan(out.metrics["m"])
    assert out.config["c"] == float("-inf")


@depths(40, 200)
def test_encode_array_holds_the_bytes_of_encode(examples: int) -> None:
    @settings(FAST, max_examples=examples)
    @given(messages())
    def check(msg: Message) -> None:
        arr = encode_array(msg)
        assert arr.dtype == np.uint8 and arr.ndim == 1
        assert arr.tobytes() == encode(msg)
        assert encoded_size(msg) == len(arr)
        assert_same_message(decode(arr, owned=True), msg)

    check()


def test_arrays_decoded_from_bytes_are_aligned_read_only_views_of_it() -> None:
    msg = Message(meta(stage="odd"), arrays={"a": np.arange(3, dtype=np.uint8), "b": np.arange(5.0)})
    data = encode(msg)
    raw = np.frombuffer(data, dtype=np.uint8)
    for arr in decode(data).arrays.values():
        assert np.shares_memory(arr, raw)  # zero copies
        assert (arr.ctypes.data - raw.ctypes.data) % ALIGNMENT == 0
        assert not arr.flags.writeable
        with pytest.raises(ValueError, match="read-only"):
            arr[...] = 0


def test_an_owned_buffer_is_decoded_into_writable_views_of_it() -> None:
    msg = Message(meta(), arrays={"a": np.arange(3, dtype=np.uint8), "b": np.arange(5.0)})
    data = encode_array(msg)
    out = decode(data, owned=True)
    for arr in out.arrays.values():
        assert np.shares_memory(arr, data) and arr.flags.writeable
        assert (arr.ctypes.data - data.ctypes.data) % ALIGNMENT == 0
    out.arrays["b"] += 1  # the receiver's own
    np.testing.assert_array_equal(out.arrays["b"], np.arange(1.0, 6.0))
    # Without owned=True the same buffer is the caller's, so the message gets copies.
    copied = decode(data).arrays["a"]
    assert not np.shares_memory(copied, data) and copied.flags.writeable
    # A read-only buffer cannot be handed over for writing: its views stay read-only.
    frozen = encode_array(msg)
    frozen.flags.writeable = False
    shared = decode(frozen, owned=True).arrays["a"]
    assert np.shares_memory(shared, frozen) and not shared.flags.writeable


@pytest.mark.parametrize("mutable", ["bytearray", "writable array", "read-only view of a writable array"])
def test_arrays_decoded_from_a_mutable_buffer_are_copies(mutable: str) -> None:
    backing = bytearray(encode(Message(meta(), arrays={"x": np.arange(4, dtype=np.int32)})))
    data: bytearray | np.ndarray = backing
    if mutable != "bytearray":
        data = np.frombuffer(backing, dtype=np.uint8)
        if mutable.startswith("read-only"):
            data = data.view()
            data.flags.writeable = False  # the bytearray behind it stays writable
    out = decode(data).arrays["x"]
    backing[-16:] = bytes(16)  # the caller reuses its buffer after decoding
    np.testing.assert_array_equal(out, [0, 1, 2, 3])
    out += 1  # a copy: the message's own
    np.testing.assert_array_equal(out, [1, 2, 3, 4])


@pytest.mark.parametrize("owned", [False, True])
def test_decoding_a_large_message_allocates_no_copy_of_its_arrays(owned: bool) -> None:
    message = Message(meta(), arrays={"w": np.ones(1 << 23, dtype=np.float32)})  # 32 MiB
    data = encode_array(message) if owned else encode(message)
    tracemalloc.start()
    try:
        out = decode(data, owned=owned)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert out.arrays["w"].sum() == 1 << 23
    assert peak < 1 << 20, f"decode allocated {peak / 2**20:.1f} MiB for a 32 MiB message"


def test_array_order_is_preserved() -> None:
    names = ["z", "a", "m", "0", "10", "2"]
    msg = Message(meta(), arrays={n: np.array([i]) for i, n in enumerate(names)})
    assert list(decode(encode(msg)).arrays) == names


def test_decode_accepts_bytearray_and_memoryview() -> None:
    msg = Message(meta(), arrays={"x": np.arange(3, dtype=np.uint16)}, metrics={"a": 1})
    data = encode(msg)
    assert_same_message(decode(bytearray(data)), msg)
    assert_same_message(decode(memoryview(data)), msg)


def test_numpy_scalars_in_metrics_and_config_travel_as_python_values() -> None:
    msg = Message(
        meta(),
        metrics={"a": np.float32(0.5), "b": np.int64(-3)},
        config={"c": np.uint8(7), "d": [np.float64(1.25), np.bool_(True)]},
    )
    out = decode(encode(msg))
    assert out.metrics == {"a": 0.5, "b": -3}
    assert type(out.metrics["b"]) is int
    assert out.config == {"c": 7, "d": [1.25, True]}
    assert type(out.config["d"][1]) is bool


# ---------------------------------------------------------------- fuzzing


@settings(FAST, max_examples=1000)
@given(st.binary(max_size=600))
def test_fuzz_random_bytes(data: bytes) -> None:
    decode_or_wire_error(data)


@settings(FAST, max_examples=500)
@given(st.binary(max_size=300))
def test_fuzz_random_bytes_behind_a_valid_prefix(tail: bytes) -> None:
    # Random bytes after a plausible map header reach deeper into the validator.
    decode_or_wire_error(frame(b"\x84\xa4meta" + tail))
    decode_or_wire_error(PREFIX.pack(b"PFW", WIRE_VERSION, len(tail) // 2) + tail)


SMALL_MESSAGES = messages(max_arrays=3, max_side=3)


@st.composite
def mutated_encodings(draw: st.DrawFn) -> bytes:
    data = bytearray(encode(draw(SMALL_MESSAGES)))
    op = draw(st.sampled_from(["flip", "truncate", "extend", "splice", "overwrite", "insert", "delete"]))
    if op == "flip":
        for _ in range(draw(st.integers(1, 8))):
            pos = draw(st.integers(0, len(data) - 1))
            data[pos] ^= 1 << draw(st.integers(0, 7))
    elif op == "truncate":
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif op == "extend":
        data += draw(st.binary(min_size=1, max_size=64))
    elif op == "splice":
        other = encode(draw(SMALL_MESSAGES))
        data = data[: draw(st.integers(0, len(data)))] + other[draw(st.integers(0, len(other))) :]
    elif op == "overwrite":
        pos = draw(st.integers(0, len(data) - 1))
        chunk = draw(st.binary(min_size=1, max_size=16))
        data[pos : pos + len(chunk)] = chunk
    elif op == "insert":
        pos = draw(st.integers(0, len(data)))
        data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
    else:
        pos = draw(st.integers(0, len(data) - 1))
        del data[pos : pos + draw(st.integers(1, 16))]
    return bytes(data)


@depths(150, 1000)
def test_fuzz_mutated_valid_encodings(examples: int) -> None:
    @settings(FAST, max_examples=examples)
    @given(mutated_encodings())
    def check(data: bytes) -> None:
        decode_or_wire_error(data)

    check()


# Arbitrary msgpack values, including ext types, to substitute into one field of a valid payload.
MSGPACK_VALUES = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**63), 2**64 - 1),
        st.floats(allow_nan=True),
        st.text(max_size=8),
        st.binary(max_size=16),
        st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=8)),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(st.text(max_size=4), st.integers(-5, 5)), children, max_size=3),
    ),
    max_leaves=12,
)

PATHS = [
    ("v",),
    ("meta",),
    ("meta", 0),
    ("meta", 1),
    ("meta", 3),
    ("meta", 4),
    ("meta", 5),
    ("arrays",),
    ("arrays", 0),
    ("arrays", 0, 0),
    ("arrays", 0, 1),
    ("arrays", 0, 2),
    ("arrays", 0, 2, 0),
    ("arrays", 0, 3),
    ("arrays", 1, 3),
    ("metrics",),
    ("metrics", "loss"),
    ("config",),
    ("config", "lr"),
    ("config", "tags"),
    ("config", "tags", 1),
]


@depths(200, 1000)
def test_fuzz_structured_field_substitution(examples: int) -> None:
    @settings(FAST, max_examples=examples)
    @given(st.sampled_from(PATHS), MSGPACK_VALUES)
    def check(path: tuple, value: object) -> None:
        payload = valid_payload()
        node = payload
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        decode_or_wire_error(pack(payload))

    check()


@depths(50, 200)
def test_fuzz_extra_or_missing_top_level_keys(examples: int) -> None:
    @settings(FAST, max_examples=examples)
    @given(st.dictionaries(st.text(max_size=8), MSGPACK_VALUES, max_size=6))
    def check(extra: dict) -> None:
        payload = valid_payload()
        payload.update(extra)
        if set(payload) != {"meta", "arrays", "metrics", "config"}:
            with pytest.raises(WireError):
                decode(pack(payload))
        else:
            decode_or_wire_error(pack(payload))

    check()


# ---------------------------------------------------------------- hostile inputs


def _assert_rejected_cheaply(data: bytes, limits: WireLimits = DEFAULT_LIMITS, max_mb: float = 256.0) -> None:
    tracemalloc.start()
    try:
        t0 = time.process_time()  # CPU time: robust to a loaded machine
        with pytest.raises(WireError):
            decode(data, limits)
        elapsed = time.process_time() - t0
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert elapsed < 2.0, f"rejection took {elapsed:.2f} s of CPU"
    assert peak < max_mb * 2**20, f"decoder allocated {peak / 2**20:.1f} MiB"


def test_huge_declared_shape_with_tiny_buffer_is_rejected_quickly() -> None:
    payload = valid_payload()
    payload["arrays"] = [["x", "<f4", [2**40], b"\0" * 16]]
    _assert_rejected_cheaply(pack(payload), max_mb=8)
    payload["arrays"] = [["x", "<f8", [2**20, 2**20, 2**20], b""]]
    _assert_rejected_cheaply(pack(payload), max_mb=8)
    # A zero-size array may have a large dim when another is 0: the product decides.
    payload["arrays"] = [["x", "<f8", [10**6, 0], b""]]
    assert decode(pack(payload)).arrays["x"].shape == (10**6, 0)
    # Dims numpy cannot represent are a WireError, not numpy's ValueError.
    payload["arrays"] = [["x", "<f8", [2**62, 0], b""]]
    _assert_rejected_cheaply(pack(payload), max_mb=8)


def test_shape_overflowing_int64_is_rejected() -> None:
    payload = valid_payload()
    payload["arrays"] = [["x", "|u1", [2**64 - 1, 2**64 - 1], b"ab"]]
    _assert_rejected_cheaply(pack(payload), max_mb=8)


@pytest.mark.parametrize(
    "data",
    [
        b"\xc6\xff\xff\xff\xff" + b"ab",  # bin32 declaring 4 GiB
        b"\xdb\xff\xff\xff\xff" + b"ab",  # str32 declaring 4 GiB
        b"\xdd\xff\xff\xff\xff\x01",  # array32 declaring 4G items
        b"\xdf\xff\xff\xff\xff\xa1a\x01",  # map32 declaring 4G entries
        b"\xc9\xff\xff\xff\xff\x05a",  # ext32 declaring 4 GiB
        b"\xdd\x00\x10\x00\x00" * 1000,  # 1000 nested arrays of 2^20 items each
        b"\x91" * 100_000,  # very deep nesting
        b"\x81\xa1a" * 50_000,  # very deep nested maps
    ],
    ids=["bin32", "str32", "array32", "map32", "ext32", "nested-arrays", "deep-arrays", "deep-maps"],
)
def test_huge_declared_lengths_and_nesting(data: bytes) -> None:
    _assert_rejected_cheaply(data)


def test_huge_declared_header_length_is_rejected_cheaply() -> None:
    good = encode(Message(meta(), arrays={"x": np.zeros(4, dtype=np.uint8)}))
    for size in (2**32 - 1, len(good)):  # 4 GiB, and one that overruns the message
        _assert_rejected_cheaply(PREFIX.pack(b"PFW", WIRE_VERSION, size) + good[PREFIX.size :], max_mb=8)


def test_nonzero_padding_and_trailing_bytes_are_rejected() -> None:
    good = encode(Message(meta(), arrays={"a": np.ones(3, dtype=np.uint8), "b": np.ones(2, dtype=np.uint8)}))
    assert decode(good)
    pad = good.index(b"\x01\x01\x01") + 3  # first byte after array a: padding before b
    with pytest.raises(WireError, match="padding"):
        decode(good[:pad] + b"\x01" + good[pad + 1 :])
    for tail in (b"\0", bytes(ALIGNMENT)):
        with pytest.raises(WireError):
            decode(good + tail)


def test_nested_maps_and_lists_in_config_are_rejected() -> None:
    for value in ({"a": 1}, [[1, 2]], [{"a": 1}], None, [None]):
        payload = valid_payload()
        payload["config"]["x"] = value
        with pytest.raises(WireError):
            decode(pack(payload))


@pytest.mark.parametrize("field", ["top", "metric", "config", "array-name", "dtype", "shape", "meta"])
def test_ext_types_are_rejected_everywhere(field: str) -> None:
    ext = msgpack.ExtType(3, b"\x00\x01")
    payload = valid_payload()
    if field == "top":
        data = pack(ext)
    else:
        if field == "metric":
            payload["metrics"]["loss"] = ext
        elif field == "config":
            payload["config"]["lr"] = ext
        elif field == "array-name":
            payload["arrays"][0][0] = ext
        elif field == "dtype":
            payload["arrays"][0][1] = ext
        elif field == "shape":
            payload["arrays"][0][2] = [ext]
        else:
            payload["meta"][5] = ext
        data = pack(payload)
    with pytest.raises(WireError):
        decode(data)


def test_msgpack_timestamp_is_rejected() -> None:
    payload = valid_payload()
    payload["config"]["lr"] = msgpack.Timestamp(1, 0)
    payload["metrics"]["loss"] = msgpack.Timestamp(1, 0)
    with pytest.raises(WireError):
        decode(pack(payload))


@pytest.mark.parametrize("version", [0, 1, 3, 255])
def test_wrong_version_is_rejected(version: int) -> None:
    data = pack(valid_payload())
    with pytest.raises(WireError, match="version"):
        decode(data[:3] + bytes([version]) + data[4:])


@pytest.mark.parametrize("magic", [b"PFV", b"\0\0\0", b"pfw"])
def test_wrong_magic_is_rejected(magic: bytes) -> None:
    with pytest.raises(WireError, match="magic"):
        decode(magic + pack(valid_payload())[3:])


def test_current_version_is_accepted() -> None:
    data = pack(valid_payload())
    assert data[:4] == b"PFW" + bytes([WIRE_VERSION]) and WIRE_VERSION == 2
    assert decode(data).arrays["w"].shape == (2, 3)


def test_duplicate_array_names_are_rejected() -> None:
    payload = valid_payload()
    payload["arrays"].append(list(payload["arrays"][0]))
    with pytest.raises(WireError, match="duplicate"):
        decode(pack(payload))


@pytest.mark.parametrize("byte", [2, 0x80, 0xFF])
def test_bool_arrays_with_bytes_other_than_0_or_1_are_rejected(byte: int) -> None:
    payload = valid_payload()
    payload["arrays"] = [["b", "|b1", [3], bytes([0, 1, byte])]]
    with pytest.raises(WireError, match="boolean"):
        decode(pack(payload))
    payload["arrays"] = [["b", "|b1", [3], bytes([0, 1, 1])]]
    np.testing.assert_array_equal(decode(pack(payload)).arrays["b"], [False, True, True])


@pytest.mark.parametrize("where", ["top", "metrics", "config"])
@pytest.mark.parametrize("key", [1, b"k", 1.5, None, True])
def test_non_string_keys_are_rejected(where: str, key: object) -> None:
    payload = valid_payload()
    if where == "top":
        payload[key] = 1
    else:
        payload[where][key] = 1
    with pytest.raises(WireError):
        decode(pack(payload))


@pytest.mark.parametrize(
    "dtype",
    ["|O", "<c8", "<c16", "<U3", "|S3", "<M8[s]", "<m8[s]", "|V4", ">f4", "f4", "<f16", "<i16", "float32", ""],
)
def test_disallowed_or_non_canonical_dtype_strings_are_rejected(dtype: str) -> None:
    payload = valid_payload()
    payload["arrays"] = [["x", dtype, [1], b"\0" * 4]]
    with pytest.raises(WireError):
        decode(pack(payload))


@pytest.mark.parametrize(
    "meta_value",
    [
        [1, 2, 0, 3, "train"],  # too short
        [1, 2, 0, 3, "train", "", "extra"],
        [-1, 2, 0, 3, "train", ""],
        [1, 2**63, 0, 3, "train", ""],
        [1, 2, 0, 3, "TRAIN", ""],
        [1, 2, 0, 3, "fit", ""],
        [1, 2, 0, 3, "train", "s" * 129],
        [1, 2, True, 3, "train", ""],
        [1, 2.0, 0, 3, "train", ""],
        [1, 2, 0, 3, b"train", ""],
        [1, 2, 0, 3, "train", None],
        {"run": 1},
    ],
)
def test_invalid_metadata_is_rejected(meta_value: object) -> None:
    payload = valid_payload()
    payload["meta"] = meta_value
    with pytest.raises(WireError):
        decode(pack(payload))


@pytest.mark.parametrize("value", [True, False, None, "1", b"1", [1], {"a": 1}])
def test_non_numeric_metric_values_are_rejected_on_decode(value: object) -> None:
    payload = valid_payload()
    payload["metrics"]["loss"] = value
    with pytest.raises(WireError):
        decode(pack(payload))


@pytest.mark.parametrize(
    "entry",
    [
        ["x", "<f4", [1]],  # 3 fields in the header but no buffer in the body
        ["x", "<f4", [1], b"\0" * 4, "extra"],
        [1, "<f4", [1], b"\0" * 4],  # non-string name
        ["x", "<f4", 1, b"\0" * 4],  # shape not a list
        ["x", "<f4", [-1], b"\0" * 4],
        ["x", "<f4", [1.0], b"\0" * 4],
        ["x", "<f4", [True], b"\0" * 4],
        ["x", "<f4", [1], "\0" * 4],  # buffer as str
        ["x", "<f4", [1], b"\0" * 3],  # short buffer
        ["x", "<f4", [1], b"\0" * 5],  # long buffer
        ["x", "<f4", [0], b"\0"],
        "x",
    ],
)
def test_malformed_array_entries_are_rejected(entry: object) -> None:
    payload = valid_payload()
    payload["arrays"] = [entry]
    with pytest.raises(WireError):
        decode(pack(payload))


def test_non_bytes_input_is_rejected() -> None:
    for data in ("text", None, 12, [1, 2], np.zeros(3)):
        with pytest.raises(WireError):
            decode(data)  # type: ignore[arg-type]


# ---------------------------------------------------------------- size limits


def _limit_message(n: int) -> Message:
    return Message(
        meta(stage="s"),
        arrays={f"a{i}": np.zeros((1,) * n, dtype=np.uint8) for i in range(n)},
        metrics={f"m{i}": i for i in range(n)},
        config={"k" * n: list(range(n))},
    )


@pytest.mark.parametrize(
    "field", ["max_arrays", "max_ndim", "max_entries", "max_name_chars", "max_list_items", "max_message_bytes"]
)
def test_limits_are_enforced_at_the_boundary(field: str) -> None:
    n = 5
    msg = _limit_message(n)
    data = encode(msg)
    at_limit = len(data) if field == "max_message_bytes" else n
    # Exactly at the limit decodes; one below it is rejected.
    assert_same_message(decode(data, WireLimits(**{field: at_limit})), msg)
    with pytest.raises(WireError):
        decode(data, WireLimits(**{field: at_limit - 1}))


def test_config_entries_limit() -> None:
    msg = Message(meta(), config={f"c{i}": i for i in range(10)})
    assert decode(encode(msg), WireLimits(max_entries=10)).config == msg.config
    with pytest.raises(WireError):
        decode(encode(msg), WireLimits(max_entries=9))


def test_long_stage_or_name_in_metrics_is_checked() -> None:
    msg = Message(meta(), metrics={"x" * 300: 1.0})
    with pytest.raises(WireError):
        decode(encode(msg))  # default limit is 256 characters
    assert decode(encode(msg), WireLimits(max_name_chars=300)).metrics == {"x" * 300: 1.0}


def test_wire_limits_must_be_positive() -> None:
    with pytest.raises(MessageError):
        WireLimits(max_arrays=0)
    with pytest.raises(MessageError):
        WireLimits(max_message_bytes=-1)


def test_memoryview_of_non_byte_items_is_a_wire_error() -> None:
    data = encode(Message(meta(), arrays={"x": np.zeros(64, dtype=np.uint8)}))
    data += b"\0" * (-len(data) % 8)
    with pytest.raises(WireError):
        decode(memoryview(data).cast("Q"))


# ---------------------------------------------------------------- encoder refusals


@pytest.mark.parametrize(
    "arr",
    [
        np.array([object(), 1], dtype=object),
        np.array([1 + 2j], dtype=np.complex64),
        np.array([1 + 2j], dtype=np.complex128),
        np.array(["abc"]),
        np.array([b"abc"]),
        np.array(["2020-01-01"], dtype="datetime64[D]"),
        np.array([1], dtype="timedelta64[s]"),
        np.zeros(2, dtype=[("a", "<i4"), ("b", "<f4")]),
        np.zeros(2, dtype=np.longdouble) if np.dtype(np.longdouble).itemsize > 8 else np.array([None]),
        [1, "a"],
    ],
    ids=["object", "c8", "c16", "unicode", "bytes", "datetime", "timedelta", "structured", "longdouble", "mixed"],
)
def test_encode_refuses_arrays_that_cannot_travel(arr: object) -> None:
    with pytest.raises(MessageError):
        encode(Message(meta(), arrays={"x": arr}))  # type: ignore[dict-item]


@pytest.mark.parametrize(
    "metrics",
    [
        {"m": "1.0"},
        {"m": None},
        {"m": True},
        {"m": np.bool_(False)},
        {"m": [1.0]},
        {"m": 1 + 1j},
        {"m": np.complex64(1)},
        {"m": 2**64},
        {"m": -(2**63) - 1},
        {1: 1.0},
    ],
)
def test_encode_refuses_non_numeric_or_out_of_range_metrics(metrics: dict) -> None:
    with pytest.raises(MessageError):
        encode(Message(meta(), metrics=metrics))


@pytest.mark.parametrize(
    "config",
    [
        {"c": None},
        {"c": {"nested": 1}},
        {"c": [[1]]},
        {"c": [None]},
        {"c": 2**64},
        {"c": np.zeros(3)},
        {"c": object()},
        {1: "x"},
        {b"k": "x"},
    ],
)
def test_encode_refuses_config_values_that_cannot_travel(config: dict) -> None:
    with pytest.raises(MessageError):
        encode(Message(meta(), config=config))


@pytest.mark.parametrize("where", ["stage", "array-name", "metric-name", "config-name", "config-value", "config-list"])
def test_encode_refuses_strings_that_are_not_utf8(where: str) -> None:
    bad = "ok\ud800"  # a lone surrogate has no UTF-8 encoding
    msg = {
        "stage": Message(meta(stage=bad)),
        "array-name": Message(meta(), arrays={bad: np.zeros(1)}),
        "metric-name": Message(meta(), metrics={bad: 1}),
        "config-name": Message(meta(), config={bad: 1}),
        "config-value": Message(meta(), config={"c": bad}),
        "config-list": Message(meta(), config={"c": ["a", bad]}),
    }[where]
    with pytest.raises(MessageError):
        encode(msg)


def test_encode_refuses_non_string_array_names() -> None:
    with pytest.raises(MessageError):
        encode(Message(meta(), arrays={1: np.zeros(2)}))  # type: ignore[dict-item]


@settings(FAST, max_examples=200)
@given(INT64 | UINT64)
def test_64_bit_integers_round_trip_in_metrics_and_config(value: int) -> None:
    msg = Message(meta(), metrics={"m": value}, config={"c": value, "l": [value]})
    out = decode(encode(msg))
    assert out.metrics["m"] == value and out.config["c"] == value and out.config["l"] == [value]


@settings(FAST, max_examples=100)
@given(st.integers(2**64, 2**80) | st.integers(-(2**80), -(2**63) - 1))
def test_integers_beyond_64_bits_are_refused(value: int) -> None:
    assume(value != 0)
    with pytest.raises(MessageError):
        encode(Message(meta(), metrics={"m": value}))
    with pytest.raises(MessageError):
        encode(Message(meta(), config={"c": [value]}))
