"""Noise samplers: distribution, cryptographic source by default, injected generators only when given."""

from __future__ import annotations

import math

import numpy as np
import pytest
from dp_helpers import fixed_trainer, round_spec, run_exchange, train_message
from scipy import stats

from privfl.core.context import Context
from privfl.dp import AdaptiveClippingDp, CentralDp, LocalDpMod
from privfl.dp.noise import discrete_gaussian, gaussian_noise, random_words, uniform_open
from privfl.errors import ConfigError

N = 400_000
Z = 5.5
"""Standard errors allowed for draws from the OS CSPRNG (no seed to fix): a two-sided normal tail of
P(|N(0, 1)| > 5.5) = 3.8e-8 per check, so a correct sampler fails a test (at most 6 checks) less than
once in a million runs. Draws from an injected generator are checked exactly instead."""


@pytest.mark.parametrize("std", [0.01, 1.0, 37.5])
def test_csprng_gaussian_std_matches(std: float) -> None:
    x = gaussian_noise(N, std)
    # The sample std has standard error std / sqrt(2N); allow Z of them.
    assert abs(x.std() - std) < Z * std / math.sqrt(2 * N)
    assert abs(x.mean()) < Z * std / math.sqrt(N)


def test_csprng_gaussian_is_normal() -> None:
    x = gaussian_noise(200_000, 1.0)
    assert stats.kstest(x, "norm").pvalue > 1e-7  # fails with probability 1e-7 for a normal sampler
    # Tails: P(|X| > 3) = 0.0027, the frequency's standard error is 1.16e-4: 0.0007 is 6 of them.
    assert abs(np.mean(np.abs(x) > 3) - 0.0027) < 0.0007


def test_shapes_odd_sizes_and_zero_std() -> None:
    assert gaussian_noise((3, 5, 7), 1.0).shape == (3, 5, 7)
    assert gaussian_noise(1, 1.0).shape == (1,)
    assert gaussian_noise((0, 4), 1.0).shape == (0, 4)
    np.testing.assert_array_equal(gaussian_noise((2, 2), 0.0), np.zeros((2, 2)))


def test_csprng_draws_differ_and_injected_generator_reproduces() -> None:
    assert not np.array_equal(gaussian_noise(64, 1.0), gaussian_noise(64, 1.0))
    a = gaussian_noise(64, 1.0, rng=np.random.default_rng(7))
    b = gaussian_noise(64, 1.0, rng=np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)


def test_uniforms_are_strictly_inside_the_unit_interval() -> None:
    u = uniform_open(1_000_000)
    assert u.min() > 0.0 and u.max() < 1.0
    assert abs(u.mean() - 0.5) < Z * math.sqrt(1 / 12 / u.size)
    words = random_words(100_000)
    # Each of the 64 bits is set about half the time (0.01 is 6.3 standard errors of 0.0016).
    bits = np.unpackbits(words.view(np.uint8)).reshape(-1, 64).mean(axis=0)
    assert np.all(np.abs(bits - 0.5) < 0.01)


def test_default_noise_never_touches_numpy_random(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args, **kwargs):
        raise AssertionError("numpy.random used for privacy noise")

    for name in ("default_rng", "normal", "standard_normal", "random", "rand", "randn", "seed", "Generator"):
        monkeypatch.setattr(np.random, name, forbidden)
    assert gaussian_noise(1000, 1.0).shape == (1000,)
    assert discrete_gaussian(1000, 2.0).shape == (1000,)
    # And the mods and aggregators that draw noise, end to end.
    params = {"w": np.zeros(50, np.float32)}
    for dp in (
        CentralDp.with_server_clipping(noise_multiplier=1.0, clip_norm=1.0),
        AdaptiveClippingDp(noise_multiplier=1.0, initial_clip_norm=1.0, count_noise_std=1.0),
    ):
        agg = run_exchange(dp.aggregate(round_spec(params, (1, 2))), lambda m: fixed_trainer({"w": 1.0})(m, None))
        assert agg.update_sum["w"].std() > 0
    reply = LocalDpMod(clip_norm=1.0, epsilon=1.0, delta=1e-5)(
        train_message(params), Context(1), fixed_trainer({"w": 0})
    )
    assert np.any(reply.arrays["w"] != 0)


@pytest.mark.parametrize("sigma", [1.0, 3.0, 20.0])
def test_discrete_gaussian_mean_and_variance(sigma: float) -> None:
    y = discrete_gaussian(N, sigma)
    assert y.dtype == np.int64
    # Var of N_Z(0, s^2) equals s^2 to within 1e-8 for s >= 1 (Canonne et al. 2020, Cor. 9); the sample
    # variance has standard error about s^2 sqrt(2 / N).
    assert abs(y.var() - sigma**2) < Z * sigma**2 * math.sqrt(2 / N)
    assert abs(y.mean()) < Z * sigma / math.sqrt(N)


@pytest.mark.parametrize("sigma", [0.6, 2.5])
def test_discrete_gaussian_probabilities(sigma: float) -> None:
    y = discrete_gaussian(N, sigma, rng=np.random.default_rng(3))
    support = np.arange(-int(6 * sigma) - 1, int(6 * sigma) + 2)
    weights = np.exp(-(support**2) / (2 * sigma**2))
    expected = N * weights / weights.sum()
    observed = np.array([(y == k).sum() for k in support])
    assert observed.sum() == N
    keep = expected > 5
    chi2 = (((observed - expected) ** 2) / expected)[keep].sum()
    assert stats.chi2.sf(chi2, keep.sum() - 1) > 1e-4


def test_bad_parameters_are_refused_with_the_value() -> None:
    with pytest.raises(ConfigError, match="-1"):
        gaussian_noise(3, -1.0)
    with pytest.raises(ConfigError, match="nan"):
        gaussian_noise(3, float("nan"))
    with pytest.raises(ConfigError, match="0"):
        discrete_gaussian(3, 0.0)
