"""Conversion of an RDP curve to (epsilon, delta)-DP, and back.

Uses the conversion of Balle et al., "Hypothesis Testing Interpretations and Rényi
Differential Privacy", AISTATS 2020, Theorem 21 (also Canonne, Kamath & Steinke,
"The Discrete Gaussian for Differential Privacy", NeurIPS 2020, Proposition 12):
an (alpha, r)-RDP mechanism is (eps, delta)-DP for
``eps = r + log((alpha - 1) / alpha) - (log(delta) + log(alpha)) / (alpha - 1)``.
It is sound for every alpha > 1 and never looser than Mironov's
``eps = r + log(1 / delta) / (alpha - 1)``; it is minimised over the grid of orders.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

from privfl.accounting.checks import check_delta, check_epsilon
from privfl.accounting.rdp import validate_orders
from privfl.errors import ConfigError


def _curve(orders: ArrayLike, rdp: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    alphas = validate_orders(orders)
    r = np.atleast_1d(np.asarray(rdp, dtype=np.float64))
    if r.shape != alphas.shape:
        raise ConfigError(f"rdp has shape {r.shape} but orders has shape {alphas.shape}")
    if np.any(np.isnan(r) | (r < 0)):
        raise ConfigError("rdp values must be >= 0 (inf allowed), got a negative or NaN value")
    return alphas, r


def _total_variation_bound(rdp: float) -> float:
    """Bound on total variation, so (0, TV)-DP: TV <= sqrt(1 - exp(-KL)) (Bretagnolle-Huber),
    and KL <= RDP at any order > 1 (Rényi divergence grows with the order)."""
    return math.sqrt(-math.expm1(-rdp))


def epsilon_from_rdp(*, orders: ArrayLike, rdp: ArrayLike, delta: float) -> tuple[float, float]:
    """Smallest epsilon (nats) over the grid at which the RDP curve gives (epsilon, delta)-DP.

    Returns ``(epsilon, order)``; ``epsilon`` is ``inf`` if every order is ``inf``, and 0 when
    the total-variation bound already gives (0, delta)-DP (as dp_accounting does).
    """
    alphas, r = _curve(orders, rdp)
    delta = check_delta(delta)
    # Balle et al. 2020, Thm 21 / Canonne-Kamath-Steinke 2020, Prop. 12.
    eps = r + np.log1p(-1.0 / alphas) - (math.log(delta) + np.log(alphas)) / (alphas - 1.0)
    i = int(np.argmin(eps))
    if _total_variation_bound(float(r.min())) <= delta:
        return 0.0, float(alphas[i])
    return max(0.0, float(eps[i])), float(alphas[i])


def delta_from_rdp(*, orders: ArrayLike, rdp: ArrayLike, epsilon: float) -> tuple[float, float]:
    """Smallest delta over the grid at which the RDP curve gives (epsilon, delta)-DP.

    Returns ``(delta, order)``, delta in [0, 1]; the inverse of :func:`epsilon_from_rdp`.
    """
    alphas, r = _curve(orders, rdp)
    epsilon = check_epsilon(epsilon)
    # Balle et al. 2020, Thm 21 solved for delta:
    # log(delta) = (alpha - 1)(r - eps + log(1 - 1/alpha)) - log(alpha).
    log_delta = (alphas - 1.0) * (r - epsilon + np.log1p(-1.0 / alphas)) - np.log(alphas)
    i = int(np.argmin(log_delta))
    delta = min(1.0, math.exp(float(log_delta[i])), _total_variation_bound(float(r.min())))
    return delta, float(alphas[i])
