"""AES-CTR mask expansion: determinism, cancellation, uniformity, speed."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
from scipy.stats import chisquare

from privfl.errors import ConfigError
from privfl.secagg.prg import MaskExpander, low_bits_mask, uniform_words, word_dtype


def test_same_seed_same_stream_and_prefix_consistency() -> None:
    seed = os.urandom(32)
    a = uniform_words(seed, 1000, np.uint32)
    assert np.array_equal(a, uniform_words(seed, 1000, np.uint32))
    assert np.array_equal(a[:10], uniform_words(seed, 10, np.uint32))
    assert not np.array_equal(a, uniform_words(os.urandom(32), 1000, np.uint32))
    expander = MaskExpander(1000, np.dtype(np.uint32))
    assert np.array_equal(expander.expand(seed), a)


@pytest.mark.parametrize("dtype", [np.uint32, np.uint64])
def test_add_then_subtract_cancels_mod_word(dtype: type) -> None:
    expander = MaskExpander(5000, np.dtype(dtype))
    x = np.arange(5000, dtype=dtype)
    acc = x.copy()
    seeds = [os.urandom(32) for _ in range(5)]
    for s in seeds:
        expander.add(acc, s, 1)
    assert not np.array_equal(acc, x)
    for s in reversed(seeds):
        expander.add(acc, s, -1)
    assert np.array_equal(acc, x)


@pytest.mark.parametrize("bits", [7, 20, 32, 45])
def test_masks_reduced_mod_2m_are_uniform(bits: int) -> None:
    words = uniform_words(os.urandom(32), 200_000, word_dtype(bits)) & low_bits_mask(bits)
    assert int(words.max()) < 2**bits
    bins = (words >> np.array(max(bits - 6, 0), dtype=words.dtype)).astype(np.int64)  # top 6 bits
    assert chisquare(np.bincount(bins, minlength=min(64, 2**bits))).pvalue > 1e-4


def test_bad_arguments() -> None:
    with pytest.raises(ConfigError):
        uniform_words(b"short", 4, np.uint32)
    with pytest.raises(ConfigError):
        word_dtype(65)
    with pytest.raises(ConfigError):
        MaskExpander(4, np.dtype(np.int32))
    with pytest.raises(ConfigError):
        MaskExpander(4, np.dtype(np.uint32)).add(np.zeros(4, np.uint32), os.urandom(32), 2)


@pytest.mark.slow
def test_masking_costs_little_more_than_the_keystream() -> None:
    """Expanding and adding k masks of d words takes at most 2x (plus slack) the raw keystream time."""
    d, k = 1_000_000, 16
    seeds = [os.urandom(32) for _ in range(k)]
    acc = np.zeros(d, np.uint32)
    expander = MaskExpander(d, np.dtype(np.uint32))

    def best(fn) -> float:
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return min(times)

    raw = best(lambda: [uniform_words(s, d, np.uint32) for s in seeds])
    masked = best(lambda: [expander.add(acc, s, 1) for s in seeds])
    print(f"keystream {4 * d * k / raw / 1e9:.2f} GB/s, masking {4 * d * k / masked / 1e9:.2f} GB/s")
    assert masked <= 2.5 * raw
