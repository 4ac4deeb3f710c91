"""privfl <-> Flower message conversion: exact round trips through Flower's protobuf wire, refusals, node map."""

from __future__ import annotations

import io
import math
import pkgutil
import subprocess
import sys

import flwr  # noqa: F401
import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, MetricRecord, RecordDict
from flwr.app import Message as FlowerMessage
from flwr.common.serde import message_from_proto, message_to_proto
from flwr.proto.message_pb2 import Message as ProtoMessage
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from privfl.core.message import Message, MessageKind, Metadata
from privfl.errors import MessageError
from privfl.integrations.flower.convert import (
    META_KEY,
    NodeMap,
    from_flower_reply,
    from_recorddict,
    kind_of,
    to_flower,
    to_recorddict,
)

FAST = settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])

BASE_DTYPES = ["b1", "i1", "u1", "i2", "u2", "i4", "u4", "i8", "u8", "f2", "f4", "f8"]
INT64 = st.integers(-(2**63), 2**63 - 1)
UINT64_HIGH = st.integers(2**63, 2**64 - 1)
FLOATS = st.floats(allow_nan=True, allow_infinity=True)
NAMES = st.text(max_size=10).filter(lambda s: not s.startswith("privfl:"))


@st.composite
def arrays(draw: st.DrawFn) -> np.ndarray:
    dtype = np.dtype(draw(st.sampled_from(BASE_DTYPES)))
    if dtype.itemsize > 1:
        dtype = dtype.newbyteorder(draw(st.sampled_from(["<", ">"])))
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4))
    arr = draw(hnp.arrays(dtype, shape))
    return arr.T if draw(st.booleans()) else arr  # non-contiguous views too


SCALARS = st.one_of(st.booleans(), INT64, UINT64_HIGH, FLOATS, st.text(max_size=8), st.binary(max_size=16))
CONFIG_LISTS = st.one_of(
    st.lists(st.booleans(), max_size=5),
    st.lists(INT64, max_size=5),
    st.lists(st.integers(0, 2**64 - 1), max_size=5),
    st.lists(FLOATS, max_size=5),
    st.lists(st.text(max_size=5), max_size=5),
    st.lists(st.binary(max_size=5), max_size=5),
)


@st.composite
def messages(draw: st.DrawFn, src: int | None = None, dst: int | None = None) -> Message:
    ids = st.integers(0, 2**63 - 1)
    md = Metadata(
        run_id=draw(ids),
        server_round=draw(ids),
        src_node=draw(ids) if src is None else src,
        dst_node=draw(ids) if dst is None else dst,
        kind=draw(st.sampled_from(list(MessageKind))),
        stage=draw(st.text(max_size=20)),
    )
    return Message(
        metadata=md,
        arrays=draw(st.dictionaries(NAMES, arrays(), max_size=4)),
        metrics=draw(st.dictionaries(NAMES, st.one_of(INT64, UINT64_HIGH, FLOATS), max_size=4)),
        config=draw(st.dictionaries(NAMES, st.one_of(SCALARS, CONFIG_LISTS), max_size=5)),
    )


