"""Shamir sharing over GF(2^521 - 1): reconstruction, secrecy below threshold, input checks."""

from __future__ import annotations

import os
import secrets

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chisquare

from privfl.errors import ConfigError, MessageError
from privfl.secagg.shamir import PRIME, SHARE_BYTES, combine, decode_element, encode_element, split


@settings(max_examples=60, deadline=None)
@given(
    secret=st.binary(min_size=32, max_size=32),
    n=st.integers(1, 12),
    data=st.data(),
)
def test_any_threshold_subset_reconstructs(secret: bytes, n: int, data: st.DataObject) -> None:
    t = data.draw(st.integers(1, n))
    xs = data.draw(st.lists(st.integers(1, 2**63 - 1), min_size=n, max_size=n, unique=True))
    shares = split(secret, xs, t)
    subset = data.draw(st.lists(st.sampled_from(xs), min_size=t, max_size=n, unique=True))
    assert combine({x: shares[x] for x in subset}, t) == secret


@settings(max_examples=30, deadline=None)
@given(secret=st.binary(min_size=32, max_size=32), other=st.binary(min_size=32, max_size=32), t=st.integers(2, 6))
def test_fewer_than_t_shares_fit_every_secret(secret: bytes, other: bytes, t: int) -> None:
    """t - 1 shares plus any candidate secret extend to t shares of that candidate: nothing is ruled out."""
    xs = list(range(1, t + 1))
    shares = split(secret, xs, t)
    known = {x: shares[x] for x in xs[: t - 1]}
    x_new = t + 100
    completed = {**known, x_new: _through(known, other, x_new)}
    assert combine(completed, t) == other


def _through(known: dict[int, int], secret: bytes, x_new: int) -> int:
    """f(x_new) for the unique degree t-1 polynomial through ``known`` and (0, secret)."""
    points = [(0, int.from_bytes(secret, "big")), *known.items()]
    total = 0
    for j, (xj, yj) in enumerate(points):
        num = den = 1
        for m, (xm, _) in enumerate(points):
            if m != j:
                num = num * (x_new - xm) % PRIME
                den = den * (xj - xm) % PRIME
        total = (total + yj * num * pow(den, -1, PRIME)) % PRIME
    return total


def test_single_share_is_uniform_whatever_the_secret() -> None:
    """With t = 2 one share is s + a*x for uniform a: its distribution does not depend on s."""
    for secret in (bytes(32), b"\xff" * 32):
        top = np.array([split(secret, [5, 9], 2)[5] >> 513 for _ in range(4000)])  # top 8 of 521 bits
        counts = np.bincount(top, minlength=256)[:256]
        assert chisquare(counts).pvalue > 1e-4


@pytest.mark.parametrize(
    ("secret", "xs", "t"),
    [
        (bytes(31), [1, 2], 1),  # wrong secret size
        (bytes(32), [1, 1, 2], 2),  # duplicate index
        (bytes(32), [0, 1], 1),  # index 0 is the secret itself
        (bytes(32), [-3, 1], 1),
        (bytes(32), [1, PRIME], 1),
        (bytes(32), [1, 2], 0),  # threshold out of range
        (bytes(32), [1, 2], 3),
    ],
)
def test_split_rejects_bad_arguments(secret: bytes, xs: list[int], t: int) -> None:
    with pytest.raises(ConfigError):
        split(secret, xs, t)


def test_combine_rejects_too_few_and_bad_indices() -> None:
    shares = split(os.urandom(32), [1, 2, 3], 3)
    with pytest.raises(ConfigError):
        combine({1: shares[1], 2: shares[2]}, 3)
    with pytest.raises(ConfigError):
        combine({0: 5, 1: shares[1], 2: shares[2]}, 3)


def test_tampered_share_is_detected() -> None:
    """A changed share moves f(0) to an essentially uniform field element, above 2^256 but with prob 2^-265."""
    shares = split(os.urandom(32), [1, 2, 3], 3)
    shares[2] = secrets.randbelow(PRIME)  # a random replacement, not a small shift
    with pytest.raises(MessageError):
        combine(shares, 3)


def test_element_encoding_round_trip_and_rejects_non_canonical() -> None:
    assert decode_element(encode_element(PRIME - 1)) == PRIME - 1
    with pytest.raises(MessageError):
        decode_element(encode_element(PRIME))
    with pytest.raises(MessageError):
        decode_element(bytes(SHARE_BYTES - 1))
