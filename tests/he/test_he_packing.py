from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from privfl.errors import ConfigError, MessageError
from privfl.he import PackLayout, chunk_sizes, pack, unpack

DTYPES = ["<f2", "<f4", "<f8", "|i1", "<i2", "<i4", "<i8", "|u1", "<u2", "<u4", "|b1"]


@st.composite
def array_dicts(draw):
    names = draw(st.lists(st.text(min_size=1, max_size=8), min_size=0, max_size=5, unique=True))
    out = {}
    for name in names:
        dtype = np.dtype(draw(st.sampled_from(DTYPES)))
        shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5))
        if dtype.kind == "f":
            elements = st.floats(allow_nan=False, allow_infinity=False, width=dtype.itemsize * 8)
        elif dtype.kind == "i" and dtype.itemsize == 8:
            elements = st.integers(-(2**53), 2**53)
        else:
            elements = None
        out[name] = draw(hnp.arrays(dtype, shape, elements=elements))
    return out


@settings(max_examples=200, deadline=None)
@given(array_dicts())
def test_pack_unpack_round_trip_is_exact(arrays):
    layout, flat = pack(arrays)
    assert flat.dtype == np.float64 and flat.shape == (layout.num_values,)
    back = unpack(PackLayout.from_json(layout.to_json()), flat)
    assert list(back) == list(arrays)
    for name, value in arrays.items():
        assert back[name].dtype == value.dtype
        assert back[name].shape == value.shape
        np.testing.assert_array_equal(back[name], value)


@given(st.integers(1, 100_000), st.sampled_from([2048, 4096, 8192]))
def test_chunks_are_as_few_as_the_slot_count_allows(num_values, slots):
    sizes = chunk_sizes(num_values, slots)
    assert len(sizes) == math.ceil(num_values / slots)
    assert sum(sizes) == num_values
    assert all(s == slots for s in sizes[:-1]) and 0 < sizes[-1] <= slots


def test_unpack_rounds_integers_and_booleans_after_approximate_decryption():
    layout, flat = pack({"i": np.array([3, -2], dtype=np.int32), "b": np.array([True, False])})
    back = unpack(layout, flat + 1e-7)
    np.testing.assert_array_equal(back["i"], [3, -2])
    np.testing.assert_array_equal(back["b"], [True, False])


@pytest.mark.parametrize(
    "arrays",
    [
        {"c": np.zeros(2, dtype=np.complex64)},
        {"big": np.array([2**60], dtype=np.int64)},
        {"nan": np.array([np.nan], dtype=np.float32)},
        {"u64": np.zeros(2, dtype=np.uint64)},
    ],
)
def test_unpackable_arrays_are_refused(arrays):
    with pytest.raises(ConfigError):
        pack(arrays)


@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        b"{}",
        b'{"names":["a"],"shapes":[[1.5]],"dtypes":["<f4"]}',
        b'{"names":["a"],"shapes":[[1]],"dtypes":["O"]}',
    ],
)
def test_invalid_layout_json_is_a_message_error(data):
    with pytest.raises(MessageError):
        PackLayout.from_json(data)


def test_unpack_refuses_a_vector_of_the_wrong_length():
    layout, flat = pack({"w": np.zeros(3, dtype=np.float32)})
    with pytest.raises(MessageError):
        unpack(layout, flat[:2])


def test_encrypted_round_trip_across_a_chunk_boundary(cipher):
    slots = cipher.params.slots
    arrays = {"w": np.linspace(-1, 1, slots + 1).astype(np.float32).reshape(1, -1), "b": np.arange(3, dtype=np.int16)}
    layout, flat = pack(arrays)
    cts = cipher.encrypt(flat)
    assert len(cts) == 2
    back = unpack(layout, cipher.decrypt(cts, layout.num_values, summands=1))
    np.testing.assert_allclose(back["w"], arrays["w"], atol=1e-4)
    np.testing.assert_array_equal(back["b"], arrays["b"])
