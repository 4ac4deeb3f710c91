"""Exact discrete Gaussian and Skellam samplers: pmfs by chi-square, exactness of the Bernoulli core."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from scipy import stats

from privfl.ddp.samplers import bernoulli_exp, bernoulli_rational, discrete_gaussian_exact, skellam
from privfl.errors import ConfigError

N = 40_000
P_MIN = 1e-6


def _chi_square_p(samples: np.ndarray, pmf: dict[int, float]) -> float:
    """Chi-square p-value of ``samples`` against ``pmf``; values with expected count < 5 are pooled."""
    keys = sorted(k for k, p in pmf.items() if p * samples.size >= 5)
    observed = np.array([np.sum(samples == k) for k in keys] + [np.sum(~np.isin(samples, keys))], dtype=float)
    expected = np.array([pmf[k] for k in keys] + [1.0 - sum(pmf[k] for k in keys)]) * samples.size
    if expected[-1] < 5:  # fold a tiny tail into the largest bin
        i = int(np.argmax(expected[:-1]))
        observed[i] += observed[-1]
        expected[i] += expected[-1]
        observed, expected = observed[:-1], expected[:-1]
    return float(stats.chisquare(observed, expected * observed.sum() / expected.sum()).pvalue)


def _dg_pmf(sigma_sq: float) -> dict[int, float]:
    span = int(12 * math.sqrt(sigma_sq)) + 3
    weights = {k: math.exp(-k * k / (2 * sigma_sq)) for k in range(-span, span + 1)}
    total = sum(weights.values())
    return {k: w / total for k, w in weights.items()}


@pytest.mark.parametrize("sigma_sq", [0.3, 2.0, Fraction(37, 3)])
def test_discrete_gaussian_pmf_matches_exactly(sigma_sq: float) -> None:
    x = discrete_gaussian_exact(N, sigma_sq, _rng=np.random.default_rng(11))
    assert _chi_square_p(x, _dg_pmf(float(sigma_sq))) > P_MIN


def test_chi_square_rejects_a_rounded_continuous_gaussian() -> None:
    """The test has power: rounding N(0, sigma^2) is not the discrete Gaussian at small sigma."""
    rng = np.random.default_rng(3)
    weakened = np.rint(rng.normal(0.0, math.sqrt(0.3), N)).astype(np.int64)
    assert _chi_square_p(weakened, _dg_pmf(0.3)) < P_MIN


def test_discrete_gaussian_variance_at_large_sigma() -> None:
    x = discrete_gaussian_exact(N, 2500.0, _rng=np.random.default_rng(5))
    # For sigma >= 1 the variance is sigma^2 up to 1e-8 relative (CKS 2020 bound the gap); sample error ~ sqrt(2/N).
    assert abs(x.var() / 2500.0 - 1.0) < 5 * math.sqrt(2.0 / N)


@pytest.mark.parametrize("variance", [3.0, 60.0])  # Poisson means 1.5 (multiplication) and 30 (PTRS)
def test_skellam_pmf_matches(variance: float) -> None:
    x = skellam(N, variance, _rng=np.random.default_rng(7))
    mu = variance / 2
    span = int(12 * math.sqrt(variance)) + 5
    pmf = {k: float(stats.skellam.pmf(k, mu, mu)) for k in range(-span, span + 1)}
    assert _chi_square_p(x, pmf) > P_MIN
    assert abs(x.var() / variance - 1.0) < 5 * math.sqrt(2.0 / N)


def test_bernoulli_rational_is_exact_in_distribution() -> None:
    num = np.array([1, 2, 10**30 - 1], dtype=object).repeat(40_000)
    den = np.array([3, 7, 10**30], dtype=object).repeat(40_000)
    hits = bernoulli_rational(num, den, _rng=np.random.default_rng(1)).reshape(3, -1).sum(axis=1)
    for count, p in zip(hits, [1 / 3, 2 / 7, 1 - 1e-30], strict=True):
        assert stats.binomtest(int(count), 40_000, p).pvalue > P_MIN


class _ScriptedWords:
    """Stands in for a numpy generator: hands out the given 64-bit words, one call at a time."""

    def __init__(self, *calls: int) -> None:
        self.calls = list(calls)
        self.bit_generator = self

    def random_raw(self, count: int) -> np.ndarray:
        return np.full(count, self.calls.pop(0), dtype=np.uint64)


@pytest.mark.parametrize(("second_word", "expected"), [(0, True), ((1 << 63) + 1, False)])
def test_bernoulli_rational_resolves_a_tie_with_the_next_digit(second_word: int, expected: bool) -> None:
    # p = (2^64 + 1) / 2^65: first digit 2^63, then frac 1/2 (second digit 2^63), then 0.
    num, den = np.array([(1 << 64) + 1], dtype=object), 1 << 65
    rng = _ScriptedWords(1 << 63, second_word)
    assert bernoulli_rational(num, den, _rng=rng)[0] == expected  # type: ignore[arg-type]
    assert not rng.calls  # exactly two digits were needed


def test_bernoulli_exp_matches_exp_minus_gamma() -> None:
    num = np.array([0, 1, 5, 7], dtype=object).repeat(30_000)
    den = np.array([1, 3, 2, 1], dtype=object).repeat(30_000)
    hits = bernoulli_exp(num, den, _rng=np.random.default_rng(2)).reshape(4, -1).sum(axis=1)
    for count, gamma in zip(hits, [0.0, 1 / 3, 2.5, 7.0], strict=True):
        assert stats.binomtest(int(count), 30_000, math.exp(-gamma)).pvalue > P_MIN


def test_default_source_is_the_csprng() -> None:
    a, b = discrete_gaussian_exact(64, 100.0), discrete_gaussian_exact(64, 100.0)
    assert not np.array_equal(a, b)
    assert not np.array_equal(skellam(64, 100.0), skellam(64, 100.0))


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf"), "2", True])
def test_bad_variance_is_refused(bad: object) -> None:
    with pytest.raises(ConfigError):
        discrete_gaussian_exact(4, bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        skellam(4, bad if bad != 0 else -1.0)  # type: ignore[arg-type]
