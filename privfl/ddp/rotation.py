"""The randomised Hadamard rotation of distributed DP and the seed it is drawn from.

x -> H D x / sqrt(B) blockwise, with D a diagonal of random signs and H the (unnormalised,
symmetric) B x B Walsh-Hadamard matrix with H H = B I applied to each block of B
coordinates: an orthogonal map, so L2 norms (and with them the clipping bound) are
unchanged, and after it every coordinate of a block of norm c_b is about c_b / sqrt(B) with
sub-Gaussian tails (Kairouz, Liu & Steinke, ICML 2021, Sec. 4.2, Lemma 29), which keeps the
modular sum from wrapping. B is the largest power of two whose multiple d' covering d adds at
most 20% padding (a single block when d is a power of two): padding to the next power of two
would cost up to 2x in upload (650 values: 768 = 3 x 256 instead of 1024).

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


MAX_PADDING = 1.2
"""Largest ratio of padded to original dimension accepted when choosing the block size."""


def block_size(dimension: int) -> int:
    """B: the largest power of two with ceil(d / B) * B <= 1.2 d (d itself if it is a power of two)."""
    if isinstance(dimension, bool) or not isinstance(dimension, int) or dimension < 1:
        raise ConfigError(f"dimension must be an int >= 1, got {dimension!r}")
    block = 1 << (dimension - 1).bit_length()
    while block > 1 and -(-dimension // block) * block > MAX_PADDING * dimension:
        block //= 2
    return block


def padded_dimension(dimension: int) -> int:
    """d': ``dimension`` rounded up to a multiple of :func:`block_size`."""
    block = block_size(dimension)
    return -(-dimension // block) * block


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


def _hadamard(x: np.ndarray, block: int) -> np.ndarray:
    """H x blockwise for the unnormalised B x B Walsh-Hadamard H (Sylvester order), O(d log B), on a copy."""
    x = np.array(x, dtype=np.float64)
    h = 1
    while h < block:
        pairs = x.reshape(-1, 2, h)  # consecutive pairs of h-runs stay inside blocks of size B
        a, b = pairs[:, 0, :].copy(), pairs[:, 1, :]
        pairs[:, 0, :] += b
        pairs[:, 1, :] = a - b
        h *= 2
    return x


def _block(size: int) -> int:
    """The Hadamard block of a length: its largest power-of-two divisor (B or a multiple for padded lengths)."""
    if size < 1:
        raise ConfigError(f"rotation needs a non-empty vector, got length {size}")
    return size & -size


def rotate(x: np.ndarray, seed: bytes) -> np.ndarray:
    """H D x / sqrt(B) blockwise, B the largest power of two dividing the length (use :func:`padded_dimension`)."""
    block = _block(x.size)
    return _hadamard(x * _signs(seed, x.size), block) / np.sqrt(block)


def unrotate(y: np.ndarray, seed: bytes) -> np.ndarray:
    """The inverse of :func:`rotate`: D H y / sqrt(B) blockwise (H is symmetric and D D = I)."""
    block = _block(y.size)
    return _hadamard(y, block) * _signs(seed, y.size) / np.sqrt(block)
