"""Stochastic quantisation: unbiasedness, error bound, no wrap-around, CSPRNG coins."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from privfl.errors import ConfigError
from privfl.secagg.quantization import Quantizer, check_no_wrap, required_modulus_bits

finite = st.floats(-100, 100, allow_nan=False, allow_infinity=False)


@settings(max_examples=80, deadline=None)
@given(
    values=arrays(np.float64, st.integers(1, 50), elements=finite),
    clip=st.floats(0.01, 50),
    bits=st.integers(1, 24),
    scale=st.floats(0, 1),
)
def test_error_below_one_step_and_range(values: np.ndarray, clip: float, bits: int, scale: float) -> None:
    q = Quantizer(clip, bits)
    out = q.quantize(values, np.dtype(np.uint32), scale=scale)
    assert out.dtype == np.uint32 and int(out.max()) <= q.levels
    target = scale * np.clip(values, -clip, clip)
    recovered = q.dequantize_sum(out, 1)
    assert np.all(np.abs(recovered - target) <= q.step * (1 + 1e-9))


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 40),
    bits=st.integers(1, 24),
    values=arrays(np.float64, 8, elements=finite),
)
def test_sum_of_n_clients_never_wraps_at_required_bits(n: int, bits: int, values: np.ndarray) -> None:
    q = Quantizer(1.0, bits)
    m = required_modulus_bits(n, q.levels)
    worst = np.full(8, q.levels, dtype=np.uint64) * np.uint64(n)  # every client at the top level
    assert int(worst.max()) < 2**m
    total = sum(q.quantize(values, np.dtype(np.uint64)) for _ in range(n)) & np.uint64(2**m - 1)
    recovered = q.dequantize_sum(total, n)
    assert np.all(np.abs(recovered - n * np.clip(values, -1, 1)) <= n * q.step * (1 + 1e-9))


def test_unbiased_statistically() -> None:
    """The mean of many roundings of a value between levels converges to the value (z-test)."""
    q = Quantizer(1.0, 3)  # coarse: step 2/7, so rounding noise is large
    x = np.array([0.1, -0.55, 0.93, 0.0])
    reps = 20000
    draws = np.stack([q.dequantize_sum(q.quantize(x, np.dtype(np.uint32)), 1) for _ in range(reps // 100)])
    big = np.stack([q.dequantize_sum(q.quantize(np.tile(x, 100), np.dtype(np.uint32)), 1) for _ in range(100)])
    samples = np.concatenate([draws, big.reshape(-1, 4)])
    mean, sd = samples.mean(axis=0), samples.std(axis=0) / np.sqrt(len(samples))
    assert np.all(np.abs(mean - x) < 5 * sd + 1e-12)
    assert np.all(sd > 0)  # values between levels do get rounded both ways


def test_grid_values_are_exact_and_seed_reproducible() -> None:
    q = Quantizer(2.0, 4)
    grid = -2.0 + q.step * np.arange(q.levels + 1)
    assert np.array_equal(q.quantize(grid, np.dtype(np.uint32)), np.arange(q.levels + 1))
    seed = os.urandom(32)
    x = np.linspace(-3, 3, 101)
    first, again = (q.quantize(x, np.dtype(np.uint32), _entropy=lambda n: seed[:n]) for _ in range(2))
    assert np.array_equal(first, again)


def test_overwrite_reuses_float64_input() -> None:
    q = Quantizer(1.0, 8)
    x = np.linspace(-1, 1, 11)
    kept = x.copy()
    q.quantize(x, np.dtype(np.uint32))
    assert np.array_equal(x, kept)
    q.quantize(x, np.dtype(np.uint32), overwrite=True)
    assert not np.array_equal(x, kept)


@pytest.mark.parametrize(
    "kwargs",
    [{"clip": 0.0, "bits": 8}, {"clip": float("inf"), "bits": 8}, {"clip": 1.0, "bits": 0}, {"clip": 1.0, "bits": 33}],
)
def test_bad_quantizer_settings(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        Quantizer(**kwargs)


def test_bad_inputs_and_wrap_check() -> None:
    q = Quantizer(1.0, 8)
    with pytest.raises(ConfigError):
        q.quantize(np.array([np.nan]), np.dtype(np.uint32))
    with pytest.raises(ConfigError):
        q.quantize(np.zeros(2), np.dtype(np.uint32), scale=1.5)
    assert required_modulus_bits(100, 255) == 15
    check_no_wrap(15, 100, 255)
    with pytest.raises(ConfigError, match="wrap"):
        check_no_wrap(14, 100, 255)
