"""SecAgg+ against an actively malicious server (issue 11).

Each attack (privfl.audit.secagg_attacks) first breaks a deliberately weakened client
(semi-honest mode, or one check removed), then meets the real client, which refuses
with a typed error and keeps its secrets.
"""

from __future__ import annotations

import numpy as np
import pytest
from secagg_helpers import finish, run_to

from privfl.audit import secagg_attacks as attacks
from privfl.core.context import Context
from privfl.errors import AuthenticationError, ConfigError, ProtocolError
from privfl.secagg import Federation, Roster, SecAggConfig, SecAggPlusAggregator, SignedRoster
from privfl.secagg import protocol as p
from privfl.secagg.client import STATE_KEY, Phase

REFUSALS = {
    "split view across owners": {"AuthenticationError"},
    "key substitution": {"AuthenticationError"},
    "k/t downgrade": {"ProtocolAbort"},
    "colluders placed by the server": {"AuthenticationError"},
    "model inconsistency": {"AuthenticationError"},
    "query pass-through": {"ProtocolError"},
}


@pytest.mark.parametrize("name", list(attacks.ATTACKS))
def test_attack_breaks_the_weakened_client_and_the_real_one_refuses(name: str) -> None:
    attack = attacks.ATTACKS[name]
    weak = attack(False)
    assert weak.succeeded, f"the attack must work on the weakened variant: {weak.detail}"
    real = attack(True)
    assert not real.succeeded, real.detail
    assert real.refusals and {r.error for r in real.refusals} == REFUSALS[name]


def test_split_view_reveals_no_share_of_the_victims_seed_or_its_partners_keys() -> None:
    outcome = attacks.split_view(True)
    assert outcome.detail.startswith("0 of t = 5 shares of v's seed")
    refused = {r.node for r in outcome.refusals if r.stage == p.STAGE_UNMASK}
    assert attacks.VICTIM in refused and len(refused) >= 8


def test_different_survivor_sets_make_every_shown_client_refuse(make_harness) -> None:
    """Two halves shown two sets: no client collects t tags on its own set, nothing is revealed."""
    h = make_harness(8, 4, SecAggConfig(coordinate_bound=2.0, num_neighbours=6, threshold=4))
    exchange = h.exchange()
    outbox = run_to(exchange, h.deliver, p.STAGE_CONSISTENCY)
    everyone = [int(v) for v in outbox[0].arrays[p.SURVIVORS]]
    sets = {u: everyone if u % 2 else [v for v in everyone if v != 3 or v == u] for u in everyone}
    tampered = [m.replace(arrays={p.SURVIVORS: p.node_array(sets[m.metadata.dst_node])}) for m in outbox]
    replies = list(h.deliver(tampered))
    inbox: dict[int, dict[int, bytes]] = {}
    for reply in replies:
        for receiver, row in zip(reply.arrays[p.NODES], reply.arrays[p.TAGS], strict=True):
            inbox.setdefault(int(receiver), {})[reply.metadata.src_node] = row.tobytes()
    # The server forwards to each client every tag addressed to it by a partner in the set it was shown.
    for request in tampered:
        node = request.metadata.dst_node
        partners = set(h.contexts[node].state[STATE_KEY].partners) & set(sets[node])
        senders = sorted(u for u in inbox.get(node, {}) if u in partners)
        arrays = {p.NODES: p.node_array(senders), p.TAGS: p.byte_rows([inbox[node][u] for u in senders], 32)}
        with pytest.raises(AuthenticationError, match="attested the survivor set"):
            h.send(request.with_stage(p.STAGE_UNMASK).replace(arrays=arrays))
        state = h.contexts[node].state[STATE_KEY]
        assert state.held_shares == {} and state.tag_keys == {} and state.phase is Phase.IDLE


def test_insecure_parameters_are_refused_by_the_server_too() -> None:
    federation = Federation.generate(range(1, 21), corruption=0.1)
    config = SecAggConfig(num_neighbours=4, threshold=3, corruption=0.1)
    aggregator = SecAggPlusAggregator(config, roster=federation.roster)
    from privfl.core.exchange import RoundSpec, SamplingInfo

    spec = RoundSpec(1, 1, tuple(range(1, 21)), {"w": np.zeros(3)}, {}, SamplingInfo(20, 1.0, False))
    with pytest.raises(ConfigError, match="security failure probability"):
        next(aggregator.aggregate(spec))


