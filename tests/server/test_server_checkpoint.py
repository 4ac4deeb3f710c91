"""Checkpoints: round trip, atomic writes, corrupt files, and refusal to unpickle."""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from privfl.errors import CheckpointError
from privfl.server import checkpoint as ckpt
from privfl.server.checkpoint import FORMAT, load_checkpoint, save_checkpoint


def nested_state() -> dict:
    return {
        "round": 7,
        "seed": 2**62 + 1,
        "lr": 0.125,
        "nan": float("nan"),
        "flag": True,
        "none": None,
        "name": "run-α",
        "blob": b"\x00\xffsecret",
        "params": [np.arange(6, dtype=np.float32).reshape(2, 3), np.array(3.5), np.zeros((0, 4), np.int64)],
        "strategy": {
            "aggregator": {"ledger": [{"eps": 0.5, "key": b"k1"}, {"eps": 0.25, "key": b""}]},
            "mask": np.array([True, False]),
            "big_endian": np.array([1, 2], dtype=">i4"),
            "empty": {},
            "empty_list": [],
            "tuple": (1, "a"),
        },
        "np_scalars": {"i": np.int64(5), "f": np.float32(0.5), "b": np.bool_(True)},
    }


def assert_same(got: object, want: object) -> None:
    if isinstance(want, np.ndarray):
        assert isinstance(got, np.ndarray)
        assert got.shape == want.shape and got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
    elif isinstance(want, dict):
        assert isinstance(got, dict) and list(got) == list(want)
        for k in want:
            assert_same(got[k], want[k])
    elif isinstance(want, (list, tuple)):
        assert isinstance(got, list) and len(got) == len(want)  # tuples come back as lists
        for g, w in zip(got, want, strict=True):
            assert_same(g, w)
    elif isinstance(want, float) and want != want:
        assert isinstance(got, float) and got != got
    elif isinstance(want, np.generic):
        assert got == want.item() and type(got) is type(want.item())
    else:
        assert type(got) is type(want) and got == want


def test_round_trip_of_nested_state(tmp_path: Path) -> None:
    path = tmp_path / "run" / "state.npz"  # parent directory is created
    state = nested_state()
    save_checkpoint(path, state)
    loaded = load_checkpoint(path)
    assert_same(loaded, state)
    assert loaded["params"][0].flags.writeable


def test_save_overwrites_and_leaves_no_temp_files(tmp_path: Path) -> None:
    path = tmp_path / "c.npz"
    save_checkpoint(path, {"round": 1})
    save_checkpoint(path, {"round": 2, "w": np.ones(3)})
    assert load_checkpoint(path)["round"] == 2
    assert os.listdir(tmp_path) == ["c.npz"]


def test_string_path_is_accepted(tmp_path: Path) -> None:
    save_checkpoint(str(tmp_path / "c.npz"), {"a": 1})
    assert load_checkpoint(str(tmp_path / "c.npz")) == {"a": 1}


@pytest.mark.parametrize("where", ["savez", "fsync", "replace"])
def test_failed_save_keeps_the_old_checkpoint_and_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    path = tmp_path / "c.npz"
    save_checkpoint(path, {"round": 1, "w": np.zeros(4)})
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise RuntimeError("disk on fire")

    target = {"savez": (np, "savez"), "fsync": (os, "fsync"), "replace": (os, "replace")}[where]
    monkeypatch.setattr(*target, boom)
    with pytest.raises(RuntimeError, match="disk on fire"):
        save_checkpoint(path, {"round": 2, "w": np.ones(4)})
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert load_checkpoint(path)["round"] == 1
    assert os.listdir(tmp_path) == ["c.npz"]


def test_interrupted_save_cleans_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c.npz"
    save_checkpoint(path, {"round": 1})

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"round": 2})
    monkeypatch.undo()
    assert load_checkpoint(path) == {"round": 1}
    assert os.listdir(tmp_path) == ["c.npz"]


@pytest.mark.parametrize(
    "state",
    [
        {1: "int key"},
        {"x": {2.5: 1}},
        {"x": {1, 2}},
        {"x": 1 + 2j},
        {"x": object()},
        {"x": np.array([object()], dtype=object)},
        {"x": np.array([None, 1])},
        {"x": {"__array__": "a0"}},
        {"x": {"__bytes__": "AAAA"}},
        {"x": np.complex128(1 + 1j)},
        {"x": [np.datetime64("2020-01-01")]},
    ],
    ids=[
        "int-key",
        "float-key",
        "set",
        "complex",
        "object",
        "object-array",
        "none-array",
        "array-marker",
        "bytes-marker",
        "np-complex",
        "np-datetime",
    ],
)
def test_save_refuses_values_it_cannot_store_faithfully(tmp_path: Path, state: dict) -> None:
    path = tmp_path / "c.npz"
    with pytest.raises(CheckpointError):
        save_checkpoint(path, state)
    assert os.listdir(tmp_path) == []


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path / "nope.npz")


def test_directory_instead_of_file(tmp_path: Path) -> None:
    (tmp_path / "d.npz").mkdir()
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "d.npz")


def _good_bytes() -> bytes:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "c.npz"
        save_checkpoint(path, nested_state())
        return path.read_bytes()


GOOD = _good_bytes()


