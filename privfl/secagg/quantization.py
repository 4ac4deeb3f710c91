"""Clipping and unbiased stochastic quantisation of real vectors to integers, and back.

A value x is clipped to [-c, c] and mapped to q = (x + c) * L / (2c) in [0, L] with
L = 2^b - 1 levels; it is rounded down or up at random with P(up) = q - floor(q), so
E[round(q)] = q (stochastic rounding, as in Bonawitz et al. CCS'17 section 2 and the
SecAgg+ quantisation of Bell et al. CCS'20). The rounding coins come from an AES-CTR
keystream under a fresh os.urandom seed, never from numpy's generators.

Sums of n quantised vectors lie in [0, n * L] and are exact modulo 2^m as long as
n * L < 2^m; :func:`required_modulus_bits` gives the smallest such m and
:func:`check_no_wrap` turns a too-small modulus into a :class:`ConfigError`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from privfl.errors import ConfigError
from privfl.secagg.prg import SEED_BYTES, uniform_words

MAX_BITS = 32
"""Largest supported quantisation resolution (bits); 2^32 levels stay exact in float64."""


def required_modulus_bits(count: int, max_value: int) -> int:
    """Smallest m with count * max_value < 2^m: the sum of ``count`` values in [0, max_value] cannot wrap."""
    if count < 0 or max_value < 0:
        raise ConfigError(f"count and max_value must be non-negative, got {count}, {max_value}")
    return max(1, (count * max_value).bit_length())


def check_no_wrap(modulus_bits: int, count: int, max_value: int) -> None:
    """Raise :class:`ConfigError` if a sum of ``count`` values in [0, max_value] can reach 2^modulus_bits."""
    need = required_modulus_bits(count, max_value)
    if modulus_bits < need:
        raise ConfigError(
            f"a modulus of 2^{modulus_bits} lets the sum of {count} values up to {max_value} wrap; "
            f"need at least {need} bits"
        )


@dataclass(frozen=True)
class Quantizer:
    """Stochastic b-bit quantiser on [-clip, clip].

    Attributes:
        clip: clipping bound c (> 0, same unit as the values); coordinates outside
            [-c, c] are clipped first.
        bits: resolution b in [1, 32]; values map to integers in [0, 2^b - 1].
    """

    clip: float
    bits: int

    def __post_init__(self) -> None:
        if not (isinstance(self.clip, (int, float)) and math.isfinite(self.clip) and self.clip > 0):
            raise ConfigError(f"clip must be a positive finite number, got {self.clip!r}")
        if isinstance(self.bits, bool) or not isinstance(self.bits, int) or not 1 <= self.bits <= MAX_BITS:
            raise ConfigError(f"bits must be an int in [1, {MAX_BITS}], got {self.bits!r}")

    @property
    def levels(self) -> int:
        """The largest quantised value L = 2^b - 1."""
        return (1 << self.bits) - 1

    @property
    def step(self) -> float:
        """Distance between adjacent levels, 2c / L; the rounding error of one value is below it."""
        return 2.0 * self.clip / self.levels

    def quantize(
        self,
        values: np.ndarray,
        dtype: np.dtype,
        *,
        scale: float = 1.0,
        overwrite: bool = False,
        out: np.ndarray | None = None,
        _entropy: Callable[[int], bytes] = os.urandom,
    ) -> np.ndarray:
        """Clip ``values`` to [-c, c], multiply by ``scale`` in [0, 1], round stochastically to [0, L].

        Args:
            values: the real values.
            dtype: unsigned integer dtype of the result.
            scale: factor in [0, 1] applied after clipping (a client's relative weight).
            overwrite: allow using ``values`` (if writable float64) as workspace instead of a copy.
            out: array of ``values``' shape and ``dtype`` to write the result into.
            _entropy: source of the 32-byte key of the rounding coins, the OS CSPRNG;
                replaced in tests only, to reproduce a draw.
        """
        if not 0.0 <= scale <= 1.0:
            raise ConfigError(f"scale must be in [0, 1], got {scale}")
        q = np.array(values, dtype=np.float64, copy=not overwrite)
        if not q.flags.writeable:  # e.g. a decoded message's array: never written to
            q = q.copy()
        if not np.all(np.isfinite(q)):
            raise ConfigError("values to quantise must be finite")
        seed = _entropy(SEED_BYTES)
        np.clip(q, -self.clip, self.clip, out=q)
        # q = (scale * clip(x) + c) * L / (2c), in [0, L], computed in units of 2^-32 (exact below 2^53).
        q *= scale * self.levels / (2.0 * self.clip) * 2.0**32
        q += self.levels / 2.0 * 2.0**32
        # floor(q + k / 2^32) with k uniform in [0, 2^32) rounds up with probability
        # ceil(frac(q) * 2^32) / 2^32: unbiased up to 2^-32 per value.
        q += uniform_words(seed, q.size, np.uint32).reshape(q.shape)
        q *= 2.0**-32
        np.floor(q, out=q)
        np.clip(q, 0, self.levels, out=q)  # float rounding may push q a hair outside [0, L]
        if out is None:
            return q.astype(dtype)
        np.copyto(out, q, casting="unsafe")
        return out

    def dequantize_sum(self, total: np.ndarray, count: int) -> np.ndarray:
        """Estimate of the sum of ``count`` clipped inputs from the exact sum of their quantised values.

        sum_i x_i ~= total * step - count * c; the error of each coordinate is below ``count * step``.
        """
        return np.asarray(total, dtype=np.float64) * self.step - count * self.clip
