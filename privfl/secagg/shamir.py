"""Shamir secret sharing of 32-byte secrets over the prime field GF(2^521 - 1).

Shamir, "How to share a secret", CACM 1979. A secret ``s`` is the constant term of
a random polynomial ``f`` of degree ``threshold - 1``; party ``x`` gets ``f(x)``.
Any ``threshold`` shares determine ``f(0) = s`` by Lagrange interpolation; fewer
shares are consistent with every secret, each with the same probability.

The field is the Mersenne prime p = 2^521 - 1, so one field element holds a whole
256-bit secret and shares are evaluated with Python integers: SecAgg+ shares only
two secrets per client among k = O(log n) neighbours, so there is nothing large to
vectorise. Share x-coordinates are the receivers' node ids (positive, < 2^63 < p).
:func:`robust_combine` recovers a secret that a check accepts when some shares are wrong.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

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
    return {x: _horner(coefficients, x) for x in points}


def _interpolate(points: Sequence[tuple[int, int]], at: int) -> int:
    """f(at) for the unique polynomial of degree < len(points) through ``points`` (distinct x).

    Lagrange: f(at) = sum_j y_j * prod_{m != j} (at - x_m) / (x_j - x_m) mod p, accumulated
    as one fraction so that a whole interpolation costs a single modular inversion.
    """
    num, den = 0, 1
    for j, (xj, yj) in enumerate(points):
        n_j, d_j = yj % PRIME, 1
        for m, (xm, _) in enumerate(points):
            if m != j:
                n_j = n_j * (at - xm) % PRIME
                d_j = d_j * (xj - xm) % PRIME
        num, den = (num * d_j + n_j * den) % PRIME, den * d_j % PRIME
    return num * pow(den, -1, PRIME) % PRIME


def _as_secret(value: int) -> bytes | None:
    """The 32-byte secret a field element encodes, or None when it is too large to be one."""
    return None if value >> (8 * SECRET_BYTES) else value.to_bytes(SECRET_BYTES, "big")


def combine(shares: Mapping[int, int], threshold: int) -> bytes:
    """Recover the secret from at least ``threshold`` shares (the first ``threshold`` are used).

    Lagrange interpolation at 0 (:func:`_interpolate`). Nothing here detects a wrong
    share: use :func:`robust_combine` with a check of the secret for that.

    Raises:
        ConfigError: too few shares, repeated or out-of-range indices.
        MessageError: the interpolated value is not a :data:`SECRET_BYTES`-byte secret
            (shares from different secrets or tampered).
    """
    if threshold < 1 or len(shares) < threshold:
        raise ConfigError(f"need at least {max(threshold, 1)} shares to reconstruct, got {len(shares)}")
    chosen = list(shares.items())[:threshold]
    _check_points(x for x, _ in chosen)
    secret = _as_secret(_interpolate(chosen, 0))
    if secret is None:
        raise MessageError("shares do not interpolate to a 32-byte secret (inconsistent or tampered shares)")
    return secret


MAX_SUBSETS = 512
"""Most t-subsets :func:`robust_combine` interpolates after Berlekamp-Welch decoding fails (bounded cost)."""


@dataclass(frozen=True)
class Reconstruction:
    """A verified secret and the holders whose shares disagree with its polynomial (ascending)."""

    secret: bytes
    inconsistent: tuple[int, ...]


def robust_combine(
    shares: Mapping[int, int], threshold: int, verifies: Callable[[bytes], bool], *, max_subsets: int = MAX_SUBSETS
) -> Reconstruction | None:
    """Recover a secret that ``verifies`` accepts although some shares may be wrong; None if none is found.

    ``verifies`` must accept only the true secret (a binding commitment or a public key),
    so any candidate it accepts is the secret. In order:

    1. the first ``threshold`` shares (the honest case: one interpolation, one check);
    2. Berlekamp-Welch decoding of all m shares (Berlekamp and Welch, US patent 4,633,470,
       1986; Gemmell and Sudan, IPL 1992), which corrects up to floor((m - t) / 2) wrong
       shares in O(m^3) field operations;
    3. up to ``max_subsets`` further t-subsets (lexicographic), each interpolated and
       checked, which finds the secret with up to m - t wrong shares when m - t is small.

    The polynomial through a verified subset is evaluated at every other holder, so
    ``inconsistent`` lists every wrong share received, not only those tried. A candidate
    that no check accepts never leaves this function.

    Raises:
        ConfigError: fewer than ``threshold`` shares, repeated or out-of-range indices.
    """
    if threshold < 1 or len(shares) < threshold:
        raise ConfigError(f"need at least {max(threshold, 1)} shares to reconstruct, got {len(shares)}")
    points = list(shares.items())
    _check_points(x for x, _ in points)
    first = points[:threshold]
    secret = _as_secret(_interpolate(first, 0))
    if secret is not None and verifies(secret):
        return Reconstruction(secret, ())
    decoded = _berlekamp_welch(points, threshold)
    if decoded is not None:
        secret = _as_secret(decoded[0])
        if secret is not None and verifies(secret):
            wrong = tuple(sorted(x for x, y in points if _horner(decoded, x) != y % PRIME))
            return Reconstruction(secret, wrong)
    for subset in itertools.islice(itertools.combinations(points, threshold), 1, max_subsets + 1):
        secret = _as_secret(_interpolate(subset, 0))
        if secret is not None and verifies(secret):
            used = {x for x, _ in subset}
            wrong = tuple(sorted(x for x, y in points if x not in used and _interpolate(subset, x) != y % PRIME))
            return Reconstruction(secret, wrong)
    return None


def _horner(coefficients: Sequence[int], x: int) -> int:
    """sum_i c_i x^i mod p (coefficients from the constant term up; Horner's rule)."""
    acc = 0
    for c in reversed(coefficients):
        acc = (acc * x + c) % PRIME
    return acc


def _berlekamp_welch(points: Sequence[tuple[int, int]], threshold: int) -> list[int] | None:
    """Coefficients of the degree < t polynomial within e = floor((m - t) / 2) errors of ``points``, or None.

    Berlekamp-Welch: find a monic error locator E of degree e and Q of degree < e + t
    with Q(x_i) = y_i E(x_i) for every share (a linear system of m equations in 2e + t
    unknowns, solved by Gaussian elimination mod p); then f = Q / E when E divides Q.
    """
    e = (len(points) - threshold) // 2
    if e == 0:
        return None
    width = e + threshold + e  # q_0..q_{e+t-1}, then e_0..e_{e-1}
    rows = []
    for x, y in points:
        powers = [1]
        for _ in range(e + threshold):
            powers.append(powers[-1] * x % PRIME)
        rows.append(powers[: e + threshold] + [-y * powers[j] % PRIME for j in range(e)] + [y * powers[e] % PRIME])
    solution = _solve(rows, width)
    if solution is None:
        return None
    q, locator = solution[: e + threshold], [*solution[e + threshold :], 1]
    quotient, remainder = _divide(q, locator)
    if any(remainder):
        return None
    return (quotient + [0] * threshold)[:threshold]


def _solve(rows: list[list[int]], width: int) -> list[int] | None:
    """One solution of the augmented system ``rows`` mod p (free unknowns set to 0); None if inconsistent."""
    pivots: list[int] = []
    r = 0
    for col in range(width):
        pivot = next((i for i in range(r, len(rows)) if rows[i][col]), None)
        if pivot is None:
            continue
        rows[r], rows[pivot] = rows[pivot], rows[r]
        inverse = pow(rows[r][col], -1, PRIME)
        rows[r] = [v * inverse % PRIME for v in rows[r]]
        for i in range(len(rows)):
            if i != r and rows[i][col]:
                factor = rows[i][col]
                rows[i] = [(a - factor * b) % PRIME for a, b in zip(rows[i], rows[r], strict=True)]
        pivots.append(col)
        r += 1
    if any(row[width] for row in rows[r:]):
        return None
    solution = [0] * width
    for i, col in enumerate(pivots):
        solution[col] = rows[i][width]
    return solution


def _divide(numerator: list[int], monic: list[int]) -> tuple[list[int], list[int]]:
    """Quotient and remainder of polynomial division by a monic divisor mod p (constant term first)."""
    remainder = list(numerator)
    degree = len(monic) - 1
    quotient = [0] * max(len(remainder) - degree, 1)
    for i in range(len(remainder) - 1, degree - 1, -1):
        c = remainder[i]
        if c:
            quotient[i - degree] = c
            for j in range(degree + 1):
                remainder[i - degree + j] = (remainder[i - degree + j] - c * monic[j]) % PRIME
    return quotient, remainder[:degree]
