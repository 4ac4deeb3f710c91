"""Committee mode: joint key, t-of-c decryption, smudging against share recovery, dropouts, the bundled loop."""

from __future__ import annotations

import numpy as np
import pytest

from privfl.audit.ckks import decrypt_with, reconstruct_key, recover_share
from privfl.client.app import ClientApp
from privfl.client.numpy_client import NumPyClient
from privfl.core.exchange import RoundSpec, SamplingInfo
from privfl.errors import ConfigError, MessageError, ProtocolAbort
from privfl.he import (
    FL_8192,
    FL_8192_COMMITTEE,
    CkksClientMod,
    ClientCipher,
    Committee,
    CommitteeConfig,
    CommitteeMemberMod,
    EncryptedSum,
    HEFedAvg,
    combine,
)
from privfl.he.committee import committee_budget
from privfl.he.params import HE_STANDARD_MAX_BITS
from privfl.he.ring import ring
from privfl.server.simulation import run_simulation
from privfl.server.transport import InProcessClients, drive

VALUES = 5000  # two ciphertexts, the second partial


@pytest.fixture(scope="module")
def committee():
    return Committee.generate(CommitteeConfig(members=3, threshold=2))


@pytest.fixture(scope="module")
def aggregate(committee):
    """Three clients' uploads under the joint key, summed by the server: (ciphertexts, plaintext sum, uploads)."""
    cipher = ClientCipher(committee.keys)
    rng = np.random.default_rng(0)
    values = [rng.normal(size=VALUES) for _ in range(3)]
    uploads = [cipher.encrypt(v) for v in values]
    total = EncryptedSum(committee.keys, VALUES)
    for upload in uploads:
        total.add(upload)
    return total.serialize(), sum(values), uploads, values


def test_the_smudging_arithmetic_fits_the_committee_preset_and_not_one_60_bit_prime():
    budget = committee_budget(FL_8192_COMMITTEE, members=3, security=40, max_clients=2**16)
    assert budget["smudging_bits"] == 40 + 13 + 21  # lambda + log2 N + ceil(log2 error bound)
    assert budget["blur_bits"] == -21.0 and budget["correctness_bits"] < budget["modulus_bits"] - 1
    assert sum(FL_8192_COMMITTEE.coeff_mod_bit_sizes) == 180 <= HE_STANDARD_MAX_BITS[8192]
    with pytest.raises(ConfigError, match="does not fit"):
        CommitteeConfig(params=FL_8192)  # one 60-bit data prime at scale 2**40: a blur of 2**39


@pytest.mark.parametrize(
    "kwargs",
    [{"threshold": 4}, {"threshold": 1}, {"members": 1}, {"statistical_security": 30}, {"max_clients": True}],
)
def test_invalid_committee_configurations_are_refused(kwargs):
    with pytest.raises(ConfigError):
        CommitteeConfig(**kwargs)


def test_clients_hold_only_the_joint_public_key(committee):
    assert not committee.keys.has_secret
    with pytest.raises(ConfigError, match="no secret key"):
        ClientCipher(committee.keys).decrypt([b""], 1, summands=1)


@pytest.mark.parametrize("signers", [(1, 2), (1, 3), (2, 3), (1, 2, 3)])
def test_any_t_members_decrypt_the_sum(committee, aggregate, signers):
    cts, expected, _uploads, _values = aggregate
    partials = {i: committee.members[i - 1].partial_decrypt(cts, signers) for i in signers}
    released = combine(committee.config, cts, partials, VALUES, summands=3)
    step = committee.config.release_step(3)
    assert np.max(np.abs(released - expected)) <= step * (0.5 + 2**-7)  # half a step plus the noise bound
    assert np.array_equal(np.rint(released / step) * step, released)


