"""The exact privacy profile of the Gaussian mechanism, and of any composition of Gaussians.

Balle & Wang (ICML 2018), Theorem 8: the Gaussian mechanism with L2 sensitivity Delta and
noise std sigma is (epsilon, delta)-DP iff
delta >= Phi(Delta/(2 sigma) - epsilon sigma/Delta) - e^epsilon Phi(-Delta/(2 sigma) - epsilon sigma/Delta).
Composing Gaussian mechanisms with noise multipliers z_1, ..., z_k is exactly one Gaussian
mechanism with noise multiplier (sum_i z_i^-2)^(-1/2) (Dong, Roth & Su 2019, "Gaussian
Differential Privacy", Corollary 3.3: mu-GDP composes as sqrt(sum mu_i^2), with mu = 1/z),
so the epsilon of un-subsampled Gaussian releases is computed exactly, not bounded.
"""

from __future__ import annotations

import math

from scipy.optimize import brentq
from scipy.special import log_ndtr, ndtr

from privfl.accounting.checks import check_delta
from privfl.errors import ConfigError

MAX_EPSILON = 1e12
"""Largest finite epsilon :func:`gaussian_epsilon` reports (log-space terms stay accurate below it)."""


def phi_minus_exp_phi(a: float, b: float, epsilon: float) -> float:
    """Phi(a) - e^epsilon Phi(b), with the second term computed in log space (no overflow for large epsilon)."""
    return float(ndtr(a) - math.exp(min(epsilon + float(log_ndtr(b)), 700.0)))


def _positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def gaussian_delta(sigma: float, epsilon: float, sensitivity: float = 1.0) -> float:
    """The exact delta(epsilon) of the Gaussian mechanism with noise std ``sigma`` (Balle & Wang 2018, Thm 8)."""
    _positive("sigma", sigma)
    _positive("sensitivity", sensitivity)
    if not (math.isfinite(epsilon) and epsilon >= 0):
        raise ConfigError(f"epsilon must be a finite number >= 0, got {epsilon!r}")
    a = sensitivity / (2.0 * sigma)
    b = epsilon * sigma / sensitivity
    return max(0.0, phi_minus_exp_phi(a - b, -a - b, epsilon))


def gaussian_epsilon(noise_multiplier: float, delta: float) -> float:
    """The exact epsilon at ``delta`` of one Gaussian release with std ``noise_multiplier`` times the sensitivity.

    Solves :func:`gaussian_delta` for epsilon (it decreases in epsilon), to 1e-12 absolute,
    nudged up until it meets ``delta``, so the result is never below the truth. Epsilons
    above :data:`MAX_EPSILON` are reported as infinity.
    """
    z = _positive("noise_multiplier", noise_multiplier)
    delta = check_delta(delta)
    if gaussian_delta(z, 0.0) <= delta:
        return 0.0
    hi = 1.0
    while gaussian_delta(z, hi) > delta:
        hi *= 2.0
        if hi > MAX_EPSILON:
            return math.inf
    root = float(brentq(lambda e: gaussian_delta(z, e) - delta, 0.0, hi, xtol=1e-12, rtol=1e-15))
    while gaussian_delta(z, root) > delta:  # Brent's root may sit a hair on the wrong side
        root = math.nextafter(root, math.inf) + 1e-12
    return root
