"""Message and Metadata validation, reply, layout checks."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from privfl.core.message import (
    SERVER_NODE_ID,
    Message,
    MessageKind,
    Metadata,
    arrays_from_list,
    arrays_to_list,
    check_same_layout,
)
from privfl.errors import MessageError


def md(**kw: object) -> Metadata:
    base = {"run_id": 1, "server_round": 2, "src_node": 0, "dst_node": 9, "kind": MessageKind.TRAIN, "stage": "s1"}
    base.update(kw)
    return Metadata(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize("field", ["run_id", "server_round", "src_node", "dst_node"])
@pytest.mark.parametrize("value", [-1, 2**63, True, False, 1.0, "1", None, np.float64(1.0)])
def test_bad_ids_are_rejected(field: str, value: object) -> None:
    with pytest.raises(MessageError, match=field):
        md(**{field: value})


@pytest.mark.parametrize("field", ["run_id", "server_round", "src_node", "dst_node"])
def test_id_bounds_and_numpy_ints(field: str) -> None:
    assert getattr(md(**{field: 0}), field) == 0
    assert getattr(md(**{field: 2**63 - 1}), field) == 2**63 - 1
    value = getattr(md(**{field: np.int32(5)}), field)
    assert value == 5 and type(value) is int


@pytest.mark.parametrize("kind", ["fit", "TRAIN", "", None, 1, "train "])
def test_bad_kinds_are_rejected(kind: object) -> None:
    with pytest.raises(MessageError, match="kind"):
        md(kind=kind)


@pytest.mark.parametrize("kind", ["train", "evaluate", "query"])
def test_kind_strings_become_enum_members(kind: str) -> None:
    m = md(kind=kind)
    assert m.kind is MessageKind(kind)


def test_stage_length_limit() -> None:
    assert md(stage="x" * 128).stage == "x" * 128
    assert md(stage="").stage == ""
    with pytest.raises(MessageError, match="stage"):
        md(stage="x" * 129)
    with pytest.raises(MessageError, match="stage"):
        md(stage=None)
    with pytest.raises(MessageError, match="stage"):
        md(stage=b"abc")


def test_metadata_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        md().run_id = 3  # type: ignore[misc]


def test_reply_swaps_source_and_destination_and_keeps_the_rest() -> None:
    msg = Message(md(), arrays={"w": np.ones(2)}, metrics={"a": 1}, config={"c": "x"})
    rep = msg.reply(arrays={"u": np.zeros(3)}, metrics={"loss": 0.5})
    assert rep.metadata == Metadata(1, 2, 9, 0, MessageKind.TRAIN, "s1")
    assert list(rep.arrays) == ["u"]
    assert rep.metrics == {"loss": 0.5}
    assert rep.config == {}
    # The request is untouched.
    assert list(msg.arrays) == ["w"] and msg.metrics == {"a": 1}


def test_reply_with_new_stage_and_copied_content() -> None:
    msg = Message(md(stage="a"))
    arrays = {"x": np.arange(2)}
    rep = msg.reply(arrays=arrays, config={"k": 1}, stage="b")
    assert rep.metadata.stage == "b"
    assert rep.metadata.src_node == 9 and rep.metadata.dst_node == SERVER_NODE_ID
    arrays["y"] = np.zeros(1)  # the reply owns its own mapping
    assert list(rep.arrays) == ["x"]
    assert rep.reply().metadata == msg.metadata.__class__(1, 2, 0, 9, MessageKind.TRAIN, "b")


def test_replace_and_with_stage() -> None:
    msg = Message(md(), metrics={"a": 1})
    assert msg.with_stage("z").metadata.stage == "z"
    assert msg.metadata.stage == "s1"
    with pytest.raises(MessageError):
        msg.with_stage("z" * 200)
    assert msg.replace(metrics={"b": 2}).metrics == {"b": 2}


def test_num_bytes_counts_array_bytes() -> None:
    msg = Message(md(), arrays={"a": np.zeros(10, dtype=np.float32), "b": np.zeros((2, 3), dtype=np.int64)})
    assert msg.num_bytes == 40 + 48
    assert Message(md()).num_bytes == 0


def test_arrays_from_and_to_list() -> None:
    arrays = arrays_from_list([np.zeros(2), [1, 2, 3]])
    assert list(arrays) == ["0", "1"]
    assert isinstance(arrays["1"], np.ndarray)
    out = arrays_to_list(arrays)
    assert [a.shape for a in out] == [(2,), (3,)]


def test_check_same_layout_accepts_an_identical_layout() -> None:
    ref = {"w": np.zeros((2, 3), np.float32), "b": np.zeros(3, np.float32)}
    check_same_layout(ref, {"w": np.ones((2, 3), np.float32), "b": np.ones(3, np.float32)}, "t")


@pytest.mark.parametrize(
    ("got", "match"),
    [
        ({"w": np.zeros((2, 3), np.float32)}, "names"),
        ({"b": np.zeros(3, np.float32), "w": np.zeros((2, 3), np.float32)}, "names"),  # order matters
        ({"w": np.zeros((3, 2), np.float32), "b": np.zeros(3, np.float32)}, "shape"),
        ({"w": np.zeros((2, 3), np.float64), "b": np.zeros(3, np.float32)}, "dtype"),
        ({"w": np.zeros((2, 3), np.float32), "b": np.zeros(3, np.float32), "c": np.zeros(1)}, "names"),
        ({"w": np.zeros((2, 3), np.float32), "x": np.zeros(3, np.float32)}, "names"),
    ],
)
def test_check_same_layout_rejects(got: dict, match: str) -> None:
    ref = {"w": np.zeros((2, 3), np.float32), "b": np.zeros(3, np.float32)}
    with pytest.raises(MessageError, match=match) as info:
        check_same_layout(ref, got, "node 4")
    assert "node 4" in str(info.value)
