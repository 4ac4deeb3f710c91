"""Safe release of CKKS decryptions: round every released value to a fixed grid above the error bound.

A CKKS decryption is the plaintext plus the encryption error, and the error is a
linear function of the secret key. Whoever holds a ciphertext and its exact
decryption can therefore solve for the key (Li and Micciancio, "On the Security
of Homomorphic Encryption on Approximate Numbers", EUROCRYPT 2021, ePrint
2020/1533, Section 4): with the real parts of two decrypted ciphertexts, one 2x2
linear system per pair of conjugate NTT slots gives every NTT value of the key
(``privfl.audit.ckks.recover_secret_key`` runs this attack). privfl never
releases an exact decryption: :func:`round_release` rounds each value to a
multiple of :func:`release_step`, a power of two ``2**MARGIN_BITS`` times above a
high-probability bound on the decryption error. A rounded value is a function of
the plaintext alone unless the plaintext lies within the error of a rounding
boundary (probability at most ``2**(1 - MARGIN_BITS)`` per value for a plaintext
the attacker does not control), so the linear algebra has nothing exact to work
with. Statistically sound flooding for IND-CPA^D (Li, Micciancio, Schultz,
Sorrell, CRYPTO 2022) needs a noise far above the error, which the shared-key
presets cannot afford without losing the model's precision; committee mode
(:mod:`privfl.he.committee`) floods every partial decryption and rounds the result.

Error model (SEAL's public-key encryption, Cheon et al. 2017, Lemma 1, with the
variances instead of worst cases): decrypting ``(c0, c1)`` gives ``m + e*u + e0 +
e1*s`` with ``u`` and ``s`` uniform ternary (variance 2/3 per coefficient) and
``e, e0, e1`` Gaussian of standard deviation ``SIGMA``; a coefficient of the error
has variance ``SIGMA**2 * (1 + 4N/3)`` plus ``1/12`` from rounding the encoding.
With ``c`` key holders the public-key error and the secret are sums of ``c``
shares, multiplying the two product terms by ``c``. A slot is ``1/scale`` times an
evaluation of the error polynomial at a root of unity, so its real part has
variance ``N/2`` times the coefficient variance over ``scale**2``; a sum of ``n``
ciphertexts has ``n`` times the variance. The bound is ``TAIL_SIGMAS`` standard
deviations: below ``2**-70`` per value by the Gaussian tail.

Precision lost (FL_8192, scale 2**40): the grid step of a sum of ``n`` uploads is
``2**-14`` for n = 1, ``2**-10`` for n = 100 and ``2**-5`` for n = 10**5 summands.
Clients cannot count the uploads in an aggregate, so they bound ``n`` by the total
weight (every upload carries at least one example); the released model's step is
the sum's step divided by that weight: 9.8e-6 for a total of 100 examples, 7.8e-7
for 10**4 (computed by :func:`release_step`).
"""

from __future__ import annotations

import math

import numpy as np

from privfl.errors import ConfigError
from privfl.he.params import CkksParams

SIGMA = 3.2
"""Standard deviation of the RLWE error (SEAL ``util::global_variables::noise_standard_deviation``)."""

TAIL_SIGMAS = 10.0
"""The error bound in standard deviations; a Gaussian exceeds it with probability below 2**-70."""

MARGIN_BITS = 8
"""Bits between the error bound and the release grid."""


def error_std(params: CkksParams, summands: int, key_holders: int = 1) -> float:
    """Standard deviation of a decrypted slot of a sum of ``summands`` fresh ciphertexts (value units)."""
    if summands < 1 or key_holders < 1:
        raise ConfigError(f"summands and key_holders must be positive, got {summands} and {key_holders}")
    n = params.poly_modulus_degree
    coeff_var = SIGMA**2 * (1 + 4 * n * key_holders / 3) + 1 / 12
    return math.sqrt(summands * coeff_var * n / 2) / params.scale


def grid_step(std: float) -> float:
    """``2**MARGIN_BITS`` times the bound ``TAIL_SIGMAS * std``, rounded up to a power of two."""
    return float(2.0 ** (math.ceil(math.log2(TAIL_SIGMAS * std)) + MARGIN_BITS))


def release_step(params: CkksParams, summands: int, key_holders: int = 1) -> float:
    """The release grid of a decrypted sum of ``summands`` fresh ciphertexts."""
    return grid_step(error_std(params, summands, key_holders))


def round_release(values: np.ndarray, step: float) -> np.ndarray:
    """``values`` rounded to the nearest multiple of ``step`` (float64)."""
    return np.rint(np.asarray(values, dtype=np.float64) / step) * step