def test_fewer_than_t_members_cannot_decrypt(committee, aggregate):
    cts, _expected, _uploads, _values = aggregate
    member = committee.members[0]
    with pytest.raises(MessageError, match="at least 2"):
        member.partial_decrypt(cts, (1,))
    with pytest.raises(MessageError, match="need partial decryptions from 2"):
        combine(committee.config, cts, {1: member.partial_decrypt(cts, (1, 2))}, VALUES, summands=3)
    for bad in [(2, 3), (1, 1), (1, 9)]:  # not a signer, repeated, unknown
        with pytest.raises(MessageError):
            member.partial_decrypt(cts, bad)


def _key_share(committee, index):
    r = ring(committee.config.params)
    return committee.members[index - 1]._share[: r.k]


def _reconstruct(committee, shares):
    return reconstruct_key(committee.config, shares)


def test_t_shares_reconstruct_the_key_and_t_minus_1_reveal_nothing_usable(committee, aggregate):
    _cts, _expected, uploads, values = aggregate
    params = committee.config.params
    size = params.slots
    target = uploads[0][0]
    full = _reconstruct(committee, {1: _key_share(committee, 1), 3: _key_share(committee, 3)})
    assert np.max(np.abs(decrypt_with(params, full, target) - values[0][:size])) < 1e-6
    # One share (t - 1 = 1), interpolated as if it were the key or with any Lagrange weight: noise.
    for guess in [_key_share(committee, 1), _reconstruct(committee, {1: _key_share(committee, 1)})]:
        assert np.max(np.abs(decrypt_with(params, guess, target) - values[0][:size])) > 1e3


def _share_recovery_attack(committee, cts, partial, index, signers):
    return recover_share(committee.config, cts[0], partial[0], index, signers)


