"""The SecAgg+ client state machine: transition table, mod behaviour, checks on server requests."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from secagg_helpers import run_to

from privfl.core.context import Context
from privfl.core.message import Message, MessageKind, Metadata
from privfl.errors import ConfigError, MessageError, ProtocolAbort, ProtocolError
from privfl.secagg import SecAggConfig, SecAggMod
from privfl.secagg import protocol as p
from privfl.secagg.client import STATE_KEY, Phase, SecAggClientState, next_phase

EXPECTED = {
    (Phase.IDLE, p.STAGE_SETUP): Phase.ADVERTISED,
    (Phase.ADVERTISED, p.STAGE_SETUP): Phase.ADVERTISED,
    (Phase.ADVERTISED, p.STAGE_SHARE_KEYS): Phase.SHARED,
    (Phase.SHARED, p.STAGE_SETUP): Phase.ADVERTISED,
    (Phase.SHARED, p.STAGE_MASKED_INPUT): Phase.MASKED,
    (Phase.MASKED, p.STAGE_SETUP): Phase.ADVERTISED,
    (Phase.MASKED, p.STAGE_CONSISTENCY): Phase.CONFIRMED,
    (Phase.MASKED, p.STAGE_UNMASK): Phase.UNMASKED,
    (Phase.CONFIRMED, p.STAGE_SETUP): Phase.ADVERTISED,
    (Phase.CONFIRMED, p.STAGE_CONSISTENCY): Phase.CONFIRMED,
    (Phase.CONFIRMED, p.STAGE_UNMASK): Phase.UNMASKED,
    (Phase.UNMASKED, p.STAGE_SETUP): Phase.ADVERTISED,
    (Phase.UNMASKED, p.STAGE_UNMASK): Phase.UNMASKED,
}
NOT_IN_MODE = {
    p.ACTIVE: {(Phase.MASKED, p.STAGE_UNMASK)},  # unmasking needs the consistency round first
    p.SEMI_HONEST: {(ph, p.STAGE_CONSISTENCY) for ph in Phase},
}


@pytest.mark.parametrize("mode", p.TRUST_MODES)
@pytest.mark.parametrize(("phase", "stage"), list(itertools.product(Phase, [*p.STAGES, "", "secagg.other"])))
def test_transition_table_every_pair(phase: Phase, stage: str, mode: str) -> None:
    if (phase, stage) in EXPECTED and (phase, stage) not in NOT_IN_MODE[mode]:
        assert next_phase(phase, stage, mode) is EXPECTED[(phase, stage)]
    else:
        with pytest.raises(ProtocolError):
            next_phase(phase, stage, mode)


def bare(stage: str, node: int, server_round: int = 1, run_id: int = 7) -> Message:
    return Message(Metadata(run_id, server_round, 0, node, MessageKind.TRAIN, stage))


@pytest.mark.parametrize("active", [True, False])
def test_out_of_order_stages_are_refused_in_every_live_phase(make_harness, active: bool) -> None:
    h = make_harness(5, active=active)
    exchange = h.exchange()
    state = lambda: h.contexts[1].state.get(STATE_KEY)  # noqa: E731
    outbox = next(exchange)
    stages = [st for st in p.STAGES if active or st != p.STAGE_CONSISTENCY]
    phases_seen = []
    for stage in stages:
        assert outbox[0].metadata.stage == stage
        phase = state().phase if state() else Phase.IDLE
        phases_seen.append(phase)
        for wrong in p.STAGES:
            if wrong != stage and wrong != p.STAGE_SETUP and (phase, wrong) != (Phase.CONFIRMED, p.STAGE_CONSISTENCY):
                with pytest.raises(ProtocolError):
                    h.send(bare(wrong, 1))
                assert (state().phase if state() else Phase.IDLE) is phase  # refused without side effects
        outbox = exchange.send(iter(h.deliver(outbox))) if stage != p.STAGE_UNMASK else outbox
    expected = [Phase.IDLE, Phase.ADVERTISED, Phase.SHARED, Phase.MASKED] + ([Phase.CONFIRMED] if active else [])
    assert phases_seen == expected


def test_plain_train_is_refused_and_evaluate_passes_through(make_harness) -> None:
    h = make_harness(3)
    with pytest.raises(ProtocolError, match="without secure aggregation"):
        h.send(bare("", 1))
    evaluate = Message(Metadata(7, 1, 0, 1, MessageKind.EVALUATE), arrays=dict(h.parameters))
    assert "loss" in h.send(evaluate).metrics


def test_wrong_round_run_or_sender_is_refused(make_harness) -> None:
    h = make_harness(4)
    exchange = h.exchange()
    outbox = run_to(exchange, h.deliver, p.STAGE_SHARE_KEYS)
    message = next(m for m in outbox if m.metadata.dst_node == 1)
    md = message.metadata
    for changed in (
        Metadata(md.run_id, md.server_round + 1, 0, 1, md.kind, md.stage),
        Metadata(md.run_id + 1, md.server_round, 0, 1, md.kind, md.stage),
        Metadata(md.run_id, md.server_round, 2, 1, md.kind, md.stage),
        Metadata(md.run_id, md.server_round + 1, 2, 1, md.kind, p.STAGE_SETUP),  # a forged "new round"
    ):
        with pytest.raises(ProtocolError):
            h.send(message.replace(metadata=changed))
    h.send(message)  # the genuine one still works: refusals did not disturb the round


def test_state_checkpoint_holds_no_secrets(make_harness) -> None:
    h = make_harness(4)
    exchange = h.exchange()
    run_to(exchange, h.deliver, p.STAGE_MASKED_INPUT)
    state = h.contexts[1].state[STATE_KEY]
    assert state.self_mask_seed is not None and state.held_shares == {}
    assert h.contexts[1].checkpoint_state() == {STATE_KEY: {"run_id": 7, "server_round": 1}}
    restored = SecAggClientState()
    restored.load_state_dict(state.state_dict())
    assert restored.phase is Phase.IDLE and restored.self_mask_seed is None and restored.server_round == 1


def unmask_request(outbox: list[Message], node: int) -> Message:
    return next(m for m in outbox if m.metadata.dst_node == node)


def with_survivors(message: Message, survivors) -> Message:
    return message.replace(arrays={p.SURVIVORS: p.node_array(list(survivors))})


@pytest.fixture
def at_unmask(make_harness):
    """A semi-honest round of 8 clients (k = 6, t = 4) paused before unmasking; returns (harness, outbox)."""
    h = make_harness(8, 4, SecAggConfig(coordinate_bound=2.0, num_neighbours=6, threshold=4), active=False)
    exchange = h.exchange()
    return h, run_to(exchange, h.deliver, p.STAGE_UNMASK)


def test_unmask_reveals_one_share_per_neighbour_and_is_idempotent(at_unmask) -> None:
    h, outbox = at_unmask
    request = unmask_request(outbox, 1)
    reply = h.send(request)
    survivors, dropped = set(reply.arrays[p.SURVIVORS].tolist()), set(reply.arrays[p.DROPPED].tolist())
    assert survivors.isdisjoint(dropped) and len(survivors | dropped) == 6
    assert reply.arrays[p.SELF_MASK_SHARES].shape[0] == len(survivors)
    assert reply.arrays[p.MASK_KEY_SHARES].shape[0] == len(dropped)
    again = h.send(request)  # a retransmitted identical request gets the same answer
    assert all(np.array_equal(again.arrays[k], reply.arrays[k]) for k in reply.arrays)


def test_second_different_unmask_request_is_refused(at_unmask) -> None:
    h, outbox = at_unmask
    request = unmask_request(outbox, 1)
    survivors = request.arrays[p.SURVIVORS].tolist()
    reply = h.send(request)
    partner = int(reply.arrays[p.SURVIVORS][0])
    flipped = with_survivors(request, [u for u in survivors if u != partner])  # now claims a partner dropped
    with pytest.raises(ProtocolAbort, match="second, different"):
        h.send(flipped)


@pytest.mark.parametrize("case", ["without_self", "stranger", "too_few", "duplicate", "unsorted"])
def test_malformed_survivor_sets_are_rejected(at_unmask, case: str) -> None:
    h, outbox = at_unmask
    request = unmask_request(outbox, 1)
    survivors = request.arrays[p.SURVIVORS].tolist()
    partners = [u for u in h.nodes if u != 1]
    sets = {
        "without_self": [u for u in survivors if u != 1],
        "stranger": [*survivors, 99],  # a node not selected for the round
        "too_few": [1, *partners[:3]],  # fewer than t surviving neighbours
        "duplicate": [*survivors, survivors[0]],
        "unsorted": survivors[::-1],
    }[case]
    with pytest.raises((ProtocolAbort, MessageError)):
        h.send(with_survivors(request, sets))
    with pytest.raises(ProtocolError):  # the failed check abandoned the round: nothing more is answered
        h.send(request)


def test_client_refuses_to_mask_with_fewer_than_t_share_sources(make_harness) -> None:
    h = make_harness(8, 4, SecAggConfig(num_neighbours=6, threshold=4))
    exchange = h.exchange()
    outbox = run_to(exchange, h.deliver, p.STAGE_MASKED_INPUT)
    message = next(m for m in outbox if m.metadata.dst_node == 1)
    arrays = dict(message.arrays)
    arrays[p.NODES] = arrays[p.NODES][:3]
    arrays[p.CIPHERTEXTS] = arrays[p.CIPHERTEXTS][:3]
    with pytest.raises(ProtocolAbort, match="refusing to mask"):
        h.send(message.replace(arrays=arrays))


def test_unsafe_setup_is_rejected(make_harness) -> None:
    h = make_harness(8)
    exchange = h.exchange()
    message = next(exchange)[0]
    k = message.config["secagg.num_neighbours"]
    with pytest.raises(MessageError, match="unsafe"):
        h.send(message.replace(config={**message.config, "secagg.threshold": k // 2}))
    short = {**message.arrays, p.NODES: message.arrays[p.NODES][:-1]}
    fresh = Context(node_id=message.metadata.dst_node)
    with pytest.raises(MessageError, match="node list"):
        h.mod(message.replace(arrays=short), fresh, lambda m, c: m)
    without_self = {**message.arrays, p.NODES: np.append(message.arrays[p.NODES][1:], 99)}
    with pytest.raises(MessageError):
        h.mod(message.replace(arrays=without_self), Context(node_id=message.metadata.dst_node), lambda m, c: m)


def test_trust_model_must_be_chosen_and_must_match(make_harness) -> None:
    with pytest.raises(ConfigError, match="choose the SecAgg\\+ trust model"):
        SecAggMod()
    h = make_harness(4)
    message = next(h.exchange())[0]
    semi = SecAggMod(semi_honest=True)
    with pytest.raises(ProtocolAbort, match="semi-honest mode"):
        semi(message, Context(node_id=message.metadata.dst_node), lambda m, c: m)
    downgrade = message.replace(config={**message.config, p.TRUST: p.SEMI_HONEST})
    with pytest.raises(ProtocolAbort, match="active-server mode"):
        h.send(downgrade)


@pytest.mark.parametrize("tamper", ["flip", "swap_senders"])
def test_share_bundles_failing_authentication_are_rejected(make_harness, tamper: str) -> None:
    from privfl.errors import DecryptionError

    h = make_harness(8, 4, SecAggConfig(num_neighbours=6, threshold=4))
    outbox = run_to(h.exchange(), h.deliver, p.STAGE_MASKED_INPUT)
    message = next(m for m in outbox if m.metadata.dst_node == 1)
    table = message.arrays[p.CIPHERTEXTS].copy()
    if tamper == "flip":
        table[0, -1] ^= 1
    else:  # the bundle from one neighbour presented as coming from another: the AD names the sender
        table[[0, 1]] = table[[1, 0]]
    with pytest.raises(DecryptionError, match=r"^decryption failed$"):
        h.send(message.replace(arrays={**message.arrays, p.CIPHERTEXTS: table}))
