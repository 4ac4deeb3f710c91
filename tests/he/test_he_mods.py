"""The client mod and HEFedAvg message by message: what each side sees, dropouts, bad replies, mod order."""

from __future__ import annotations

import numpy as np
import pytest

from privfl.client.app import ClientApp
from privfl.client.numpy_client import NumPyClient
from privfl.core.exchange import RoundSpec, SamplingInfo
from privfl.core.message import MessageKind
from privfl.errors import ConfigError, MessageError, ProtocolAbort
from privfl.he import CkksClientMod, ClientCipher, HEFedAvg, decrypt_model
from privfl.server.transport import ClientError, InProcessClients, drive

INITIAL = {"w": np.zeros((3, 4), dtype=np.float32), "b": np.zeros(2, dtype=np.float32)}
NODES = (1, 2, 3)


class ShiftClient(NumPyClient):
    """Adds its node id to every parameter; trains on ``10 * node`` examples."""

    def __init__(self, node: int) -> None:
        self.node = node

    def fit(self, parameters, config):
        return [p + self.node for p in parameters], 10 * self.node, {"seen_round": config["server_round"]}

    def evaluate(self, parameters, config):
        return float(sum(p.sum() for p in parameters)), 1, {}


def _spec(parameters, server_round=1, kind=MessageKind.TRAIN):
    return RoundSpec(0, server_round, NODES, parameters, {}, SamplingInfo(3, 1.0, False), kind)


def _expected_mean(previous):
    weights = np.array([10.0 * n for n in NODES])
    return {
        k: sum(w * (v + n) for w, n in zip(weights, NODES, strict=True)) / weights.sum() for k, v in previous.items()
    }


def _round(strategy, clients, parameters, server_round):
    return drive(strategy.fit_round(_spec(parameters, server_round)), clients.deliver)


def test_two_rounds_of_encrypted_fedavg(keys, server_keys, cipher):
    clients = InProcessClients(ClientApp(ShiftClient, mods=[CkksClientMod(keys)]))
    strategy = HEFedAvg(server_keys)
    first = _round(strategy, clients, INITIAL, 1)
    assert all(name.startswith("he.") for name in first.parameters)  # the server holds no plaintext model
    assert first.num_clients == 3 and first.metrics["num_examples"] == 60
    model = decrypt_model(first.parameters, cipher)
    for name, value in _expected_mean(INITIAL).items():
        assert model[name].dtype == np.float32
        np.testing.assert_allclose(model[name], value, atol=1e-6)
    second = _round(strategy, clients, first.parameters, 2)  # clients decrypt on the way in
    again = decrypt_model(second.parameters, cipher)
    for name, value in _expected_mean(model).items():
        np.testing.assert_allclose(again[name], value, atol=1e-6)


def test_replies_carry_only_ciphertexts(keys, server_keys):
    clients = InProcessClients(ClientApp(ShiftClient, mods=[CkksClientMod(keys)]))
    exchange = HEFedAvg(server_keys).fit_round(_spec(INITIAL))
    replies = list(clients.deliver(next(exchange)))
    assert len(replies) == 3
    for reply in replies:
        assert set(reply.arrays) == {"he.key_id", "he.digest", "he.ct.000000"}
        assert reply.arrays["he.ct.000000"].dtype == np.uint8


def test_dropouts_are_left_out_of_the_weight(keys, server_keys, cipher):
    clients = InProcessClients(ClientApp(ShiftClient, mods=[CkksClientMod(keys)]))
    outcome = drive(HEFedAvg(server_keys).fit_round(_spec(INITIAL)), lambda out: clients.deliver(out[:2]))
    assert outcome.num_clients == 2 and outcome.dropped == (3,)
    model = decrypt_model(outcome.parameters, cipher)
    np.testing.assert_allclose(model["w"], (10 * 1 + 20 * 2) / 30, atol=1e-6)


def test_a_client_under_another_key_is_a_recorded_dropout(keys, server_keys, other_keys):
    def app(message, context):
        mods = [CkksClientMod(other_keys if context.node_id == 2 else keys)]
        return ClientApp(ShiftClient, mods=mods)(message, context)

    outcome = _round(HEFedAvg(server_keys), InProcessClients(app), INITIAL, 1)
    (rejection,) = outcome.rejected
    assert rejection.node == 2 and rejection.stage == "" and "key" in rejection.reason
    assert outcome.dropped == (2,) and outcome.num_clients == len(NODES) - 1


