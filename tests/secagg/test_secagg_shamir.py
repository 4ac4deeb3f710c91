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
from privfl.secagg.shamir import (
    PRIME,
    SHARE_BYTES,
    Reconstruction,
    combine,
    decode_element,
    encode_element,
    robust_combine,
    split,
)


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


def _checker(secret: bytes):
    calls = []

    def verifies(candidate: bytes) -> bool:
        calls.append(candidate)
        return candidate == secret

    return verifies, calls


def test_robust_combine_honest_case_is_one_check() -> None:
    secret = os.urandom(32)
    verifies, calls = _checker(secret)
    found = robust_combine(split(secret, range(1, 8), 4), 4, verifies)
    assert found == Reconstruction(secret, ()) and len(calls) == 1


@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_robust_combine_decodes_up_to_half_the_redundancy(data: st.DataObject) -> None:
    """Berlekamp-Welch: m shares, t threshold, floor((m - t) / 2) wrong shares anywhere."""
    m = data.draw(st.integers(3, 12))
    t = data.draw(st.integers(1, m - 2))
    secret = os.urandom(32)
    shares = split(secret, range(10, 10 + m), t)
    e = (m - t) // 2
    bad = data.draw(st.lists(st.sampled_from(sorted(shares)), min_size=e, max_size=e, unique=True))
    for x in bad:
        shares[x] = (shares[x] + data.draw(st.integers(1, PRIME - 1))) % PRIME
    found = robust_combine(shares, t, _checker(secret)[0], max_subsets=0)
    # The honest fast path interpolates the first t shares only; wrong shares elsewhere change nothing.
    tried_a_wrong_one = any(x < 10 + t for x in bad)
    assert found == Reconstruction(secret, tuple(sorted(bad)) if tried_a_wrong_one else ())


def test_robust_combine_searches_subsets_beyond_unique_decoding() -> None:
    """t + 1 shares, one wrong (among the first t): decoding cannot help, the subset search does."""
    secret = os.urandom(32)
    shares = split(secret, [3, 5, 9, 11], 3)
    shares[5] ^= 1
    assert robust_combine(shares, 3, _checker(secret)[0]) == Reconstruction(secret, (5,))
    assert robust_combine(shares, 3, _checker(secret)[0], max_subsets=0) is None  # the bound is honoured


def test_robust_combine_gives_nothing_when_no_t_shares_are_right() -> None:
    secret = os.urandom(32)
    shares = split(secret, [1, 2, 3, 4], 3)
    shares[1], shares[4] = shares[1] + 1, shares[4] + 7
    verifies, calls = _checker(secret)
    assert robust_combine(shares, 3, verifies) is None
    assert secret not in calls  # nothing unverified is ever returned, and the secret was never formed
