"""CKKS aggregation in the bundled loop on the digits task."""

from __future__ import annotations

import numpy as np
import pytest
import sklearn  # noqa: F401

from privfl.client.app import ClientApp
from privfl.he import CkksClientMod, ClientCipher, HEFedAvg, decrypt_model
from privfl.server.simulation import run_simulation
from privfl.tasks.digits import DigitsFederation, initial_parameters

FED = DigitsFederation(num_clients=10, seed=0)
ROUNDS = 3


def _run(mods=(), strategy=None, **kwargs):
    return run_simulation(
        ClientApp(FED, mods=list(mods)),
        num_clients=FED.num_clients,
        num_rounds=ROUNDS,
        initial_parameters=initial_parameters(),
        strategy=strategy,
        seed=3,
        progress=False,
        **kwargs,
    )


@pytest.fixture(scope="module")
def plain():
    return _run()


@pytest.mark.parametrize("which", ["default", "seeded"])
def test_encrypted_fedavg_matches_plain_fedavg(plain, keys, seeded_keys, which):
    secret = keys if which == "default" else seeded_keys
    result = _run([CkksClientMod(secret)], HEFedAvg(secret.public()), evaluate_fraction=0.5)
    assert [r.status for r in result.history.rounds] == ["ok"] * ROUNDS
    model = decrypt_model(result.parameters, ClientCipher(secret))
    for name, value in plain.parameters.items():
        np.testing.assert_allclose(model[name], value, atol=1e-5)
    accuracy = FED.evaluate(ROUNDS, model)["accuracy"]
    assert accuracy == pytest.approx(FED.evaluate(ROUNDS, plain.parameters)["accuracy"], abs=0.01)
    assert accuracy > 0.7
    assert result.history.last("evaluate", "accuracy") > 0.6  # federated evaluation on decrypted models
    # Traffic is counted by the loop: one 650-value model fits in one ciphertext per client.
    per_client = secret.params.slots * 4 * (4.0 if which == "seeded" else 8.0)
    for record in result.history.rounds:
        assert 0.95 * per_client < record.bytes_up / FED.num_clients < 1.05 * per_client


def test_a_client_with_a_foreign_key_is_a_dropout_and_the_round_completes(keys, other_keys):
    def app(message, context):
        secret = other_keys if context.node_id == 4 else keys
        return ClientApp(FED, mods=[CkksClientMod(secret)])(message, context)

    result = run_simulation(
        app,
        num_clients=FED.num_clients,
        num_rounds=1,
        initial_parameters=initial_parameters(),
        strategy=HEFedAvg(keys.public()),
        seed=3,
        progress=False,
    )
    (record,) = result.history.rounds
    assert record.status == "ok" and record.num_clients == record.num_sampled - 1
    model = decrypt_model(result.parameters, ClientCipher(keys))
    assert set(model) == set(initial_parameters())


@pytest.mark.slow
def test_encrypted_fedavg_with_client_processes(plain, keys):
    result = _run([CkksClientMod(keys)], HEFedAvg(keys.public()), workers=2)
    model = decrypt_model(result.parameters, ClientCipher(keys))
    np.testing.assert_allclose(model["weight"], plain.parameters["weight"], atol=1e-5)


def test_a_resumed_run_continues_from_the_checkpointed_encrypted_model(plain, keys, tmp_path):
    checkpoint = tmp_path / "he.ckpt"
    strategy = HEFedAvg(keys.public())
    first = run_simulation(
        ClientApp(FED, mods=[CkksClientMod(keys)]),
        num_clients=FED.num_clients,
        num_rounds=ROUNDS - 1,
        initial_parameters=initial_parameters(),
        strategy=strategy,
        seed=3,
        progress=False,
        checkpoint=checkpoint,
    )
    assert len(first.history.rounds) == ROUNDS - 1
    resumed = _run([CkksClientMod(keys)], HEFedAvg(keys.public()), checkpoint=checkpoint)
    assert len(resumed.history.rounds) == ROUNDS
    model = decrypt_model(resumed.parameters, ClientCipher(keys))
    np.testing.assert_allclose(model["weight"], plain.parameters["weight"], atol=1e-5)


def test_dp_mods_inside_the_ckks_mod_see_plaintext(keys):
    """HE outermost, DP inside: clipping gives the same model as plain FedAvg with clipping; local DP runs."""
    from privfl.dp.client_mods import FixedClippingMod, LocalDpMod

    clip = FixedClippingMod(clip_norm=0.5)
    clipped_plain = _run([clip])
    clipped_he = _run([CkksClientMod(keys), clip], HEFedAvg(keys.public()))
    model = decrypt_model(clipped_he.parameters, ClientCipher(keys))
    for name, value in clipped_plain.parameters.items():
        np.testing.assert_allclose(model[name], value, atol=1e-5)
    local = _run([CkksClientMod(keys), LocalDpMod(clip_norm=0.5, epsilon=8.0, delta=1e-5)], HEFedAvg(keys.public()))
    assert [r.status for r in local.history.rounds] == ["ok"] * ROUNDS
    noisy = decrypt_model(local.parameters, ClientCipher(keys))
    assert not np.allclose(noisy["weight"], model["weight"], atol=1e-3)  # the noise is there