@pytest.mark.parametrize("smudged", [False, True])
def test_smudging_stops_a_server_colluding_with_t_minus_1_members(committee, aggregate, smudged):
    """Server + member 1 (t - 1 = 1) want member 2's share from its partial decryption, then the key."""
    cts, _expected, uploads, values = aggregate
    member = committee.members[1]
    bits = committee.config.smudging_bits if smudged else 0  # 0: the deliberately weakened variant
    partial = member._partial_decrypt(cts[:1], (1, 2), bits)
    stolen = _share_recovery_attack(committee, cts, partial, 2, (1, 2))
    key = _reconstruct(committee, {1: _key_share(committee, 1), 2: stolen})
    error = np.max(
        np.abs(decrypt_with(committee.config.params, key, uploads[1][0]) - values[1][: stolen.shape[1] // 2])
    )
    if smudged:
        assert not np.array_equal(stolen, _key_share(committee, 2)) and error > 1e3  # nothing usable
    else:
        assert np.array_equal(stolen, _key_share(committee, 2)) and error < 1e-6  # the attack works


class _Shift(NumPyClient):
    def __init__(self, node: int) -> None:
        self.node = node

    def fit(self, parameters, config):
        return [p + self.node for p in parameters], 2, {}

    def evaluate(self, parameters, config):
        return 0.0, 1, {}


def _committee_app(committee, failing=()):
    member_mods = {
        node: CommitteeMemberMod(m, committee.keys.key_id) for node, m in zip((1, 2, 3), committee.members, strict=True)
    }

    def app(message, context):
        if context.node_id in failing and message.metadata.stage == "he.decrypt":
            raise RuntimeError("member offline")
        mods = [member_mods[context.node_id]] if context.node_id in member_mods else []
        return ClientApp(_Shift, mods=[*mods, CkksClientMod(committee.keys)])(message, context)

    return app


def _committee_round(committee, failing=()):
    nodes = (1, 2, 3, 4, 5)
    spec = RoundSpec(0, 1, nodes, {"w": np.zeros(10, dtype=np.float32)}, {}, SamplingInfo(5, 1.0, False))
    strategy = HEFedAvg(committee.keys, committee=committee.config, committee_nodes=(1, 2, 3))
    clients = InProcessClients(_committee_app(committee, failing), on_client_error="drop")
    return drive(strategy.fit_round(spec), clients.deliver)


@pytest.mark.parametrize("failing", [(), (1,), (3,)])
def test_a_round_survives_a_member_dropping(committee, failing):
    outcome = _committee_round(committee, failing)
    assert outcome.num_clients == 5
    np.testing.assert_allclose(outcome.parameters["w"], 3.0, atol=1e-3)  # mean of node ids 1..5
    assert outcome.parameters["w"].dtype == np.float32


def test_a_round_aborts_when_fewer_than_t_members_answer(committee):
    with pytest.raises(ProtocolAbort, match="2 needed"):
        _committee_round(committee, failing=(1, 2))


def test_committee_nodes_must_match_the_committee(committee):
    with pytest.raises(ConfigError):
        HEFedAvg(committee.keys, committee=committee.config, committee_nodes=(1, 2))
    with pytest.raises(ConfigError):
        HEFedAvg(committee.keys, committee_nodes=(1, 2, 3))


@pytest.mark.slow
def test_committee_fedavg_in_the_bundled_loop_matches_plain_fedavg(committee):
    from privfl.tasks.digits import DigitsFederation, initial_parameters

    fed = DigitsFederation(num_clients=6, seed=0)
    members = {node: CommitteeMemberMod(m, committee.keys.key_id) for node, m in zip((1, 2, 3), committee.members)}

    def app(message, context):
        extra = [members[context.node_id]] if context.node_id in members else []
        return ClientApp(fed, mods=[*extra, CkksClientMod(committee.keys)])(message, context)

    common = {"num_clients": 6, "num_rounds": 3, "initial_parameters": initial_parameters(), "seed": 1}
    plain = run_simulation(ClientApp(fed), progress=False, **common)
    strategy = HEFedAvg(committee.keys, committee=committee.config, committee_nodes=(1, 2, 3))
    result = run_simulation(app, strategy=strategy, progress=False, **common)
    assert [r.status for r in result.history.rounds] == ["ok"] * 3
    accuracy = fed.evaluate(3, result.parameters)["accuracy"]
    assert accuracy == pytest.approx(fed.evaluate(3, plain.parameters)["accuracy"], abs=0.02)


def test_a_ciphertext_under_another_key_with_the_right_id_aborts_only_its_round(committee):
    """Undetectable at the server; the committee's combination sees the garbled sum (beyond the headroom)."""
    from privfl.he import FL_8192_COMMITTEE, CkksKeys
    from privfl.he.codec import ciphertext_arrays

    foreign = ClientCipher(CkksKeys.generate(FL_8192_COMMITTEE).public())
    app = _committee_app(committee)

    def hostile(message, context):
        reply = app(message, context)
        if context.node_id == 5 and message.metadata.stage == "":
            cts = foreign.encrypt(np.full(10, 7.0))  # another key, labelled with the committee's key id
            return reply.replace(arrays=ciphertext_arrays(committee.keys.key_id, cts))
        return reply

    nodes = (1, 2, 3, 4, 5)
    initial = {"w": np.zeros(10, dtype=np.float32)}
    strategy = HEFedAvg(committee.keys, committee=committee.config, committee_nodes=(1, 2, 3))
    spec = RoundSpec(0, 1, nodes, initial, {}, SamplingInfo(5, 1.0, False))
    with pytest.raises(ProtocolAbort, match="headroom"):
        drive(strategy.fit_round(spec), InProcessClients(hostile, on_client_error="drop").deliver)
    # The loop keeps the model of an aborted round; the next round, without the hostile upload, succeeds.
    outcome = drive(
        strategy.fit_round(RoundSpec(0, 2, nodes[:4], initial, {}, SamplingInfo(5, 0.8, False))),
        InProcessClients(app, on_client_error="drop").deliver,
    )
    np.testing.assert_allclose(outcome.parameters["w"], 2.5, atol=1e-3)
