"""The randomised Hadamard rotation of distributed DP and the seed it is drawn from.

x -> H D x / sqrt(d') with d' a power of two, D a diagonal of random signs and H the
(unnormalised, symmetric) Walsh-Hadamard matrix with H H = d' I: an orthogonal map, so
L2 norms (and with them the clipping bound) are unchanged, and after it every coordinate
of a vector of norm c is about c / sqrt(d') with sub-Gaussian tails (Kairouz, Liu &
Steinke, ICML 2021, Sec. 4.2, Lemma 29), which keeps the modular sum from wrapping.

Seed. Every client and the server derive the signs from SHA-256 of the run id, the round
and a digest of the global model they were sent: nobody sends the seed, so the server
can influence it only through values it fixed before any update existed. Privacy does
not depend on the rotation at all (it is orthogonal, and the norm bound that the
accounting uses is enforced after rounding whatever the rotation); a server that grinds
rotations can at most raise the modular-clipping probability, i.e. hurt utility.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import numpy as np

from privfl.errors import ConfigError
from privfl.secagg.prg import uniform_words

_DOMAIN = b"privfl.ddp.rotation.v1\x00"


def padded_dimension(dimension: int) -> int:
    """The smallest power of two >= ``dimension`` (>= 1)."""
    if isinstance(dimension, bool) or not isinstance(dimension, int) or dimension < 1:
        raise ConfigError(f"dimension must be an int >= 1, got {dimension!r}")
    return 1 << (dimension - 1).bit_length()


def rotation_seed(run_id: int, server_round: int, parameters: Mapping[str, np.ndarray]) -> bytes:
    """32-byte seed of the round's rotation: SHA-256 of run, round and the model (names, dtypes, shapes, bytes)."""
    h = hashlib.sha256(_DOMAIN)
    h.update(int(run_id).to_bytes(8, "little", signed=True) + int(server_round).to_bytes(8, "little", signed=True))
    for name in sorted(parameters):
        value = np.ascontiguousarray(parameters[name])
        header = f"{name}\x00{value.dtype.str}\x00{value.shape}\x00".encode()
        h.update(len(header).to_bytes(4, "little") + header)
        h.update(value.tobytes())
    return h.digest()


def _signs(seed: bytes, size: int) -> np.ndarray:
    bits = uniform_words(seed, size, np.uint8) & np.uint8(1)
    return 1.0 - 2.0 * bits.astype(np.float64)


def _hadamard(x: np.ndarray) -> np.ndarray:
    """H x for the unnormalised Walsh-Hadamard H (Sylvester order), O(d log d), on a copy."""
    x = np.array(x, dtype=np.float64)
    n = x.size
    h = 1
    while h < n:
        pairs = x.reshape(-1, 2, h)
        a, b = pairs[:, 0, :].copy(), pairs[:, 1, :]
        pairs[:, 0, :] += b
        pairs[:, 1, :] = a - b
        h *= 2
    return x


def rotate(x: np.ndarray, seed: bytes) -> np.ndarray:
    """H D x / sqrt(d') for a float vector whose length d' is a power of two."""
    size = x.size
    if size != padded_dimension(size):
        raise ConfigError(f"rotation needs a power-of-two length, got {size}")
    return _hadamard(x * _signs(seed, size)) / np.sqrt(size)


def unrotate(y: np.ndarray, seed: bytes) -> np.ndarray:
    """The inverse of :func:`rotate`: D H y / sqrt(d') (H is symmetric and D D = I)."""
    size = y.size
    if size != padded_dimension(size):
        raise ConfigError(f"rotation needs a power-of-two length, got {size}")
    return _hadamard(y) * _signs(seed, size) / np.sqrt(size)