def test_a_roster_not_signed_by_the_pinned_operator_is_refused(make_harness) -> None:
    h = make_harness(5)
    message = next(h.exchange())[0]
    forger = Federation.generate(range(1, 6), corruption=0.0)  # the server's own operator key and node keys
    forged = forger.roster
    config = {**message.config, p.ROSTER: forged.body, p.ROSTER_SIGNATURE: forged.signature}
    with pytest.raises(AuthenticationError, match="roster: invalid signature"):
        h.send(message.replace(config=config))
    # A roster that drops the victim's real key for the server's: same failure (the body is signed).
    real = h.federation.roster.roster
    swapped = Roster({**real.keys, 2: forger.nodes[2].public}, real.corruption, real.security_bits)
    tampered = SignedRoster(swapped.canonical(), h.federation.roster.signature)
    config = {**message.config, p.ROSTER: tampered.body, p.ROSTER_SIGNATURE: tampered.signature}
    with pytest.raises(AuthenticationError):
        h.mod(message.replace(config=config), Context(node_id=message.metadata.dst_node), lambda m, c: m)


def test_semi_honest_mode_is_explicit_and_says_so_in_metrics(make_harness) -> None:
    with pytest.raises(ConfigError, match="choose the SecAgg\\+ trust model"):
        SecAggPlusAggregator(SecAggConfig())
    h = make_harness(6, 3, active=False)
    exchange = SecAggPlusAggregator(h.config, semi_honest=True).aggregate(h.spec())
    aggregate = finish(exchange, h.deliver, next(exchange))
    assert aggregate.metrics["secagg.active_server"] == 0.0


@pytest.mark.parametrize("active", [True, False])
def test_a_client_rebuilt_from_its_secret_state_at_every_stage_finishes_identically(make_harness, active) -> None:
    """Flower's deployment runtime: each message may reach a fresh process holding only the sealed state."""
    h = make_harness(6, 5, active=active)
    exchange = h.exchange()

    def deliver(outbox):
        for message in outbox:
            node = message.metadata.dst_node
            saved = h.contexts[node].state.get(STATE_KEY)
            if saved is not None:  # rebuild the client: a new context loading the secret state dict
                fresh = Context(node_id=node)
                state = fresh.get_or_create(STATE_KEY, type(saved))
                state.load_secret_state_dict(_json_round_trip(saved.secret_state_dict()))
                h.contexts[node] = fresh
            yield h.send(message)

    result = finish(exchange, deliver, next(exchange))
    assert result.survivors == h.nodes
    assert np.array_equal(result.total, h.expected_total(result))


def _json_round_trip(state: dict) -> dict:
    """What a runtime stores: JSON with bytes as hex and arrays as (dtype, shape, hex); decoded back."""
    import json

    def enc(value):
        if isinstance(value, bytes):
            return {"$b": value.hex()}
        if isinstance(value, np.ndarray):
            return {"$a": [value.dtype.str, list(value.shape), value.tobytes().hex()]}
        if isinstance(value, dict):
            return {k: enc(v) for k, v in value.items()}
        if isinstance(value, list):
            return [enc(v) for v in value]
        return value

    def dec(value):
        if isinstance(value, dict) and set(value) == {"$b"}:
            return bytes.fromhex(value["$b"])
        if isinstance(value, dict) and set(value) == {"$a"}:
            dtype, shape, data = value["$a"]
            return np.frombuffer(bytes.fromhex(data), dtype=dtype).reshape(shape)
        if isinstance(value, dict):
            return {k: dec(v) for k, v in value.items()}
        if isinstance(value, list):
            return [dec(v) for v in value]
        return value

    return dec(json.loads(json.dumps(enc(state))))


def test_a_corrupt_secret_state_is_refused_and_leaves_nothing() -> None:
    from privfl.errors import MessageError
    from privfl.secagg import SecAggClientState

    state = SecAggClientState()
    with pytest.raises(MessageError):
        state.load_secret_state_dict({"phase": "masked"})
    assert state.phase is Phase.IDLE and state.held_shares == {}


def test_an_abort_on_a_lying_consistency_stage_names_the_reason(make_harness) -> None:
    h = make_harness(6, 3)
    exchange = h.exchange()
    outbox = run_to(exchange, h.deliver, p.STAGE_CONSISTENCY)
    message = outbox[0]
    without_self = [v for v in message.arrays[p.SURVIVORS].tolist() if v != message.metadata.dst_node]
    with pytest.raises(Exception, match="include this client"):
        h.send(message.replace(arrays={p.SURVIVORS: p.node_array(without_self)}))
    with pytest.raises(ProtocolError):  # the round was abandoned: even the genuine request is out of order now
        h.send(message)


def test_the_roster_is_the_one_source_of_the_corruption_bound() -> None:
    federation = Federation.generate(range(1, 11), corruption=0.1)
    with pytest.raises(ConfigError, match=r"roster the clients pin says 0\.1"):
        SecAggPlusAggregator(SecAggConfig(corruption=0.05), roster=federation.roster)
    SecAggPlusAggregator(SecAggConfig(corruption=0.1), roster=federation.roster)  # matching: accepted
