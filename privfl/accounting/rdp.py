"""Rényi-DP of the Gaussian and of the Poisson-subsampled Gaussian mechanism, in log space.

Pure, keyword-only functions of (q, noise multiplier z, orders alpha). RDP values are in
nats per step; compose steps by adding them (Mironov 2017, Prop. 1).

References:
    Mironov, "Rényi Differential Privacy", CSF 2017.
    Mironov, Talwar & Zhang, "Rényi Differential Privacy of the Sampled Gaussian
    Mechanism", arXiv:1908.10530, 2019 (cited below as MTZ19).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import special

from privfl.accounting.checks import check_noise_multiplier, check_sampling_rate
from privfl.errors import ConfigError


def _default_orders() -> NDArray[np.float64]:
    near_one = 1.0 + np.array([0.01, 0.02, 0.03, 0.05, 0.075, 0.15, 0.25])
    tenths = 1.0 + np.arange(1, 100) / 10.0  # 1.1 ... 10.9, the Opacus / dp_accounting grid
    integers = np.arange(11, 65, dtype=np.float64)
    large = np.round(np.geomspace(64, 4096, 45))  # ~10% apart; includes 128 ... 1024 below
    powers = np.array([128.0, 256.0, 512.0, 1024.0])
    return np.unique(np.concatenate([near_one, tenths, integers, large, powers]))


#: Default order grid: dense near 1 (1.01, 1.02, ...), every tenth up to 10.9,
#: every integer up to 64, then ~10% log-spaced integers up to 4096. It contains the default
#: grids of Opacus and dp_accounting, so on the same RDP values it is never looser.
DEFAULT_ORDERS: NDArray[np.float64] = _default_orders()
DEFAULT_ORDERS.setflags(write=False)


def validate_orders(orders: ArrayLike) -> NDArray[np.float64]:
    """Return ``orders`` as a 1-D float array; every order must be finite and > 1."""
    arr = np.atleast_1d(np.asarray(orders, dtype=np.float64))
    if arr.ndim != 1 or arr.size == 0:
        raise ConfigError(f"orders must be a non-empty 1-D sequence, got shape {arr.shape}")
    bad = arr[~(np.isfinite(arr) & (arr > 1.0))]
    if bad.size:
        raise ConfigError(f"RDP orders must be finite and > 1, got {bad[0]!r}")
    return arr


_HUGE_Z = 1e100
_TINY_Z = 1e-100


def rdp_gaussian(*, noise_multiplier: float, orders: ArrayLike) -> NDArray[np.float64]:
    """RDP (nats) of the Gaussian mechanism with sensitivity 1 and std ``noise_multiplier``.

    eps(alpha) = alpha / (2 z^2): Mironov 2017, Proposition 7.
    """
    z = check_noise_multiplier(noise_multiplier)
    alphas = validate_orders(orders)
    if z < _TINY_Z:
        return np.full_like(alphas, np.inf)  # z^2 underflows to 0
    return alphas / (2.0 * z * z)  # Mironov 2017, Prop. 7 (z^2 overflowing to inf gives 0, the limit)


def rdp_poisson_subsampled_gaussian(
    *, q: float, noise_multiplier: float, orders: ArrayLike, max_grid_points: float = 30_000_000
) -> NDArray[np.float64]:
    """RDP (nats) of the Poisson-subsampled Gaussian mechanism, one step.

    Each record (or client) is included independently with probability ``q``; the sum
    has sensitivity 1 and Gaussian noise of std ``noise_multiplier`` (add/remove
    neighbouring). eps(alpha) = log(A_alpha) / (alpha - 1), MTZ19 Sec. 3.3, with
    A_alpha = E_{x ~ N(0, z^2)} [(1 - q + q exp((2x - 1) / (2 z^2)))^alpha].
    Integer orders use the exact binomial sum; fractional orders a quadrature of A - 1
    that is exponentially accurate (see :func:`_log_a_minus_one_frac`) when it needs at
    most ``max_grid_points`` points, else the sound bound of the next integer order.
    """
    q = check_sampling_rate(q, "q")
    z = check_noise_multiplier(noise_multiplier)
    alphas = validate_orders(orders)
    if q == 1.0 or z > _HUGE_Z:
        # Subsampling never increases RDP (it is post-processing of a mixture, MTZ19 Sec. 3),
        # so the full Gaussian's alpha / (2 z^2) bounds it; beyond _HUGE_Z that is below 1e-200.
        return rdp_gaussian(noise_multiplier=z, orders=alphas)
    if z < _TINY_Z:
        # z^2 underflows: the divergence is astronomically large; infinity is the honest bound.
        return np.full_like(alphas, np.inf)
    is_int = alphas == np.round(alphas)
    log_am1 = np.empty_like(alphas)
    if is_int.any():
        log_am1[is_int] = _log_a_minus_one_int(q, z, alphas[is_int].astype(np.int64))
    frac = ~is_int
    coarse = frac & (_frac_grid_points(z, float(alphas.max())) > max_grid_points)
    if coarse.any():
        # Tiny z needs a quadrature grid too fine to hold; RDP is non-decreasing in the order
        # (van Erven & Harremoes 2014, Thm 3), so eps at ceil(alpha) is a sound upper bound.
        frac &= ~coarse
        ceil = np.ceil(alphas[coarse])
        log_am1[coarse] = _log_a_minus_one_int(q, z, ceil.astype(np.int64))
    if frac.any():
        log_am1[frac] = _log_a_minus_one_frac(q, z, alphas[frac])
    # log A = log(1 + (A - 1)), exact for tiny A - 1 (small q).
    denominators = np.where(coarse, np.ceil(alphas) - 1.0, alphas - 1.0)
    return np.logaddexp(0.0, log_am1) / denominators  # MTZ19 Sec. 3.3: eps = log(A) / (alpha - 1)


def _log_a_minus_one_int(q: float, z: float, alphas: NDArray[np.int64]) -> NDArray[np.float64]:
    """log(A_alpha - 1) for integer alphas >= 2, by the binomial expansion (MTZ19 Sec. 3.3).

    A_alpha = sum_k w_k exp(c_k), w_k = C(alpha, k) (1-q)^(alpha-k) q^k (a binomial pmf),
    c_k = (k^2 - k) / (2 z^2). All orders are evaluated in one flat array of (alpha, k) pairs.
    """
    sizes = alphas - 1  # terms k = 2 ... alpha
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    alpha = np.repeat(alphas, sizes).astype(np.float64)
    k = (np.arange(sizes.sum()) - np.repeat(starts, sizes) + 2).astype(np.float64)
    log_w = (
        special.gammaln(alpha + 1.0)
        - special.gammaln(k + 1.0)
        - special.gammaln(alpha - k + 1.0)
        + k * math.log(q)
        + (alpha - k) * math.log1p(-q)
    )
    c = (k * k - k) / (2.0 * z * z)  # MTZ19 Sec. 3.3, exponent of the integer-alpha sum
    # A - 1 = sum_{k>=2} w_k (exp(c_k) - 1) since sum_k w_k = 1 and c_0 = c_1 = 0: all terms
    # are positive, so A - 1 is exact even when it is far below machine epsilon.
    log_terms = log_w + c + np.log(-np.expm1(-c))
    peak = np.maximum.reduceat(log_terms, starts)
    return peak + np.log(np.add.reduceat(np.exp(log_terms - np.repeat(peak, sizes)), starts))


_SERIES_TERMS = 14  # binomial series of g(x) for |x| < _SERIES_MAX; remainder < 1e-20 relative
_SERIES_MAX = 0.01
_TAIL_SIGMAS = 13.0  # integrand tails beyond 13 sigma are < exp(-84) of the peak
_MAX_CELLS = 1 << 19  # (orders x points) evaluated at once


def _log_g(alpha: NDArray[np.float64], log_abs_x: NDArray[np.float64], positive: NDArray[np.bool_]):
    """log g(x) with g(x) = (1 + x)^alpha - 1 - alpha x >= 0 (alpha > 1, x > -1), accurately.

    Arrays broadcast as (orders, 1) against (1, points). Three regimes: a binomial series
    for |x| < 0.01 (no cancellation), the direct form for |x| <= 1, and a factored form
    for x > 1 that never forms (1 + x)^alpha (no overflow).
    """
    x = np.where(positive, 1.0, -1.0) * np.exp(np.minimum(log_abs_x, 0.0))
    small = log_abs_x < math.log(_SERIES_MAX)
    # Series sum_{k>=2} C(alpha, k) x^k = C(alpha, 2) x^2 (1 + (alpha-2)/3 x (1 + (alpha-3)/4 x ...)).
    series = np.ones(np.broadcast_shapes(alpha.shape, x.shape))
    for k in range(_SERIES_TERMS, 2, -1):
        series = 1.0 + (alpha - (k - 1)) / k * x * series
    with np.errstate(divide="ignore", invalid="ignore"):  # x = 0 gives log 0 = -inf, as it should
        log_small = np.log(alpha * (alpha - 1.0) / 2.0) + 2.0 * log_abs_x + np.log(series)
        log_mid = np.log(np.expm1(alpha * np.log1p(x)) - alpha * x)
        # x > 1: g = (1+x)^alpha (1 - r), r = (1 + alpha x) / (1 + x)^alpha in (0, 1).
        log1p_x = np.logaddexp(0.0, log_abs_x)
        log_r = np.log(alpha) + log_abs_x + np.log1p(np.exp(-log_abs_x) / alpha) - alpha * log1p_x
        log_large = alpha * log1p_x + np.log(-np.expm1(log_r))
    return np.where(small, log_small, np.where(log_abs_x <= 0.0, log_mid, log_large))


def _frac_grid(z: float, alpha_max: float) -> tuple[float, float, float]:
    """Interval [lo, hi] and step h of the quadrature in :func:`_log_a_minus_one_frac`."""
    a = min(0.9 * math.pi * z * z, 2.0 * z)  # strip half-width; beyond 2z the Gaussian factor grows
    h = 2.0 * math.pi * a / (45.0 + a * a / (2.0 * z * z))
    return -_TAIL_SIGMAS * z, alpha_max + _TAIL_SIGMAS * z, h  # mass lies around x = 0 ... alpha


def _frac_grid_points(z: float, alpha_max: float) -> float:
    lo, hi, h = _frac_grid(z, alpha_max)
    return (hi - lo) / h


def _log_a_minus_one_frac(q: float, z: float, alphas: NDArray[np.float64]) -> NDArray[np.float64]:
    """log(A_alpha - 1) for fractional alpha > 1 by the trapezoidal rule.

    A - 1 = E_{x~N(0,z^2)}[g(q u(x))], u(x) = exp((2x - 1)/(2 z^2)) - 1, because
    E[u] = 0 (MTZ19 Sec. 3.3 with the first-order term subtracted). The integrand is
    non-negative, so there is no cancellation (unlike the two alternating series of
    MTZ19 Sec. 3.3, whose terms decay only polynomially in the term index). It is
    analytic in the strip |Im x| < pi z^2 (branch point of (1 + q u)^alpha), so the
    trapezoidal rule with step h converges like exp(-2 pi a / h) (Trefethen & Weideman,
    SIAM Rev. 2014, Thm 5.1) with a = strip half-width; h below targets exp(-45).
    Orders are processed in chunks so memory stays bounded at small z (fine grids).
    """
    lo, hi, h = _frac_grid(z, float(alphas.max()))
    x = np.arange(lo, hi + h, h)[None, :]
    w = (2.0 * x - 1.0) / (2.0 * z * z)
    with np.errstate(divide="ignore"):
        # log|q u|, with u = expm1(w) computed without overflow for large w.
        log_abs_u = np.where(w > 0, w + np.log(-np.expm1(-np.maximum(w, 1e-300))), np.log(-np.expm1(np.minimum(w, 0))))
    log_abs_qu = math.log(q) + log_abs_u
    log_density = -(x * x) / (2.0 * z * z) - math.log(z * math.sqrt(2.0 * math.pi))
    chunk = max(1, _MAX_CELLS // x.size)
    out = np.empty_like(alphas)
    for start in range(0, alphas.size, chunk):
        part = alphas[start : start + chunk, None]
        out[start : start + chunk] = special.logsumexp(log_density + _log_g(part, log_abs_qu, w > 0), axis=1)
    return out + math.log(h)
