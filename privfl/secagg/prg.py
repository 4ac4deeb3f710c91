"""Cryptographic pseudo-random generation: masks and rounding noise from 32-byte seeds.

A seed keys AES-256 in counter mode (NIST SP 800-38A) with an all-zero initial
counter block; the keystream, viewed as little-endian unsigned words, is uniform
modulo 2^32 (or 2^64), hence modulo any 2^m with m <= word bits after masking the
high bits. Each seed is used for exactly one stream (seeds are fresh per round
and per pair), so the fixed counter block never repeats under one key.
This is the PRG of Bonawitz et al. CCS'17, section 4 ("PRG(b_u)", "PRG(s_uv)").
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from privfl.errors import ConfigError

SEED_BYTES = 32
"""Size of a PRG seed (bytes): an AES-256 key."""
_BLOCK = 16
_CTR = modes.CTR(bytes(_BLOCK))  # all-zero initial counter block; immutable, shared by all streams


def word_dtype(modulus_bits: int) -> np.dtype:
    """The unsigned dtype that holds values mod 2^modulus_bits: uint16 up to 16 bits, uint32 up to 32, else uint64."""
    if not 1 <= modulus_bits <= 64:
        raise ConfigError(f"modulus bits must be in [1, 64], got {modulus_bits}")
    if modulus_bits <= 16:
        return np.dtype(np.uint16)
    return np.dtype(np.uint32 if modulus_bits <= 32 else np.uint64)


def low_bits_mask(modulus_bits: int) -> np.unsignedinteger:
    """2^m - 1 in the word dtype: ``x & mask`` reduces a word mod 2^m."""
    dtype = word_dtype(modulus_bits)
    return dtype.type((1 << modulus_bits) - 1)


@lru_cache(maxsize=8)
def _zeros(num_bytes: int) -> bytes:
    """An immutable all-zero plaintext, cached: its keystream encryption is the keystream itself."""
    return bytes(num_bytes)


def _encryptor(seed: bytes) -> Any:
    if not isinstance(seed, bytes) or len(seed) != SEED_BYTES:
        raise ConfigError(f"a PRG seed must be {SEED_BYTES} bytes")
    return Cipher(algorithms.AES(seed), _CTR).encryptor()


def uniform_words(seed: bytes, count: int, dtype: np.dtype) -> np.ndarray:
    """``count`` uniform words of an unsigned ``dtype``: the AES-256-CTR keystream under ``seed``."""
    dtype = np.dtype(dtype).newbyteorder("<")
    num_bytes = count * dtype.itemsize
    buffer = np.empty(num_bytes + _BLOCK, dtype=np.uint8)  # update_into needs one spare block
    # update_into writes in place: several times faster than update() for large outputs.
    _encryptor(seed).update_into(_zeros(num_bytes), buffer)
    return buffer[:num_bytes].view(dtype)


class MaskExpander:
    """Expands seeds into vectors of ``count`` uniform words and folds them into an accumulator.

    One AES-CTR call per seed writes into a buffer reused across seeds, and numpy adds
    or subtracts it in place with unsigned wraparound (arithmetic mod 2^32 or 2^64,
    which reduces correctly mod 2^m for any m <= word bits).

    Args:
        count: words per mask (the masked vector's length).
        dtype: ``uint16``, ``uint32`` or ``uint64`` (see :func:`word_dtype`).
    """

    def __init__(self, count: int, dtype: np.dtype) -> None:
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.dtype(np.uint16), np.dtype(np.uint32), np.dtype(np.uint64)) or count < 0:
            raise ConfigError(f"masks need a uint16/uint32/uint64 dtype and count >= 0, got {dtype}, {count}")
        self.count = count
        self._zeros = _zeros(count * self.dtype.itemsize)
        self._buffer = np.empty(len(self._zeros) + _BLOCK, dtype=np.uint8)  # update_into needs one spare block

    def expand(self, seed: bytes) -> np.ndarray:
        """The mask of ``seed`` (a view of the shared buffer, valid until the next call)."""
        _encryptor(seed).update_into(self._zeros, self._buffer)
        return self._buffer[: len(self._zeros)].view(self.dtype.newbyteorder("<"))

    def add(self, acc: np.ndarray, seed: bytes, sign: int = 1) -> None:
        """``acc += sign * PRG(seed)`` in place, mod 2^(word bits); ``sign`` is +1 or -1."""
        if sign == 1:
            np.add(acc, self.expand(seed), out=acc)
        elif sign == -1:
            np.subtract(acc, self.expand(seed), out=acc)
        else:
            raise ConfigError(f"mask sign must be +1 or -1, got {sign}")
