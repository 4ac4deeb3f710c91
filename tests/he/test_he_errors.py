"""Bad inputs give typed privfl errors, never raw TenSEAL exceptions."""

from __future__ import annotations

import random

import numpy as np
import pytest

from privfl.errors import ConfigError, MessageError
from privfl.he import FL_4096, CkksKeys, CkksParams, ClientCipher, EncryptedModel, EncryptedSum, load_ciphertext, pack
from privfl.he.codec import DIGEST, KEY_ID, WEIGHT, ciphertext_arrays, read_ciphertext_arrays


@pytest.fixture(scope="module")
def blob(cipher):
    return cipher.encrypt(np.linspace(-1, 1, 4096))[0]


@pytest.fixture(scope="module")
def server_ctx(server_keys):
    return server_keys.load()


@pytest.mark.parametrize("cut", [0, 1, 10, 30, 1000, -1])
def test_truncated_ciphertext(server_ctx, server_keys, blob, cut):
    with pytest.raises(MessageError):
        load_ciphertext(server_ctx, server_keys.params, blob[:cut], 4096)


@pytest.mark.parametrize("offset", [6, 7, 8])  # inside the SEAL header (magic, header size, ...)
def test_corrupted_seal_header(server_ctx, server_keys, blob, offset):
    bad = bytearray(blob)
    bad[offset] ^= 0xFF
    with pytest.raises(MessageError):
        load_ciphertext(server_ctx, server_keys.params, bytes(bad), 4096)


def test_random_mutations_never_escape_as_raw_exceptions(server_ctx, server_keys, blob):
    rng = random.Random(0)
    outcomes = set()
    for _ in range(150):
        bad = bytearray(blob)
        kind = rng.choice(["flip", "cut", "noise"])
        if kind == "flip":
            for _ in range(rng.randint(1, 4)):
                bad[rng.randrange(len(bad))] ^= 1 << rng.randrange(8)
        elif kind == "cut":
            bad = bad[: rng.randrange(len(bad))]
        else:
            bad = bytearray(rng.randbytes(rng.randrange(1, len(blob))))
        try:
            load_ciphertext(server_ctx, server_keys.params, bytes(bad), 4096)
            outcomes.add("parsed")  # a flipped coefficient bit: CKKS ciphertexts are malleable
        except MessageError:
            outcomes.add("rejected")
    assert "rejected" in outcomes


def test_oversized_ciphertext(server_ctx, server_keys, blob):
    with pytest.raises(MessageError, match="bound"):
        load_ciphertext(server_ctx, server_keys.params, blob + bytes(server_keys.params.max_ciphertext_bytes), 4096)


def test_wrong_value_count(server_ctx, server_keys, blob):
    with pytest.raises(MessageError, match="4096"):
        load_ciphertext(server_ctx, server_keys.params, blob, 100)


@pytest.mark.parametrize(
    "params", [FL_4096, CkksParams("three-primes", 8192, (60, 40, 40), 40), CkksParams("scale", 8192, (60, 40), 30)]
)
def test_ciphertext_made_under_other_parameters(server_ctx, server_keys, params):
    other = ClientCipher(CkksKeys.generate(params))
    blob = other.encrypt(np.zeros(min(params.slots, 2048)))[0]
    with pytest.raises(MessageError):
        load_ciphertext(server_ctx, server_keys.params, blob, 2048)


def test_mismatched_ciphertext_count(cipher, server_keys):
    total = EncryptedSum(server_keys, 5000)
    with pytest.raises(MessageError, match="expected 2"):
        total.add(cipher.encrypt(np.zeros(100)))
    with pytest.raises(MessageError, match="expected 2"):
        cipher.decrypt(cipher.encrypt(np.zeros(100)), 5000, summands=1)


def test_corruption_is_caught_by_the_digest_before_parsing(keys, blob):
    arrays = ciphertext_arrays(keys.key_id, [blob])
    arrays["he.ct.000000"] = arrays["he.ct.000000"].copy()
    arrays["he.ct.000000"][len(blob) // 2] ^= 1  # undetectable by the ciphertext format itself
    with pytest.raises(MessageError, match="digest"):
        read_ciphertext_arrays(arrays, keys.key_id, 1)


def test_content_from_another_key_is_refused_by_key_id(keys, other_keys, blob):
    arrays = ciphertext_arrays(other_keys.key_id, [blob])
    with pytest.raises(MessageError, match="wrong key"):
        read_ciphertext_arrays(arrays, keys.key_id, 1)


@pytest.mark.parametrize(
    "change",
    [
        lambda a: a.pop("he.ct.000000"),
        lambda a: a.update({"he.ct.000001": a["he.ct.000000"]}),
        lambda a: a.update({"extra": np.zeros(1)}),
        lambda a: a.update({KEY_ID: a[KEY_ID].astype(np.int64)}),
        lambda a: a.update({DIGEST: a[DIGEST][:5]}),
    ],
)
def test_malformed_ciphertext_arrays(keys, blob, change):
    arrays = ciphertext_arrays(keys.key_id, [blob])
    change(arrays)
    with pytest.raises(MessageError):
        read_ciphertext_arrays(arrays, keys.key_id, 1)


@pytest.mark.parametrize(
    "weight", [np.array([0.0]), np.array([np.inf]), np.array([1.0, 2.0]), np.array([1], dtype=np.int64)]
)
def test_encrypted_model_with_a_bad_weight(keys, cipher, weight):
    layout, flat = pack({"w": np.zeros(10, dtype=np.float32)})
    arrays = EncryptedModel(layout, keys.key_id, 3.0, tuple(cipher.encrypt(flat))).to_arrays()
    assert EncryptedModel.from_arrays(arrays, keys.key_id, 4096).weight == 3.0
    arrays[WEIGHT] = weight
    with pytest.raises(MessageError):
        EncryptedModel.from_arrays(arrays, keys.key_id, 4096)


def test_values_beyond_the_headroom_are_refused_before_encryption(cipher):
    with pytest.raises(ConfigError, match="headroom"):
        cipher.encrypt(np.array([np.nextafter(cipher.params.headroom, np.inf)]))
