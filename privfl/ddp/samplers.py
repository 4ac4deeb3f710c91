"""Integer noise for distributed DP: an exact discrete Gaussian and a Skellam sampler.

Randomness is 64-bit words from :func:`privfl.dp.noise.random_words` (a ChaCha20
keystream under a fresh ``os.urandom`` key per call); a numpy generator is accepted
only as the private ``_rng`` argument of tests.

Discrete Gaussian (Canonne, Kamath & Steinke, NeurIPS 2020, Algorithms 1-3), *exact*:
every Bernoulli trial has a rational success probability ``num / den`` and is decided
with integer arithmetic only (:func:`bernoulli_rational`), so the output pmf is exactly
proportional to exp(-x^2 / (2 sigma^2)) for the rational sigma^2 given. The loops of the
paper are run over whole arrays at once (each sample keeps its own loop state).

Skellam(mu/2, mu/2), the difference of two independent Poisson(mu/2) variables (Agarwal,
Kairouz & Liu, NeurIPS 2021, Def. 2.1): the Poisson draws use the transformed rejection
method PTRS of Hoermann (1993) for means >= 10 and multiplication of uniforms below, in
float64 on 52-bit CSPRNG uniforms. Their probabilities are exact up to float64 rounding
(about 2^-52 relative), *not* exact like the discrete Gaussian: an integer output leaks
nothing through its representation (unlike Mironov's floating-point attack), but the
pmf differs from Skellam's by that relative amount.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
from scipy import special

from privfl.dp.noise import random_words, uniform_open
from privfl.errors import ConfigError

_TWO_64 = 1 << 64


def _words(count: int, rng: np.random.Generator | None) -> np.ndarray:
    return random_words(count, rng)


_SMALL = 1 << 62
"""Numerators and denominators below this go through int64 arithmetic instead of Python ints."""


def _small(values: np.ndarray) -> np.ndarray | None:
    """``values`` as int64 if every one is in [0, 2^62), else None."""
    try:
        out = np.asarray(values).astype(np.int64)
    except OverflowError:
        return None
    return out if out.size == 0 or (out.min() >= 0 and out.max() < _SMALL) else None


def _bernoulli_small(num: np.ndarray, den: np.ndarray, rng: np.random.Generator | None) -> np.ndarray:
    """Exact Bernoulli(num / den) for int64 0 <= num, 0 < den < 2^62: a uniform integer below den is < num.

    The uniform integer is a 64-bit word reduced mod den, with words at or above the largest
    multiple of den below 2^64 rejected (and redrawn), so every residue is equally likely.
    """
    out = num >= den
    pending = np.flatnonzero(~out)
    n, d = num[pending].astype(np.uint64), den[pending].astype(np.uint64)
    top = np.uint64(_TWO_64 - 1)
    limit = top - (top % d + np.uint64(1)) % d  # 2^64 - (2^64 mod d) - 1
    while pending.size:
        w = _words(pending.size, rng)
        ok = w <= limit
        out[pending[ok]] = (w[ok] % d[ok]) < n[ok]
        pending, n, d, limit = pending[~ok], n[~ok], d[~ok], limit[~ok]
    return out


def bernoulli_rational(
    num: np.ndarray, den: np.ndarray | int, *, _rng: np.random.Generator | None = None
) -> np.ndarray:
    """Exact Bernoulli(num / den) trials, elementwise (``num``, ``den`` integers, 0 <= num, den > 0).

    Small operands use :func:`_bernoulli_small`. Otherwise a uniform U in [0, 1) is compared
    with p = num / den one 64-bit digit at a time: U < p iff its first digit is below
    floor(p 2^64), or equal to it and the rest of U is below the rest of p,
    frac(p 2^64) = ((num 2^64) mod den) / den. Ties (probability 2^-64 per digit) recurse on
    that remainder, so the result is exact.
    """
    num = np.asarray(num, dtype=object)
    den = np.broadcast_to(np.asarray(den, dtype=object), num.shape)
    small_num, small_den = _small(num), _small(den)
    if small_num is not None and small_den is not None:
        return _bernoulli_small(small_num, small_den, _rng)
    out = num >= den
    pending = np.flatnonzero(~out)
    n, d = num[pending], den[pending]
    while pending.size:
        scaled = n * _TWO_64
        digit = (scaled // d).astype(np.uint64)
        u = _words(pending.size, _rng)
        out[pending[u < digit]] = True
        tie = u == digit
        pending, n, d = pending[tie], (scaled % d)[tie], d[tie]
    return out


_AHEAD = 4
"""Trials drawn per element and pass in the sequential loops below (unused ones are discarded)."""


def _leading_successes(trials: np.ndarray) -> np.ndarray:
    """Per row, how many trials succeed before the first failure (the row length if none fails)."""
    return np.where(trials.all(axis=1), trials.shape[1], np.argmin(trials, axis=1))


def _bernoulli_exp_unit(num: np.ndarray, den: np.ndarray, rng: np.random.Generator | None) -> np.ndarray:
    """Exact Bernoulli(exp(-num/den)) for num/den in [0, 1]: CKS 2020, Algorithm 1.

    K = 1; while Bernoulli(gamma / K) succeeds, K += 1; return K odd (P(K odd) = exp(-gamma)).
    The trials for K, K+1, ..., K+3 are drawn in one pass and the leading successes counted,
    which is the same sequence of independent trials in fewer numpy calls.
    """
    k = np.ones(num.shape, dtype=np.int64)
    alive = np.arange(num.size)
    small_num, small_den = _small(num), _small(den)
    fast = small_num is not None and small_den is not None and (small_den.size == 0 or small_den.max() < 1 << 40)
    steps = np.arange(_AHEAD, dtype=np.int64)
    while alive.size:
        ks = k[alive][:, None] + steps  # (alive, AHEAD): the next denominators' factors
        if fast and ks.max() < 1 << 20:  # den * K stays below 2^60
            trials = _bernoulli_small(
                np.repeat(small_num[alive], _AHEAD), (small_den[alive][:, None] * ks).ravel(), rng
            )
        else:
            trials = bernoulli_rational(
                np.repeat(num[alive], _AHEAD), (den[alive][:, None] * ks.astype(object)).ravel(), _rng=rng
            )
        lead = _leading_successes(trials.reshape(-1, _AHEAD))
        k[alive] += lead
        alive = alive[lead == _AHEAD]
    return (k % 2) == 1


def _count_exp1_successes(count: int, rng: np.random.Generator | None) -> np.ndarray:
    """``count`` draws of G, the successes of Bernoulli(exp(-1)) before the first failure: P(G >= k) = exp(-k)."""
    g = np.zeros(count, dtype=np.int64)
    alive = np.arange(count)
    while alive.size:
        ones = np.ones(alive.size * _AHEAD, dtype=np.int64)
        lead = _leading_successes(_bernoulli_exp_unit(ones, ones, rng).reshape(-1, _AHEAD))
        g[alive] += lead
        alive = alive[lead == _AHEAD]
    return g


def bernoulli_exp(num: np.ndarray, den: np.ndarray | int, *, _rng: np.random.Generator | None = None) -> np.ndarray:
    """Exact Bernoulli(exp(-num/den)), elementwise, for rational num/den >= 0 (Python ints).

    CKS 2020, Algorithm 1 beyond gamma = 1: exp(-gamma) = exp(-1)^floor(gamma) exp(-frac(gamma)),
    a conjunction of independent trials: the first factor holds iff G >= floor(gamma) for G the
    successes of Bernoulli(exp(-1)) before the first failure.
    """
    num = np.asarray(num, dtype=object)
    den = np.broadcast_to(np.asarray(den, dtype=object), num.shape)
    # floor(gamma) capped at 2^62: P(G >= 2^62) = exp(-2^62) already equals 0 in any arithmetic.
    whole = np.minimum(num // den, _SMALL).astype(np.int64)
    out = np.ones(num.shape, dtype=bool)
    trial = np.flatnonzero(whole > 0)
    out[trial] = _count_exp1_successes(trial.size, _rng) >= whole[trial]
    trial = np.flatnonzero(out)
    out[trial] = _bernoulli_exp_unit((num % den)[trial], den[trial], _rng)
    return out


def _uniform_below(bound: int, count: int, rng: np.random.Generator | None) -> np.ndarray:
    """``count`` exact uniforms on {0, ..., bound - 1} (bound < 2^63) by rejection of the top remainder."""
    out = np.empty(count, dtype=np.int64)
    limit = np.uint64(_TWO_64 - _TWO_64 % bound - 1)  # words <= limit are an exact multiple of bound
    filled = 0
    while filled < count:
        w = _words(count - filled, rng)
        w = w[w <= limit] % np.uint64(bound)
        out[filled : filled + w.size] = w.astype(np.int64)
        filled += w.size
    return out


def _discrete_laplace(t: int, count: int, rng: np.random.Generator | None) -> np.ndarray:
    """Exact samples with P(y) proportional to exp(-|y| / t), integer t >= 1: CKS 2020, Algorithm 2 (s = 1)."""
    out = np.empty(count, dtype=np.int64)
    filled = 0
    while filled < count:
        need = count - filled
        # About 60% of candidates survive steps 4 and 10; draw enough that one pass usually suffices.
        u = _uniform_below(t, 2 * need + 16, rng)
        # Step 4: accept U with probability exp(-U / t) (U / t < 1: one run of Algorithm 1).
        keep = _bernoulli_exp_unit(u, np.full(u.size, t, dtype=np.int64), rng)
        u = u[keep]
        # Steps 6-8: V counts successes of Bernoulli(exp(-1)) until the first failure.
        x = u + t * _count_exp1_successes(u.size, rng)
        sign = (_words(x.size, rng) & np.uint64(1)).astype(bool)
        # Step 10: reject (B = 1, X = 0) so that 0 is not counted twice.
        ok = ~(sign & (x == 0))
        y = np.where(sign, -x, x)[ok][:need]
        out[filled : filled + y.size] = y
        filled += y.size
    return out


def check_variance(sigma_sq: Fraction | int | float, name: str = "sigma^2") -> Fraction:
    """``sigma_sq`` as an exact Fraction > 0 (a float is taken at its exact binary value)."""
    if isinstance(sigma_sq, bool) or not isinstance(sigma_sq, (Fraction, int, float)):
        raise ConfigError(f"{name} must be a number, got {sigma_sq!r}")
    if isinstance(sigma_sq, float) and not math.isfinite(sigma_sq):
        raise ConfigError(f"{name} must be finite, got {sigma_sq!r}")
    value = Fraction(sigma_sq)
    if value <= 0:
        raise ConfigError(f"{name} must be > 0, got {sigma_sq!r}")
    return value


def discrete_gaussian_exact(
    count: int, sigma_sq: Fraction | int | float, *, _rng: np.random.Generator | None = None
) -> np.ndarray:
    """``count`` int64 samples of N_Z(0, sigma^2), P(x) proportional to exp(-x^2 / (2 sigma^2)), exactly.

    CKS 2020, Algorithm 3: a discrete Laplace candidate Y with scale t = floor(sigma) + 1,
    accepted with probability exp(-(|Y| - sigma^2/t)^2 / (2 sigma^2)); with sigma^2 = a/b that
    exponent is the rational (|Y| b t - a)^2 / (2 a b t^2), decided exactly.

    Args:
        count: number of samples (>= 0).
        sigma_sq: the variance parameter sigma^2 (> 0); floats are taken exactly.
    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ConfigError(f"count must be an int >= 0, got {count!r}")
    s2 = check_variance(sigma_sq)
    a, b = s2.numerator, s2.denominator
    t = math.isqrt(a // b) + 1  # floor(sqrt(a / b)) + 1
    out = np.empty(count, dtype=np.int64)
    filled = 0
    while filled < count:
        need = count - filled
        # Most candidates are accepted for sigma >= 1 (CKS 2020, Sec. 5); a 2x margin makes one pass the rule.
        y = _discrete_laplace(t, 2 * need + 16, _rng)
        gap = np.abs(y).astype(object) * (b * t) - a
        keep = bernoulli_exp(gap * gap, 2 * a * b * t * t, _rng=_rng)
        kept = y[keep][:need]
        out[filled : filled + kept.size] = kept
        filled += kept.size
    return out


def _poisson(lam: float, count: int, rng: np.random.Generator | None) -> np.ndarray:
    """``count`` Poisson(lam) samples from CSPRNG uniforms (float64 decisions; see module docstring)."""
    out = np.empty(count, dtype=np.int64)
    if lam == 0:
        out.fill(0)
        return out
    if lam < 10:
        # Multiplication of uniforms (Knuth, TAOCP vol. 2, 3.4.1 F): the first k with U_1...U_{k+1} < exp(-lam).
        limit = math.exp(-lam)
        prod = uniform_open(count, rng)
        k = np.zeros(count, dtype=np.int64)
        alive = np.flatnonzero(prod >= limit)
        while alive.size:
            k[alive] += 1
            prod[alive] *= uniform_open(alive.size, rng)
            alive = alive[prod[alive] >= limit]
        return k
    # PTRS, Hoermann (1993), "The transformed rejection method for generating Poisson random variables".
    slam, loglam = math.sqrt(lam), math.log(lam)
    b = 0.931 + 2.53 * slam
    a = -0.059 + 0.02483 * b
    inv_alpha = 1.1239 + 1.1328 / (b - 3.4)
    v_r = 0.9277 - 3.6224 / (b - 2)
    pending = np.arange(count)
    while pending.size:
        uv = uniform_open(2 * pending.size, rng)
        u, v = uv[: pending.size] - 0.5, uv[pending.size :]
        us = 0.5 - np.abs(u)
        k = np.floor((2 * a / us + b) * u + lam + 0.43)
        quick = (us >= 0.07) & (v <= v_r)
        with np.errstate(divide="ignore", invalid="ignore"):
            full = np.log(v) + math.log(inv_alpha) - np.log(a / (us * us) + b) <= -lam + k * loglam - special.gammaln(
                k + 1
            )
        ok = quick | ((k >= 0) & ~((us < 0.013) & (v > us)) & full)
        out[pending[ok]] = k[ok].astype(np.int64)
        pending = pending[~ok]
    return out


def skellam(count: int, variance: float, *, _rng: np.random.Generator | None = None) -> np.ndarray:
    """``count`` int64 samples of the symmetric Skellam distribution with the given variance (>= 0).

    Poisson(variance / 2) - Poisson(variance / 2) (Agarwal et al. 2021, Def. 2.1): mean 0,
    variance ``variance``; sums of independent Skellam variables are Skellam (their Prop. 2.2),
    which is why the distributed mechanism needs no correction term.
    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ConfigError(f"count must be an int >= 0, got {count!r}")
    if isinstance(variance, bool) or not isinstance(variance, (int, float)) or not math.isfinite(variance):
        raise ConfigError(f"Skellam variance must be a finite number >= 0, got {variance!r}")
    if variance < 0:
        raise ConfigError(f"Skellam variance must be a finite number >= 0, got {variance!r}")
    half = float(variance) / 2.0
    return _poisson(half, count, _rng) - _poisson(half, count, _rng)
