"""Safe release: Li and Micciancio's key recovery succeeds on exact decryptions and fails on released ones."""

from __future__ import annotations

import numpy as np
import pytest

from privfl.audit.ckks import decrypt_with, recover_secret_key, secret_key_ntt
from privfl.he import FL_8192, EncryptedModel, PackLayout, decrypt_model, unpack
from privfl.he.release import release_step, round_release


@pytest.fixture(scope="module")
def blobs(cipher):
    rng = np.random.default_rng(0)
    return [cipher.encrypt(rng.normal(size=cipher.params.slots))[0] for _ in range(3)]


def test_the_attack_recovers_the_key_from_exact_decryptions(keys, cipher, blobs):
    """The unprotected path (deliberately weakened: exact decryptions) gives the whole key away."""
    exact = [cipher._decrypt_exact([b], cipher.params.slots) for b in blobs[:2]]
    recovered = recover_secret_key(keys.params, blobs[:2], exact)
    assert np.array_equal(recovered, secret_key_ntt(keys))
    # ... with which any other ciphertext (another client's upload) decrypts.
    other = cipher._decrypt_exact([blobs[2]], cipher.params.slots)
    assert np.max(np.abs(decrypt_with(keys.params, recovered, blobs[2]) - other)) < 1e-6


def test_the_attack_works_on_float32_models_with_a_zero_block(keys, cipher):
    """Pruned weights: a cast to float32 keeps the tiny decryption error of a zero."""
    zeros = [cipher.encrypt(np.zeros(cipher.params.slots))[0] for _ in range(2)]
    cast = [cipher._decrypt_exact([b], cipher.params.slots).astype(np.float32).astype(np.float64) for b in zeros]
    assert np.array_equal(recover_secret_key(keys.params, zeros, cast), secret_key_ntt(keys))


def test_the_attack_fails_on_released_values(keys, cipher, blobs):
    slots = cipher.params.slots
    released = [cipher.decrypt([b], slots, summands=1) for b in blobs[:2]]
    recovered = recover_secret_key(keys.params, blobs[:2], released)
    assert not np.array_equal(recovered, secret_key_ntt(keys))
    other = cipher._decrypt_exact([blobs[2]], slots)
    assert np.max(np.abs(decrypt_with(keys.params, recovered, blobs[2]) - other)) > 1e3  # garbage


def test_released_zero_blocks_are_exactly_zero_and_reveal_nothing(keys, cipher):
    zeros = [cipher.encrypt(np.zeros(cipher.params.slots))[0] for _ in range(2)]
    released = [cipher.decrypt([b], cipher.params.slots, summands=1) for b in zeros]
    assert all(np.all(r == 0.0) for r in released)
    assert not np.array_equal(recover_secret_key(keys.params, zeros, released), secret_key_ntt(keys))


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16, np.int32])
def test_decrypt_model_releases_rounded_values_for_every_dtype(keys, cipher, dtype):
    """The public path: every released model value is the rounded sum over the weight, then cast."""
    values = np.random.default_rng(1).normal(0, 10, cipher.params.slots)
    layout = PackLayout.of({"w": values.astype(dtype)})
    weight = 3.0
    model = EncryptedModel(layout, keys.key_id, weight, tuple(cipher.encrypt(weight * values)))
    out = decrypt_model(model.to_arrays(), cipher)["w"]
    step = release_step(keys.params, 3)
    exact = cipher._decrypt_exact(list(model.ciphertexts), values.size)
    np.testing.assert_array_equal(out, unpack(layout, round_release(exact, step) / weight)["w"])
    assert out.dtype == dtype
    cast = values.astype(dtype)
    resolution = 1.0 if dtype == np.int32 else float(np.max(np.abs(np.spacing(cast))))
    assert np.max(np.abs(out.astype(np.float64) - cast.astype(np.float64))) <= step / weight + resolution


def test_release_step_grows_with_the_summands_and_sits_above_the_measured_error(cipher):
    assert release_step(FL_8192, 1) < release_step(FL_8192, 100) < release_step(FL_8192, 10**5)
    rng = np.random.default_rng(2)
    values = rng.normal(size=cipher.params.slots)
    error = np.max(np.abs(cipher._decrypt_exact(cipher.encrypt(values), values.size) - values))
    assert error * 2**6 < release_step(FL_8192, 1)  # measured ~1e-8 against a 2**-14 step


def test_a_sum_beyond_the_headroom_is_refused_at_decryption(keys, other_keys, cipher):
    """A ciphertext under another key (labelled with the right id) garbles the sum: refused, typed."""
    from privfl.errors import MessageError
    from privfl.he import ClientCipher, EncryptedSum

    total = EncryptedSum(keys.public(), cipher.params.slots)
    total.add(cipher.encrypt(np.ones(cipher.params.slots)))
    total.add(ClientCipher(other_keys).encrypt(np.ones(cipher.params.slots)))  # undetectable here
    with pytest.raises(MessageError, match="headroom"):
        cipher.decrypt(total.serialize(), cipher.params.slots, summands=2)
