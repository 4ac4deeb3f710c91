"""The client encoder and server decoder of distributed DP (Kairouz, Liu & Steinke, ICML 2021, Alg. 1).

Client, for update x in R^d: clip to L2 norm c; pad to d' (a multiple of the Hadamard block); rotate
(:mod:`privfl.ddp.rotation`); scale by 1/gamma; round each coordinate stochastically to an
integer, resampling the whole vector until its L2 norm meets the conditional-rounding bound
(KLS21 Sec. 4.1), so the sensitivity the accounting uses holds always; add this client's
noise share (exact discrete Gaussian or Skellam, :mod:`privfl.ddp.samplers`); reduce mod
2^bits. Secure aggregation then sums the vectors mod 2^bits.

Server: map the sum to [-2^(bits-1), 2^(bits-1)) (coordinates outside wrap: modular
clipping, whose probability :func:`privfl.ddp.params.plan_ddp` estimates), multiply by
gamma, rotate back, drop the padding.
"""

from __future__ import annotations

import numpy as np

from privfl.ddp.params import DdpParams
from privfl.ddp.rotation import rotate, unrotate
from privfl.ddp.samplers import discrete_gaussian_exact, skellam
from privfl.dp.noise import uniform_open
from privfl.errors import ConfigError, ProtocolAbort
from privfl.secagg.prg import word_dtype

MAX_ROUNDING_TRIES = 10_000
"""Resampling attempts before giving up; each succeeds with probability >= 1 - beta (KLS21 Sec. 4.1)."""


def clip_flat(update: np.ndarray, clip: float) -> np.ndarray:
    """``update`` scaled by min(1, clip / ||update||_2) (a float64 copy; a zero vector stays zero)."""
    x = np.array(update, dtype=np.float64).ravel()
    norm = float(np.linalg.norm(x))
    if norm > clip:
        x *= clip / norm
    return x


def conditional_round(x: np.ndarray, l2_bound: float, *, _rng: np.random.Generator | None = None) -> np.ndarray:
    """Unbiased stochastic rounding of each coordinate, repeated until ||z||_2 <= ``l2_bound`` (int64).

    KLS21 Sec. 4.1: round floor(x) + Bernoulli(x - floor(x)); accept only if the norm bound
    holds. The bound is compared in exact integer arithmetic.
    """
    base = np.floor(x)
    frac = x - base
    base = base.astype(np.int64)
    bound_sq = l2_bound * l2_bound
    for _ in range(MAX_ROUNDING_TRIES):
        z = base + (uniform_open(x.size, _rng) < frac)
        if sum(int(v) * int(v) for v in z.tolist()) <= bound_sq:
            return z
    raise ProtocolAbort(f"conditional rounding failed {MAX_ROUNDING_TRIES} times; beta is too small for this input")


def noise_share(params: DdpParams, *, _rng: np.random.Generator | None = None) -> np.ndarray:
    """One client's int64 noise vector of length d' (integer units)."""
    if params.mechanism == "ddg":
        return discrete_gaussian_exact(params.padded, params.local_variance, _rng=_rng)
    return skellam(params.padded, params.local_variance, _rng=_rng)


def encode(
    update: np.ndarray, params: DdpParams, seed: bytes, *, _rng: np.random.Generator | None = None
) -> np.ndarray:
    """The vector a client masks: (round(rotate(clip(x)) / gamma) + noise) mod 2^bits, words of ``bits``."""
    if update.size != params.dimension:
        raise ConfigError(f"update has {update.size} values, the round expects {params.dimension}")
    if not np.all(np.isfinite(update)):
        raise ConfigError("update must be finite")
    padded = np.zeros(params.padded, dtype=np.float64)
    padded[: params.dimension] = clip_flat(update, params.clip)
    scaled = rotate(padded, seed) / params.gamma
    z = conditional_round(scaled, params.l2_bound, _rng=_rng)
    z += noise_share(params, _rng=_rng)
    return wrap(z, params.bits)


def wrap(z: np.ndarray, bits: int) -> np.ndarray:
    """Integers mod 2^bits as unsigned SecAgg+ words (uint16, uint32 or uint64: the smallest that holds them)."""
    return (z.astype(np.int64) & np.int64((1 << bits) - 1)).astype(word_dtype(bits))


def unwrap(total: np.ndarray, bits: int) -> np.ndarray:
    """Words mod 2^bits as signed integers in [-2^(bits-1), 2^(bits-1)) (int64)."""
    v = np.asarray(total).astype(np.int64) & np.int64((1 << bits) - 1)
    v[v >= (1 << (bits - 1))] -= 1 << bits
    return v


def decode_sum(total: np.ndarray, params: DdpParams, seed: bytes) -> np.ndarray:
    """Estimate (model units, length d) of the sum of the clipped updates from the modular sum."""
    if total.shape != (params.padded,):
        raise ConfigError(f"the sum must have shape ({params.padded},), got {total.shape}")
    return unrotate(unwrap(total, params.bits) * params.gamma, seed)[: params.dimension]