def _same_value(a: object, b: object) -> bool:
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(_same_value(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return type(a) is type(b) and a == b


def assert_same_message(a: Message, b: Message) -> None:
    assert a.metadata == b.metadata
    assert list(a.arrays) == list(b.arrays)
    for name, arr in a.arrays.items():
        got = b.arrays[name]
        assert got.dtype == arr.dtype and got.shape == arr.shape
        assert got.tobytes() == arr.tobytes()  # bit-exact, NaN payloads and -0.0 included
    assert list(a.metrics) == list(b.metrics) and all(_same_value(v, b.metrics[k]) for k, v in a.metrics.items())
    assert list(a.config) == list(b.config) and all(_same_value(v, b.config[k]) for k, v in a.config.items())


def over_the_wire(message: FlowerMessage) -> FlowerMessage:
    """What a Flower peer decodes: the message through Flower's protobuf serialisation."""
    return message_from_proto(ProtoMessage.FromString(message_to_proto(message).SerializeToString()))


@pytest.mark.usefixtures("flower_task")
@FAST
@given(messages(src=0, dst=3))
def test_server_message_round_trips_through_flower_wire(message: Message) -> None:
    node_map = NodeMap.from_flower_ids([2**64 - 1, 17, 2**63 + 5])
    flower = to_flower(message, node_map)
    assert flower.metadata.dst_node_id == node_map.to_flower(3) == 2**64 - 1
    assert flower.metadata.message_type == message.metadata.kind.value
    received = over_the_wire(flower)
    assert_same_message(message, from_recorddict(received.content, kind_of(received.metadata.message_type)))


@FAST
@given(messages())
def test_recorddict_round_trip_keeps_every_field(message: Message) -> None:
    content = to_recorddict(message)
    assert_same_message(message, from_recorddict(content, message.metadata.kind))


@pytest.mark.usefixtures("flower_task")
@FAST
@given(messages(src=2, dst=0))
def test_reply_round_trips_and_is_checked_against_its_sender(message: Message) -> None:
    node_map = NodeMap.from_flower_ids([10, 20, 30])
    instruction = FlowerMessage(RecordDict(), dst_node_id=20, message_type=message.metadata.kind.value)
    instruction.metadata.__dict__["_message_id"] = "m1"  # what the SuperLink would stamp
    reply = over_the_wire(FlowerMessage(to_recorddict(message), reply_to=instruction))
    assert_same_message(message, from_flower_reply(reply, node_map))
    spoofed = FlowerMessage(to_recorddict(message), reply_to=instruction)
    spoofed.metadata.__dict__["_src_node_id"] = 30  # node 3 sending node 2's reply
    with pytest.raises(MessageError, match="claims to be from node 2"):
        from_flower_reply(spoofed, node_map)


def test_content_without_envelope_is_what_a_flower_app_reads() -> None:
    md = Metadata(1, 4, 0, 2, MessageKind.TRAIN, "secagg.masked_input")
    message = Message(md, arrays={"w": np.ones(3, np.float32)}, config={"lr": 0.1, "epochs": 2})
    content = to_recorddict(message, envelope=False)
    assert dict(content["config"]) == {"lr": 0.1, "epochs": 2}
    assert content["arrays"]["w"].numpy().tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(MessageError, match="no privfl metadata"):
        from_recorddict(content, MessageKind.TRAIN)
    assert from_recorddict(content, MessageKind.TRAIN, md).config == {"lr": 0.1, "epochs": 2}


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({"x": [1, "a"]}, "one type"),
        ({"x": [1, 2.5]}, "one type"),
        ({"x": [1, True]}, "one type"),
        ({"x": [-1, 2**63]}, "negative ints and ints >= 2\\*\\*63"),
        ({META_KEY: [0, 0, 0, 0]}, "reserved"),
        ({"x": None}, "ConfigRecord"),
    ],
)
def test_unmappable_config_is_refused(config: dict, match: str) -> None:
    message = Message(Metadata(0, 1, 0, 1, MessageKind.TRAIN), config=config)
    with pytest.raises(MessageError, match=match):
        to_recorddict(message)


@pytest.mark.parametrize("dtype", [object, np.complex128, "U3", np.float128 if hasattr(np, "float128") else "V16"])
def test_arrays_the_privfl_wire_refuses_are_refused_both_ways(dtype: object) -> None:
    arr = np.zeros(2, dtype=dtype)
    message = Message(Metadata(0, 1, 0, 1, MessageKind.TRAIN), arrays={"a": arr})
    with pytest.raises(MessageError, match="dtype"):
        to_recorddict(message)
    if arr.dtype.hasobject:
        return  # Flower itself cannot build an object Array without pickle
    content = RecordDict({"arrays": ArrayRecord({"a": Array(arr)})})
    with pytest.raises(MessageError, match="dtype"):
        from_recorddict(content, MessageKind.TRAIN, Metadata(0, 1, 0, 1, MessageKind.TRAIN))


