"""Shamir secret sharing of 32-byte secrets over the prime field GF(2^521 - 1).

Shamir, "How to share a secret", CACM 1979. A secret ``s`` is the constant term of
a random polynomial ``f`` of degree ``threshold - 1``; party ``x`` gets ``f(x)``.
Any ``threshold`` shares determine ``f(0) = s`` by Lagrange interpolation; fewer
shares are consistent with every secret, each with the same probability.

The field is the Mersenne prime p = 2^521 - 1, so one field element holds a whole
256-bit secret and shares are evaluated with Python integers: SecAgg+ shares only
two secrets per client among k = O(log n) neighbours, so there is nothing large to
vectorise. Share x-coordinates are the receivers' node ids (positive, < 2^63 < p).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping

from privfl.errors import ConfigError, MessageError

PRIME = (1 << 521) - 1
"""The field modulus, a Mersenne prime (521 bits)."""
SECRET_BYTES = 32
"""Size of a shared secret (bytes)."""
SHARE_BYTES = 66
"""Size of one encoded share value: a field element, big-endian (ceil(521 / 8) bytes)."""


def encode_element(value: int) -> bytes:
    """A field element as :data:`SHARE_BYTES` big-endian bytes."""
    return value.to_bytes(SHARE_BYTES, "big")


def decode_element(data: bytes) -> int:
    """Parse a share value, rejecting wrong lengths and non-canonical values (>= p)."""
    if len(data) != SHARE_BYTES:
        raise MessageError(f"a share value must be {SHARE_BYTES} bytes, got {len(data)}")
    value = int.from_bytes(data, "big")
    if value >= PRIME:
        raise MessageError("a share value must be a field element below 2^521 - 1")
    return value


def _check_points(xs: Iterable[int]) -> list[int]:
    points = [int(x) for x in xs]
    if any(not 0 < x < PRIME for x in points):
        raise ConfigError("share indices must be in [1, 2^521 - 2]; 0 would reveal the secret")
    if len(set(points)) != len(points):
        raise ConfigError(f"share indices must be distinct, got {sorted(points)}")
    return points


def random_element(_entropy: Callable[[int], bytes] = os.urandom) -> int:
    """A uniform field element: 521 random bits, redrawn in the 1-in-2^521 case that they equal p.

    Rejection sampling: p = 2^521 - 1 is 521 one-bits, so masking :data:`SHARE_BYTES`
    random bytes with p gives a uniform 521-bit integer, and only the value p itself
    is outside the field.
    """
    while True:
        value = int.from_bytes(_entropy(SHARE_BYTES), "big") & PRIME
        if value < PRIME:
            return value


def split(
    secret: bytes, xs: Iterable[int], threshold: int, *, _entropy: Callable[[int], bytes] = os.urandom
) -> dict[int, int]:
    """Shares ``{x: f(x)}`` of a :data:`SECRET_BYTES`-byte secret, any ``threshold`` of which recover it.

    The ``threshold - 1`` random coefficients (lowest degree first) come from the OS
    CSPRNG through :func:`random_element`; ``_entropy`` replaces it in tests only.

    Raises:
        ConfigError: wrong secret size, repeated or out-of-range indices, or a threshold
            outside [1, number of shares].
    """
    if len(secret) != SECRET_BYTES:
        raise ConfigError(f"the secret must be {SECRET_BYTES} bytes, got {len(secret)}")
    points = _check_points(xs)
    if not 1 <= threshold <= len(points):
        raise ConfigError(f"threshold must be in [1, {len(points)}] (number of shares), got {threshold}")
    coefficients = [int.from_bytes(secret, "big")] + [random_element(_entropy) for _ in range(threshold - 1)]
    shares = {}
    for x in points:
        acc = 0
        for c in reversed(coefficients):  # Horner's rule
            acc = (acc * x + c) % PRIME
        shares[x] = acc
    return shares


def combine(shares: Mapping[int, int], threshold: int) -> bytes:
    """Recover the secret from at least ``threshold`` shares (the first ``threshold`` are used).

    Lagrange interpolation at 0: s = sum_j y_j * prod_{m != j} x_m / (x_m - x_j) mod p.

    Raises:
        ConfigError: too few shares, repeated or out-of-range indices.
        MessageError: the interpolated value is not a :data:`SECRET_BYTES`-byte secret
            (shares from different secrets or tampered).
    """
    if threshold < 1 or len(shares) < threshold:
        raise ConfigError(f"need at least {max(threshold, 1)} shares to reconstruct, got {len(shares)}")
    chosen = list(shares.items())[:threshold]
    points = _check_points(x for x, _ in chosen)
    secret = 0
    for j, (xj, yj) in enumerate(chosen):
        num, den = 1, 1
        for m, xm in enumerate(points):
            if m != j:
                num = num * xm % PRIME
                den = den * (xm - xj) % PRIME
        secret = (secret + yj % PRIME * num * pow(den, -1, PRIME)) % PRIME
    if secret >> (8 * SECRET_BYTES):
        raise MessageError("shares do not interpolate to a 32-byte secret (inconsistent or tampered shares)")
    return secret.to_bytes(SECRET_BYTES, "big")
