"""X25519 + HKDF key agreement and AES-GCM share encryption."""

from __future__ import annotations

import pytest

from privfl.errors import DecryptionError, MessageError
from privfl.secagg.crypto import (
    PURPOSE_MASK,
    PURPOSE_SHARES,
    KeyPair,
    agree,
    associated_data,
    load_private,
    private_bytes,
    public_bytes,
    seal,
    unseal,
)

SESSION = bytes(range(32))
CTX = {"run_id": 3, "server_round": 5, "session": SESSION}


def test_agreement_is_symmetric_and_context_bound() -> None:
    a, b = KeyPair.generate(), KeyPair.generate()
    k_ab = agree(a.private, b.public, purpose=PURPOSE_MASK, a=1, b=2, **CTX)
    assert k_ab == agree(b.private, a.public, purpose=PURPOSE_MASK, a=2, b=1, **CTX)
    assert len(k_ab) == 32
    others = {
        agree(a.private, b.public, purpose=PURPOSE_SHARES, a=1, b=2, **CTX),
        agree(a.private, b.public, purpose=PURPOSE_MASK, a=1, b=3, **CTX),
        agree(a.private, b.public, purpose=PURPOSE_MASK, a=1, b=2, run_id=3, server_round=6, session=SESSION),
        agree(a.private, b.public, purpose=PURPOSE_MASK, a=1, b=2, run_id=4, server_round=5, session=SESSION),
        agree(a.private, b.public, purpose=PURPOSE_MASK, a=1, b=2, run_id=3, server_round=5, session=bytes(32)),
    }
    assert k_ab not in others and len(others) == 5


def test_private_key_round_trip() -> None:
    pair = KeyPair.generate()
    restored = load_private(private_bytes(pair.private))
    assert public_bytes(restored.public_key()) == pair.public


def test_invalid_public_keys_are_message_errors() -> None:
    pair = KeyPair.generate()
    with pytest.raises(MessageError):
        agree(pair.private, b"short", purpose=PURPOSE_MASK, a=1, b=2, **CTX)
    with pytest.raises(MessageError):  # a small-order point yields the all-zero shared secret
        agree(pair.private, bytes(32), purpose=PURPOSE_MASK, a=1, b=2, **CTX)


def test_seal_round_trip_and_every_tamper_fails_the_same_way() -> None:
    key, other_key = bytes(range(32)), bytes(32)
    ad = associated_data(1, 2, 3, 4, SESSION)
    blob = seal(key, b"share bundle", ad)
    assert unseal(key, blob, ad) == b"share bundle"
    assert seal(key, b"share bundle", ad) != blob  # fresh random nonce
    flipped = [bytes([*blob[:i], blob[i] ^ 1, *blob[i + 1 :]]) for i in (0, 12, len(blob) - 1)]
    attempts = [
        (key, blob, associated_data(1, 2, 4, 3, SESSION)),  # sender and receiver swapped
        (key, blob, associated_data(1, 3, 3, 4, SESSION)),  # another round
        (key, blob, associated_data(2, 2, 3, 4, SESSION)),  # another run
        (other_key, blob, ad),
        (key, blob[:20], ad),
        (key, b"", ad),
        *[(key, f, ad) for f in flipped],
    ]
    messages = set()
    for k, b, a in attempts:
        with pytest.raises(DecryptionError) as info:
            unseal(k, b, a)
        messages.add(str(info.value))
    assert messages == {"decryption failed"}
