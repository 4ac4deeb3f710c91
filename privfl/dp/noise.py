"""Noise for differential privacy, drawn from a cryptographic random source.

Source of randomness. Unless a generator is injected, every call draws a fresh
256-bit key from the operating system's CSPRNG (``os.urandom``) and expands it with
the ChaCha20 stream cipher (RFC 8439, through ``cryptography``) into 64-bit words.
A key is used for one call only, so streams never repeat. numpy's bit generators
(PCG64 and friends) are *not* cryptographic: their output is predictable from a
short sample, which would let an observer subtract the noise. They are accepted
only when passed explicitly as ``rng`` (tests, non-private simulations), and then
only their raw 64-bit words are used, so both paths run the same transformations.

Words become uniforms in the open interval (0, 1) on a grid of step 2**-52, offset by 2**-53;
Gaussians use the Box-Muller transform (Box & Muller 1958), vectorised. Continuous
Gaussian noise in floating point is subject to the least-significant-bit attacks of
Mironov (CCS 2012) on its exact representation; for integer-valued data (SecAgg
inputs) use :func:`discrete_gaussian`, which has no such issue.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from privfl.errors import ConfigError

_KEY_BYTES = 32
_CHUNK_PAIRS = 1 << 18  # Box-Muller pairs per keystream chunk (4 MiB of keystream)
_NONCE = bytes(16)  # a fresh key per call makes a fixed nonce safe (RFC 8439 section 2.4 needs unique (key, nonce))


def random_words(count: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """``count`` uniformly random ``uint64`` words: a ChaCha20 keystream under a fresh os.urandom key.

    Args:
        count: number of words (>= 0).
        rng: for tests and non-private simulation only; its bit generator's raw words are used instead.
    """
    if count < 0:
        raise ConfigError(f"count must be >= 0, got {count}")
    if rng is not None:
        return np.asarray(rng.bit_generator.random_raw(count), dtype=np.uint64)
    encryptor = Cipher(algorithms.ChaCha20(os.urandom(_KEY_BYTES), _NONCE), mode=None).encryptor()
    return np.frombuffer(encryptor.update(bytes(8 * count)), dtype="<u8").astype(np.uint64, copy=False)


def uniform_open(count: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """``count`` float64 uniforms ``(k + 1/2) * 2**-52`` with k uniform on [0, 2**52): never 0 or 1."""
    words = random_words(count, rng)
    # The top 52 bits as the mantissa of a float in [1, 2) (integer ops only: converting uint64 is slow).
    mantissa = words >> np.uint64(12)
    mantissa |= np.uint64(0x3FF0000000000000)
    uniforms = mantissa.view(np.float64)
    uniforms -= 1.0 - 2.0**-53
    return uniforms


def gaussian_noise(shape: int | tuple[int, ...], std: float, *, rng: np.random.Generator | None = None) -> np.ndarray:
    """Float64 samples of N(0, std^2) with the given shape, from the CSPRNG (see module docstring).

    Args:
        shape: output shape.
        std: standard deviation (>= 0; 0 returns zeros without drawing randomness).
        rng: explicitly injected generator for tests and non-private simulation only.
    """
    if not (math.isfinite(std) and std >= 0):
        raise ConfigError(f"noise std must be a finite number >= 0, got {std!r}")
    size = math.prod((shape,) if isinstance(shape, int) else shape)
    if std == 0 or size == 0:
        return np.zeros(shape, dtype=np.float64)
    pairs = (size + 1) // 2
    normals = np.empty(2 * pairs, dtype=np.float64)
    # Chunks keep the temporaries small (no gigabytes of page faults for 10^7 coordinates).
    for start in range(0, pairs, _CHUNK_PAIRS):
        count = min(_CHUNK_PAIRS, pairs - start)
        u = uniform_open(2 * count, rng)
        # Box & Muller (1958): R = sqrt(-2 ln U1) and angle 2 pi U2 give two independent N(0, 1): R cos, R sin.
        radius = np.log(u[:count])
        radius *= -2.0
        np.sqrt(radius, out=radius)
        radius *= std
        angle = u[count:]
        angle *= 2.0 * np.pi
        for half, trig in (
            (normals[start : start + count], np.cos),
            (normals[pairs + start : pairs + start + count], np.sin),
        ):
            trig(angle, out=half)
            half *= radius
    return normals[:size].reshape(shape)


def discrete_gaussian(
    shape: int | tuple[int, ...], sigma: float, *, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Int64 samples of the discrete Gaussian N_Z(0, sigma^2): P(x) proportional to exp(-x^2 / (2 sigma^2)).

    Canonne, Kamath & Steinke (NeurIPS 2020), Algorithm 3, vectorised: draw a discrete
    Laplace candidate Y with scale t = floor(sigma) + 1, accept it with probability
    exp(-(|Y| - sigma^2/t)^2 / (2 sigma^2)), and redraw the rejected ones. The
    Bernoulli trials use float64 arithmetic on 53-bit uniforms rather than the
    paper's exact rational arithmetic, so probabilities are exact up to about 2**-52
    relative (the same trade-off as the distributed-DP implementations of Kairouz et
    al. 2021); the expected number of candidates per sample is below 2 for sigma >= 1.

    Args:
        shape: output shape.
        sigma: scale parameter (> 0). The variance is sigma^2 up to a relative 1e-8 for sigma >= 1.
        rng: explicitly injected generator for tests and non-private simulation only.
    """
    if not (math.isfinite(sigma) and sigma > 0):
        raise ConfigError(f"discrete Gaussian sigma must be a finite number > 0, got {sigma!r}")
    size = math.prod((shape,) if isinstance(shape, int) else shape)
    out = np.empty(size, dtype=np.int64)
    t = math.floor(sigma) + 1
    filled = 0
    while filled < size:
        need = size - filled
        batch = need + need // 2 + 16
        u = uniform_open(3 * batch, rng)
        # CKS 2020 Alg. 2 in distribution: floor(t * Exp(1)) is Geometric with P(G >= k) = exp(-k/t), and the
        # difference of two independent such variables is discrete Laplace, P(Y = y) proportional to exp(-|y|/t).
        g1 = np.floor(-t * np.log(u[:batch]))
        g2 = np.floor(-t * np.log(u[batch : 2 * batch]))
        y = g1 - g2
        # CKS 2020 Alg. 3, step 5: accept with probability exp(-(|Y| - sigma^2/t)^2 / (2 sigma^2)).
        accept = u[2 * batch :] < np.exp(-((np.abs(y) - sigma * sigma / t) ** 2) / (2.0 * sigma * sigma))
        kept = y[accept][:need].astype(np.int64)
        out[filled : filled + kept.size] = kept
        filled += kept.size
    return out.reshape(shape)


def add_gaussian_noise(
    arrays: Mapping[str, np.ndarray], std: float, *, rng: np.random.Generator | None = None
) -> dict[str, np.ndarray]:
    """A float64 copy of ``arrays`` with independent N(0, std^2) noise added to every coordinate."""
    out = {}
    for name, value in arrays.items():
        noise = gaussian_noise(np.shape(value), std, rng=rng)
        out[name] = np.add(value, noise, out=noise)
    return out
