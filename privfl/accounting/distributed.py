"""Rényi DP of the distributed discrete Gaussian and Skellam mechanisms, and their Poisson subsampling.

Everything is in the integer domain the clients send (after scaling by 1/gamma and
rounding): sensitivities and noise are in integer units. Pure keyword-only functions;
RDP values are in nats per round.

References:
    KLS21: Kairouz, Liu & Steinke, "The Distributed Discrete Gaussian Mechanism for
        Federated Learning with Secure Aggregation", ICML 2021, arXiv:2102.06387.
    AKL21: Agarwal, Kairouz & Liu, "The Skellam Mechanism for Differentially Private
        Federated Learning", NeurIPS 2021, arXiv:2110.04995.
    ZW19: Zhu & Wang, "Poisson Subsampled Rényi Differential Privacy", ICML 2019.
The authors' code (google-research/federated, distributed_dp/accounting_utils.py)
implements the same formulas; tests compare with its values.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import special

from privfl.accounting.checks import check_sampling_rate, integer, real
from privfl.accounting.rdp import validate_orders
from privfl.errors import ConfigError


def rounded_l2_norm_bound(*, l2_norm: float, beta: float, dimension: int) -> float:
    """L2 bound after conditional stochastic rounding of a vector of norm <= ``l2_norm`` to integers.

    KLS21 Sec. 4.1 (Prop. 22 / Thm 1 there): min(c + sqrt(d), sqrt(c^2 + d/4 + sqrt(2 log(1/beta))
    (c + sqrt(d)/2))); the second bound holds with probability >= 1 - beta per rounding, and
    the clients resample until it holds, so it holds always. beta = 0 gives the first only.
    """
    c = real(l2_norm, "l2_norm")
    d = integer(dimension, "dimension", 1)
    beta = real(beta, "beta")
    if not (math.isfinite(c) and c > 0):
        raise ConfigError(f"l2_norm must be finite and > 0, got {l2_norm!r}")
    if not 0.0 <= beta < 1.0:
        raise ConfigError(f"beta must be in [0, 1), got {beta!r}")
    bound_1 = c + math.sqrt(d)
    if beta == 0:
        return bound_1
    squared_2 = c * c + d / 4.0 + math.sqrt(2.0 * math.log(1.0 / beta)) * (c + math.sqrt(d) / 2.0)
    return min(bound_1, math.sqrt(squared_2))


def rounded_l1_norm_bound(*, l2_bound: float, dimension: int) -> float:
    """L1 bound of an integer vector with L2 norm <= ``l2_bound``: min(sqrt(d), L2) * L2 (|z|_1 <= |z|_2^2 on Z^d)."""
    return l2_bound * min(math.sqrt(dimension), l2_bound)


def ddg_tau(*, local_sigma_sq: float, num_clients: int) -> float:
    """KLS21 Thm 1: tau = 10 sum_{k=1}^{n-1} exp(-2 pi^2 sigma^2 k / (k + 1)).

    The price of a sum of n discrete Gaussians N_Z(0, sigma^2) not being a discrete Gaussian.
    """
    n = integer(num_clients, "num_clients", 1)
    s2 = real(local_sigma_sq, "local_sigma_sq")
    k = np.arange(1, n, dtype=np.float64)
    return float(10.0 * np.sum(np.exp(-2.0 * math.pi**2 * s2 * k / (k + 1.0))))


def rdp_distributed_discrete_gaussian(
    *,
    l2_sensitivity: float,
    l1_sensitivity: float,
    local_sigma_sq: float,
    num_clients: int,
    dimension: int,
    orders: ArrayLike,
) -> NDArray[np.float64]:
    """RDP (nats) of the sum of ``num_clients`` N_Z(0, sigma^2)^d noise shares added to a query.

    KLS21 Prop. 14 (Eq. 17) with tau from Thm 1 and s = sqrt(n) sigma the sum's scale:
    eps(alpha) = min(alpha/2 D2^2 + tau d, alpha/2 (D2^2 + 2 D1 tau + tau^2 d), alpha/2 (D2 + sqrt(d) tau)^2)
    with D2 = l2 / s and D1 = l1 / s.
    """
    alphas = validate_orders(orders)
    n = integer(num_clients, "num_clients", 1)
    d = integer(dimension, "dimension", 1)
    s2 = real(local_sigma_sq, "local_sigma_sq")
    if not (math.isfinite(s2) and s2 > 0):
        raise ConfigError(f"local_sigma_sq must be finite and > 0, got {local_sigma_sq!r}")
    scale = math.sqrt(n * s2)
    l2, l1 = real(l2_sensitivity, "l2_sensitivity") / scale, real(l1_sensitivity, "l1_sensitivity") / scale
    tau = ddg_tau(local_sigma_sq=s2, num_clients=n)
    # KLS21 Prop. 14, Eq. (17): the three bounds, take the smallest.
    term_1 = alphas / 2.0 * l2**2 + tau * d
    term_2 = alphas / 2.0 * (l2**2 + 2.0 * l1 * tau + tau**2 * d)
    term_3 = alphas / 2.0 * (l2 + math.sqrt(d) * tau) ** 2
    return np.minimum(np.minimum(term_1, term_2), term_3)


def rdp_skellam(
    *, l2_sensitivity: float, l1_sensitivity: float, variance: float, orders: ArrayLike
) -> NDArray[np.float64]:
    """RDP (nats) of adding symmetric Skellam noise of total variance mu to each coordinate.

    AKL21 Sec. 3, the multidimensional Skellam RDP bound (integer domain, scale 1): eps(alpha) = alpha D2^2 / (2 mu)
    + min(((2 alpha - 1) D2^2 + 6 D1) / (4 mu^2), 3 D1 / (2 mu)).
    """
    alphas = validate_orders(orders)
    mu = real(variance, "variance")
    if not (math.isfinite(mu) and mu > 0):
        raise ConfigError(f"variance must be finite and > 0, got {variance!r}")
    l2, l1 = real(l2_sensitivity, "l2_sensitivity"), real(l1_sensitivity, "l1_sensitivity")
    # AKL21 Sec. 3 (as in their accounting code's _skellam_rdp with scale s = 1).
    return alphas * l2**2 / (2.0 * mu) + np.minimum(
        ((2.0 * alphas - 1.0) * l2**2 + 6.0 * l1) / (4.0 * mu**2), 3.0 * l1 / (2.0 * mu)
    )


def rdp_poisson_subsampled(
    *, q: float, rdp: Callable[[NDArray[np.float64]], NDArray[np.float64]], orders: ArrayLike
) -> NDArray[np.float64]:
    """RDP (nats) of a mechanism with RDP curve ``rdp`` run on a Poisson sample with rate ``q``.

    ZW19 Thm 5 (the general upper bound), at integer orders alpha >= 2:
    eps'(alpha) = log((1-q)^(alpha-1) (alpha q - q + 1) + C(alpha, 2) q^2 (1-q)^(alpha-2) e^(eps(2))
    + 3 sum_{l=3}^alpha C(alpha, l) q^l (1-q)^(alpha-l) e^((l-1) eps(l))) / (alpha - 1),
    and never more than eps(alpha) itself. A fractional order takes the bound of the next
    integer order, which is sound because RDP is non-decreasing in the order
    (van Erven & Harremoes 2014, Thm 3).
    """
    q = check_sampling_rate(q, "q")
    alphas = validate_orders(orders)
    whole = np.maximum(np.ceil(alphas), 2.0)
    if q == 1.0:
        return rdp(whole)
    ls = np.arange(2, int(whole.max()) + 1, dtype=np.float64)
    eps_l = rdp(ls)
    a, ell = whole[:, None], ls[None, :]  # one row per order, one column per term l = 2 ... max order
    inside = ell <= a
    with np.errstate(invalid="ignore"):
        log_terms = (
            special.gammaln(a + 1.0)
            - special.gammaln(ell + 1.0)
            - special.gammaln(np.where(inside, a - ell, 0.0) + 1.0)
            + ell * math.log(q)
            + (a - ell) * math.log1p(-q)
            + (ell - 1.0) * eps_l[None, :]
        )
    log_terms[:, 1:] += math.log(3.0)  # terms l >= 3 carry the factor 3 (ZW19 Thm 5)
    log_terms = np.where(inside, log_terms, -np.inf)
    first = (whole - 1.0) * math.log1p(-q) + np.log(whole * q - q + 1.0)
    out = special.logsumexp(np.concatenate([first[:, None], log_terms], axis=1), axis=1) / (whole - 1.0)
    return np.minimum(out, rdp(whole))