@pytest.mark.parametrize("keep", [0, 1, 10, 100, len(GOOD) // 2, len(GOOD) - 22, len(GOOD) - 1])
def test_truncated_file(tmp_path: Path, keep: int) -> None:
    path = tmp_path / "c.npz"
    path.write_bytes(GOOD[:keep])
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def _npz_bytes(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _tree(obj: object) -> np.ndarray:
    return np.frombuffer(json.dumps(obj).encode(), dtype=np.uint8)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"garbage" * 100,
        b"PK\x03\x04" + b"\x00" * 100,
        json.dumps({"format": FORMAT, "state": {}}).encode(),
        b"\x93NUMPY" + b"\x00" * 50,
        _npz_bytes(x=np.arange(3)),  # no tree
        _npz_bytes(__tree__=np.arange(3, dtype=np.int64)),  # tree of the wrong dtype
        _npz_bytes(__tree__=np.frombuffer(b"\xff\xfe{", dtype=np.uint8)),  # not UTF-8
        _npz_bytes(__tree__=np.frombuffer(b"{not json", dtype=np.uint8)),
        _npz_bytes(__tree__=_tree([1, 2])),
        _npz_bytes(__tree__=_tree({"format": "other/1", "state": {}})),
        _npz_bytes(__tree__=_tree({"format": FORMAT})),  # no state
        _npz_bytes(__tree__=_tree({"format": FORMAT, "state": {"w": {"__array__": "a0"}}})),  # missing array
        _npz_bytes(__tree__=_tree({"format": FORMAT, "state": {"w": {"__array__": [1]}}})),
        _npz_bytes(__tree__=_tree({"format": FORMAT, "state": {"b": {"__bytes__": "!!not base64"}}})),
        _npz_bytes(__tree__=_tree({"format": FORMAT, "state": {"b": {"__bytes__": 12}}})),
    ],
    ids=[
        "empty",
        "garbage",
        "zip-header-only",
        "json",
        "npy-header-only",
        "npz-without-tree",
        "tree-wrong-dtype",
        "tree-not-utf8",
        "tree-not-json",
        "tree-not-a-dict",
        "wrong-format",
        "no-state",
        "missing-array",
        "unhashable-array-key",
        "bad-base64",
        "non-string-base64",
    ],
)
def test_garbage_and_tampered_files(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "c.npz"
    path.write_bytes(content)
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def test_a_plain_npy_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.npz"
    with open(path, "wb") as fh:
        np.save(fh, np.arange(4))
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def _flip(data: bytes, flips: list[tuple[int, int]]) -> bytes:
    out = bytearray(data)
    for pos, bit in flips:
        out[pos % len(out)] ^= 1 << bit
    return bytes(out)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 7)), min_size=1, max_size=6).map(
            lambda flips: _flip(GOOD, flips)
        ),
        st.tuples(st.integers(0, len(GOOD)), st.binary(min_size=1, max_size=32)).map(
            lambda t: GOOD[: t[0]] + t[1] + GOOD[t[0] + len(t[1]) :]
        ),
    )
)
def test_fuzz_corrupted_files_raise_only_checkpoint_error(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "c.npz"
        path.write_bytes(data)
        try:
            state = load_checkpoint(path)
        except CheckpointError:
            return
        # Some bytes (timestamps, padding) do not matter; a load that succeeds is a dict.
        assert isinstance(state, dict)


# ---------------------------------------------------------------- no unpickling

PWNED: list[str] = []


def _pwn(path: str) -> None:
    PWNED.append(path)
    Path(path).write_text("pwned")


class Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (_pwn, (self.marker,))


def _pickle_npz(marker: Path, *, tree_ok: bool) -> bytes:
    evil = np.empty(1, dtype=object)
    evil[0] = Payload(str(marker))
    buf = io.BytesIO()
    if tree_ok:
        tree = _tree({"format": FORMAT, "state": {"w": {"__array__": "a0"}}})
        np.savez(buf, __tree__=tree, a0=evil)
    else:
        np.savez(buf, __tree__=evil)
    return buf.getvalue()


@pytest.mark.parametrize("tree_ok", [True, False], ids=["pickled-array", "pickled-tree"])
def test_pickle_containing_npz_is_refused_without_unpickling(tmp_path: Path, tree_ok: bool) -> None:
    marker = tmp_path / "marker"
    data = _pickle_npz(marker, tree_ok=tree_ok)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:  # the file really holds a pickle
        assert any(b"_pwn" in zf.read(n) for n in zf.namelist())
    assert not marker.exists()
    path = tmp_path / "c.npz"
    path.write_bytes(data)
    PWNED.clear()
    with pytest.raises(CheckpointError):
        load_checkpoint(path)
    assert not marker.exists()
    assert PWNED == []


def test_checkpoint_module_loads_without_pickle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Belt and braces: np.load is always called with allow_pickle=False.
    calls: list[dict] = []
    real_load = np.load

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real_load(*args, **kwargs)

    save_checkpoint(tmp_path / "c.npz", {"a": np.ones(2)})
    monkeypatch.setattr(ckpt.np, "load", spy)
    load_checkpoint(tmp_path / "c.npz")
    assert calls and all(c.get("allow_pickle") is False for c in calls)