def test_a_model_under_another_key_is_refused_by_the_client(keys, server_keys, other_keys):
    model = _round(
        HEFedAvg(server_keys), InProcessClients(ClientApp(ShiftClient, mods=[CkksClientMod(keys)])), INITIAL, 1
    )
    with pytest.raises(MessageError, match="key"):
        decrypt_model(model.parameters, ClientCipher(other_keys))


def test_federated_evaluation_decrypts_the_model(keys, server_keys):
    clients = InProcessClients(ClientApp(ShiftClient, mods=[CkksClientMod(keys)]))
    strategy = HEFedAvg(server_keys)
    model = _round(strategy, clients, INITIAL, 1).parameters
    metrics = drive(strategy.evaluate_round(_spec(model, kind=MessageKind.EVALUATE)), clients.deliver)
    expected = sum(v.sum() for v in _expected_mean(INITIAL).values())
    assert metrics["loss"] == pytest.approx(expected, rel=1e-6)


def test_the_mod_is_outermost_inner_mods_see_plaintext(keys, server_keys, cipher):
    seen = []

    def spy(message, context, call_next):
        seen.append(dict(message.arrays))
        reply = call_next(message, context)
        seen.append(dict(reply.arrays))
        return reply

    clients = InProcessClients(ClientApp(ShiftClient, mods=[CkksClientMod(keys), spy]))
    strategy = HEFedAvg(server_keys)
    model = _round(strategy, clients, INITIAL, 1).parameters
    seen.clear()
    _round(strategy, clients, model, 2)
    plain = decrypt_model(model, cipher)
    assert list(seen[0]) == ["w", "b"]
    np.testing.assert_allclose(seen[0]["w"], plain["w"])
    np.testing.assert_allclose(seen[1]["w"], plain["w"] + 1)


def test_a_reply_that_changes_the_layout_is_refused(keys):
    class Reshaper(ShiftClient):
        def fit(self, parameters, config):
            return [p.ravel() for p in parameters], 1, {}

    app = ClientApp(Reshaper, mods=[CkksClientMod(keys)])
    clients = InProcessClients(app)
    with pytest.raises(ClientError, match="shape"):
        list(clients.deliver([_spec(INITIAL).message_to(1, config={"he.num_clients": 1})]))


def test_a_weighted_update_beyond_the_headroom_is_refused_by_the_client(keys):
    big = {"w": np.full(2, 2.0**15, dtype=np.float32)}  # times 30 examples exceeds 2**19 / 1 client
    app = ClientApp(ShiftClient, mods=[CkksClientMod(keys)])
    message = _spec(big).message_to(3, config={"he.num_clients": 1})
    with pytest.raises(ConfigError, match="headroom"):
        app(message, InProcessClients(app).context(3))


@pytest.mark.parametrize("config", [{}, {"he.num_clients": 0}, {"he.num_clients": "3"}])
def test_a_training_task_without_a_valid_client_count_is_refused(keys, config):
    app = ClientApp(ShiftClient, mods=[CkksClientMod(keys)])
    message = _spec(INITIAL).message_to(1, config=config)
    with pytest.raises(MessageError, match=r"he\.num_clients"):
        app(message, InProcessClients(app).context(1))


def test_a_foreign_ciphertext_with_the_right_key_id_is_refused_by_the_next_round_clients(keys, server_keys, other_keys):
    """Shared-key mode: the server cannot tell; next round's clients refuse the garbled model, typed."""
    from privfl.he.codec import ciphertext_arrays

    honest = ClientApp(ShiftClient, mods=[CkksClientMod(keys)])

    def app(message, context):
        reply = honest(message, context)
        if context.node_id == 3 and message.metadata.server_round == 1:
            cts = ClientCipher(other_keys).encrypt(np.ones(14))  # other key, right key id
            return reply.replace(arrays=ciphertext_arrays(keys.key_id, cts))
        return reply

    strategy = HEFedAvg(server_keys)
    first = _round(strategy, InProcessClients(app), INITIAL, 1)
    assert first.num_clients == 3 and not first.rejected  # undetectable by the server
    with pytest.raises(MessageError, match="headroom"):
        decrypt_model(first.parameters, ClientCipher(keys))
    with pytest.raises(ProtocolAbort):  # every client refuses the model: a recorded abort, not a crash
        _round(strategy, InProcessClients(app, on_client_error="drop"), first.parameters, 2)