def test_hostile_records_are_refused() -> None:
    md = Metadata(0, 1, 0, 1, MessageKind.TRAIN)
    pickled = Array(dtype="float64", shape=(1,), stype="numpy.ndarray", data=b"\x80\x04K\x01.")
    with pytest.raises(MessageError, match="cannot be decoded"):
        from_recorddict(RecordDict({"arrays": ArrayRecord({"a": pickled})}), MessageKind.TRAIN, md)
    torch_like = Array(dtype="float32", shape=(1,), stype="torch.Tensor", data=b"\0\0\0\0")
    with pytest.raises(MessageError, match="serialisation type"):
        from_recorddict(RecordDict({"arrays": ArrayRecord({"a": torch_like})}), MessageKind.TRAIN, md)
    lying = Array(np.zeros((2, 2)))
    lying.shape = (4,)
    with pytest.raises(MessageError, match="its record says"):
        from_recorddict(RecordDict({"arrays": ArrayRecord({"a": lying})}), MessageKind.TRAIN, md)
    for header, match in [
        ({"descr": "<f8", "fortran_order": False, "shape": (10**12,)}, "declares shape"),  # no 8 TB allocation
        ({"descr": "|O", "fortran_order": False, "shape": (1,)}, "dtype object"),  # would need pickle
    ]:
        buffer = io.BytesIO()
        np.lib.format.write_array_header_1_0(buffer, header)
        forged = Array(dtype="float64", shape=header["shape"], stype="numpy.ndarray", data=buffer.getvalue() + bytes(8))
        with pytest.raises(MessageError, match=match):
            from_recorddict(RecordDict({"arrays": ArrayRecord({"a": forged})}), MessageKind.TRAIN, md)
    bad_meta = RecordDict({"config": ConfigRecord({META_KEY: [0, 1, 0], "privfl:stage": ""})})
    with pytest.raises(MessageError, match="four ints"):
        from_recorddict(bad_meta, MessageKind.TRAIN)
    two_metric_records = RecordDict({"m1": MetricRecord({"a": 1}), "m2": MetricRecord({"b": 2})})
    with pytest.raises(MessageError, match="none named 'metrics'"):
        from_recorddict(two_metric_records, MessageKind.TRAIN, md)
    with pytest.raises(MessageError, match="not train, evaluate or query"):
        kind_of("reconnect")
    assert kind_of("train.custom") is MessageKind.TRAIN


NPY_PREFIX = b"\x93NUMPY\x01\x00"


@FAST
@given(st.one_of(st.binary(max_size=300), st.binary(max_size=300).map(lambda b: NPY_PREFIX + b)))
def test_arbitrary_array_bytes_decode_or_raise_message_error(data: bytes) -> None:
    forged = Array(dtype="float64", shape=(1,), stype="numpy.ndarray", data=data)
    md = Metadata(0, 1, 0, 1, MessageKind.TRAIN)
    try:
        message = from_recorddict(RecordDict({"arrays": ArrayRecord({"a": forged})}), MessageKind.TRAIN, md)
    except MessageError:
        return  # a typed refusal; anything else escaping fails the test
    # Or the exact array the bytes hold, as numpy itself reads them without pickle.
    expected = np.load(io.BytesIO(data), allow_pickle=False)
    got = message.arrays["a"]
    assert got.dtype == expected.dtype and got.shape == expected.shape
    assert got.tobytes() == expected.tobytes()


def test_node_map_is_a_bijection_over_sorted_flower_ids() -> None:
    node_map = NodeMap.from_flower_ids([2**64 - 2, 5, 2**63])
    assert node_map.population == (1, 2, 3)
    assert [node_map.to_flower(i) for i in node_map.population] == [5, 2**63, 2**64 - 2]
    assert [node_map.to_privfl(f) for f in (5, 2**63, 2**64 - 2)] == [1, 2, 3]
    for bad in (0, 4):
        with pytest.raises(MessageError, match="not in this run's node map"):
            node_map.to_flower(bad)
    with pytest.raises(MessageError, match="not in this run's node map"):
        node_map.to_privfl(6)
    with pytest.raises(MessageError, match="distinct"):
        NodeMap((1, 1))
    with pytest.raises(MessageError, match="at least one"):
        NodeMap(())


@pytest.mark.usefixtures("flower_task")
def test_only_server_messages_become_instructions() -> None:
    reply = Message(Metadata(0, 1, 2, 0, MessageKind.TRAIN))
    with pytest.raises(MessageError, match="only server messages"):
        to_flower(reply, NodeMap((7, 8)))


@pytest.mark.slow  # imports every module (torch, tenseal) in a subprocess; tests/architecture checks the imports by ast
def test_core_privfl_does_not_import_flwr() -> None:
    import privfl

    names = [
        m.name
        for m in pkgutil.walk_packages(privfl.__path__, "privfl.")
        if not m.name.startswith("privfl.integrations.flower") and not m.name.endswith("__main__")
    ]
    code = (
        "import importlib, sys\n"
        "for name in ['privfl', 'privfl.server', 'privfl.client', *sys.argv[1:]]:\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except ImportError:\n"
        "        continue  # another optional extra (torch, tenseal) is not installed\n"
        "    assert 'flwr' not in sys.modules, name\n"
    )
    assert len(names) > 40
    subprocess.run([sys.executable, "-c", code, *names], check=True)
