"""L2 clipping bounds every update's norm, keeps its direction, and never divides by zero."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from privfl.dp.clipping import add_update_toward, clip_l2, l2_norm
from privfl.errors import ConfigError

finite = st.floats(min_value=-1e150, max_value=1e150, allow_nan=False, allow_infinity=False)
updates = st.dictionaries(
    st.sampled_from(["w", "b", "c"]),
    arrays(np.float64, st.integers(0, 40), elements=finite),
    min_size=1,
)


@settings(max_examples=300, deadline=None)
@given(update=updates, clip=st.floats(min_value=1e-6, max_value=1e6))
def test_clipping_bounds_every_norm(update: dict, clip: float) -> None:
    clipped, norm = clip_l2(update, clip)
    flat = np.concatenate([np.ravel(a) for a in update.values()])
    assert norm == pytest.approx(float(np.linalg.norm(flat)), rel=1e-9)
    assert l2_norm(clipped) <= clip * (1 + 1e-12)
    assert list(clipped) == list(update)
    if norm <= clip:
        for name in update:
            np.testing.assert_array_equal(clipped[name], update[name])
    else:
        # Same direction: clipped = update * (clip / norm).
        for name in update:
            np.testing.assert_allclose(clipped[name], update[name] * (clip / norm), rtol=1e-12)


def test_all_zero_update_clips_without_error() -> None:
    with np.errstate(all="raise"):
        clipped, norm = clip_l2({"w": np.zeros((3, 4), np.float32), "b": np.zeros(0)}, 1.0)
    assert norm == 0.0
    assert all(np.all(v == 0) for v in clipped.values())
    assert clipped["w"].dtype == np.float64


def test_zero_clip_norm_zeroes_and_bad_norms_refused() -> None:
    clipped, norm = clip_l2({"w": np.array([3.0, 4.0])}, 0.0)
    assert norm == 5.0
    np.testing.assert_array_equal(clipped["w"], [0.0, 0.0])
    with pytest.raises(ConfigError, match=r"-1\.0"):
        clip_l2({"w": np.ones(2)}, -1.0)
    with pytest.raises(ConfigError, match="non-finite"):
        clip_l2({"w": np.array([1.0, np.inf])}, 1.0)


def test_norm_of_huge_values_does_not_overflow() -> None:
    assert l2_norm({"w": np.array([3e200, 4e200])}) == pytest.approx(5e200)


@settings(max_examples=200, deadline=None)
@given(
    base=arrays(np.float32, 50, elements=st.floats(-1e4, 1e4, width=32)),
    direction=arrays(np.float64, 50, elements=st.floats(-1, 1)),
    clip=st.floats(1e-4, 10.0),
)
def test_casting_back_to_float32_never_lengthens_the_update(base, direction, clip) -> None:
    clipped, _ = clip_l2({"w": direction * 1e3}, clip)
    new = add_update_toward({"w": base}, clipped)["w"]
    assert new.dtype == np.float32
    # Exactly bounded in float64; a server subtracting in float32 (as PlainAggregator does) adds only
    # its own rounding, relative to the result (2**-24), not to the parameters' magnitude.
    assert float(np.linalg.norm(new.astype(np.float64) - base)) <= clip * (1 + 1e-12)
    assert math.sqrt(float(np.sum((new - base).astype(np.float64) ** 2))) <= clip * (1 + 2**-23)
