"""Streaming encrypted sum: error against plaintext FedAvg, rollback, seeded uploads."""

from __future__ import annotations

import numpy as np
import pytest

from privfl.errors import MessageError
from privfl.he import ClientCipher, EncryptedSum, load_ciphertext
from privfl.he.release import release_step

NUM_VALUES = 6000  # two ciphertexts, the second partial


def _federated_average(keys, server_keys, rng, num_clients):
    """(decrypted weighted mean, plaintext weighted mean) of random client models."""
    cipher = ClientCipher(keys)
    total = EncryptedSum(server_keys, NUM_VALUES)
    models = [rng.normal(0, 1, NUM_VALUES) for _ in range(num_clients)]
    weights = rng.integers(10, 500, num_clients)
    for model, weight in zip(models, weights, strict=True):
        total.add(cipher.encrypt(weight * model))
    assert total.count == num_clients
    exact = cipher._decrypt_exact(total.serialize(), NUM_VALUES) / weights.sum()
    released = cipher.decrypt(total.serialize(), NUM_VALUES, summands=num_clients)
    return exact, released, np.average(models, axis=0, weights=weights), weights.sum()


@pytest.mark.parametrize("seeded", [False, True])
def test_decrypted_average_matches_plaintext_fedavg(keys, server_keys, seeded_keys, seeded):
    if seeded:
        keys, server_keys = seeded_keys, seeded_keys.public()
    exact, released, expected, weight = _federated_average(keys, server_keys, np.random.default_rng(0), 8)
    # Measured ~2e-11 (public-key) and ~3e-12 (seeded symmetric); float32 resolution near 1 is 6e-8.
    assert np.max(np.abs(exact - expected)) < 1e-9
    # The released values sit on the grid, within half a step of the plaintext.
    step = release_step(keys.params, 8)
    assert np.max(np.abs(released / weight - expected)) <= step / 2 / weight + 1e-12
    assert np.array_equal(np.rint(released / step) * step, released)


def test_a_rejected_client_leaves_the_sum_bit_for_bit_unchanged(cipher, server_keys):
    rng = np.random.default_rng(1)
    total = EncryptedSum(server_keys, NUM_VALUES)
    first = rng.normal(size=NUM_VALUES)
    total.add(cipher.encrypt(first))
    total.add(cipher.encrypt(first))
    before = total.serialize()
    bad = cipher.encrypt(rng.normal(size=NUM_VALUES))
    bad[1] = bad[1][: len(bad[1]) // 2]  # the first ciphertext is added before the second fails
    with pytest.raises(MessageError):
        total.add(bad)
    assert total.serialize() == before and total.count == 2
    np.testing.assert_allclose(cipher.decrypt(before, NUM_VALUES, summands=2), 2 * first, atol=1e-3)


def test_seeded_uploads_are_half_size_and_below_4_5x_float32(keys, seeded_keys):
    values = np.random.default_rng(2).normal(size=seeded_keys.params.slots)
    plain_bytes = values.size * 4
    default = len(ClientCipher(keys).encrypt(values)[0])
    seeded = len(ClientCipher(seeded_keys).encrypt(values)[0])
    assert default / plain_bytes <= 8.1
    assert seeded / plain_bytes <= 4.5
    assert 0.45 < seeded / default < 0.55


def test_a_ciphertext_from_another_key_decrypts_to_garbage(keys, other_keys):
    """Why key ids are checked: nothing in the ciphertext itself reveals the wrong key."""
    values = np.linspace(-1, 1, 100)
    blob = ClientCipher(other_keys).encrypt(values)[0]
    vector = load_ciphertext(keys.load(), keys.params, blob, values.size)  # parses without complaint
    assert np.max(np.abs(np.array(vector.decrypt()) - values)) > 1e3
