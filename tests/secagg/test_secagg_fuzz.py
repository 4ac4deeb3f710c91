"""Fuzzing the SecAgg+ message handlers: whatever arrives, only privfl errors escape."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from secagg_helpers import finish, run_to

from privfl.core.message import Message, MessageKind, Metadata
from privfl.errors import PrivflError, ProtocolAbort
from privfl.secagg import SecAggConfig
from privfl.secagg import protocol as p
from privfl.secagg.server import SecAggRoundResult

NAMES = [
    p.NODES,
    p.PK_ENC,
    p.PK_MASK,
    p.CIPHERTEXTS,
    p.MASKED,
    p.SURVIVORS,
    p.DROPPED,
    p.SELF_MASK_SHARES,
    p.MASK_KEY_SHARES,
    "w",
    "secagg.other",
]
DTYPES = [np.int64, np.int32, np.uint8, np.uint32, np.uint64, np.float32, np.float64, np.bool_]
FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

arrays_st = st.dictionaries(
    st.sampled_from(NAMES),
    st.tuples(st.sampled_from(DTYPES), st.lists(st.integers(0, 5), max_size=2), st.integers(-(2**40), 2**40)).map(
        lambda t: np.full(t[1], t[2] % 7 if t[0] is np.bool_ else t[2]).astype(t[0])
    ),
    max_size=5,
)
scalar_st = st.one_of(
    st.integers(-(2**63), 2**63 - 1), st.floats(), st.booleans(), st.binary(max_size=40), st.text(max_size=5)
)
config_st = st.dictionaries(
    st.sampled_from([p.PK_ENC, p.PK_MASK, "secagg.threshold", "secagg.num_neighbours", "secagg.bits", "x"]),
    scalar_st,
    max_size=4,
)


def mutate(message: Message, data: st.DataObject) -> Message:
    """Change one array or config entry of a genuine message: drop, retype, reshape, flip bits or replace it."""
    arrays, config = dict(message.arrays), dict(message.config)
    choice = data.draw(st.sampled_from(["drop", "dtype", "truncate", "flip", "replace", "config"]))
    if choice == "config" or not arrays:
        config.update(data.draw(config_st))
    else:
        name = data.draw(st.sampled_from(sorted(arrays)))
        arr = arrays[name]
        if choice == "drop":
            del arrays[name]
        elif choice == "dtype":
            arrays[name] = arr.astype(data.draw(st.sampled_from(DTYPES)))
        elif choice == "truncate":
            arrays[name] = arr.reshape(-1)[: data.draw(st.integers(0, max(arr.size - 1, 0)))]
        elif choice == "flip" and arr.size:
            raw = bytearray(arr.tobytes())
            i = data.draw(st.integers(0, len(raw) - 1))
            raw[i] ^= 1 << data.draw(st.integers(0, 7))
            arrays[name] = np.frombuffer(bytes(raw), dtype=arr.dtype).reshape(arr.shape)
        else:
            arrays[name] = data.draw(arrays_st).get(name, np.zeros(3, np.int64))
    return message.replace(arrays=arrays, config=config)


@FUZZ
@given(stage_index=st.integers(0, len(p.STAGES) - 1), data=st.data())
def test_client_survives_mutated_genuine_messages(make_harness, stage_index: int, data: st.DataObject) -> None:
    h = make_harness(5, 4, SecAggConfig(num_neighbours=4, threshold=3))
    outbox = run_to(h.exchange(), h.deliver, p.STAGES[stage_index])
    message = mutate(outbox[0], data)
    with contextlib.suppress(PrivflError):
        h.send(message)


@FUZZ
@given(stage=st.sampled_from([*p.STAGES, "", "secagg.x"]), arrays=arrays_st, config=config_st, data=st.data())
def test_client_survives_arbitrary_messages(make_harness, stage: str, arrays, config, data: st.DataObject) -> None:
    h = make_harness(5, 4, SecAggConfig(num_neighbours=4, threshold=3))
    paused_at = data.draw(st.integers(0, len(p.STAGES) - 1))
    run_to(h.exchange(), h.deliver, p.STAGES[paused_at])
    md = Metadata(
        7, data.draw(st.sampled_from([0, 1, 2])), data.draw(st.sampled_from([0, 3])), 1, MessageKind.TRAIN, stage
    )
    with contextlib.suppress(PrivflError):
        h.send(Message(md, arrays=arrays, config=config))


def check_mutated_reply(h, target: str, victim: int, change: Callable[[Message], Message]) -> SecAggRoundResult | None:
    """Exact result or a typed abort (None): a mutated reply is a dropout, never a crash or a wrong sum.

    ``victim`` indexes the ``target`` outbox; messages in ``h.drops`` go unanswered.
    """
    changed = {}

    def deliver(outbox):
        """Clients that refuse (e.g. a share bundle from the mutated client fails AEAD) drop out, as deployed."""
        for i, message in enumerate(outbox):
            if (message.metadata.stage, message.metadata.dst_node) in h.drops:
                continue
            try:
                reply = h.send(message)
            except PrivflError:
                continue
            if message.metadata.stage == target and i == victim:
                mutated = change(reply)
                changed[reply.metadata.src_node] = (reply, mutated)
                reply = mutated
            yield reply

    exchange = h.exchange()
    try:
        result = finish(exchange, deliver, next(exchange))
    except ProtocolAbort as abort:
        assert "threshold" in str(abort) or "no masked input" in str(abort)
        return None
    expected = h.expected_total(result)
    for node, (original, mutated) in changed.items():
        # An accepted, altered masked vector is that client's input choice: the sum must carry it exactly.
        if node in result.survivors and p.MASKED in mutated.arrays and p.MASKED in original.arrays:
            delta = mutated.arrays[p.MASKED].astype(np.int64) - original.arrays[p.MASKED].astype(np.int64)
            modulus = 1 << result.params.modulus_bits
            expected = ((expected.astype(np.int64) + delta) % modulus).astype(expected.dtype)
    assert np.array_equal(result.total, expected)
    return result


@FUZZ
@given(stage_index=st.integers(0, len(p.STAGES) - 1), data=st.data())
def test_server_survives_mutated_replies(make_harness, stage_index: int, data: st.DataObject) -> None:
    h = make_harness(5, 4, SecAggConfig(num_neighbours=4, threshold=3))
    victim = data.draw(st.integers(0, 4))
    check_mutated_reply(h, p.STAGES[stage_index], victim, lambda reply: mutate(reply, data))


@pytest.mark.parametrize("active", [True, False])
@pytest.mark.parametrize("table", [p.SELF_MASK_SHARES, p.MASK_KEY_SHARES])
def test_server_survives_a_flipped_share(make_harness, active: bool, table: str) -> None:
    """The fixed example the fuzzer used to find now and then: one bit of one returned share flipped.

    The first client to answer flips the low bit of its first share, so its share is among
    the t the server tries first. For a mask key, node 5 drops after sharing keys; its key
    then has four holders, one more than t (the survivors' seeds have only three, so a
    wrong one among them would leave no second choice, and the round would abort).
    """
    h = make_harness(5, 4, SecAggConfig(num_neighbours=4, threshold=3), active=active)
    if table == p.MASK_KEY_SHARES:
        h.drops = {(p.STAGE_MASKED_INPUT, 5)}

    def flip(reply: Message) -> Message:
        rows = reply.arrays[table].copy()
        rows[0, -1] ^= 1
        return reply.replace(arrays={**reply.arrays, table: rows})

    result = check_mutated_reply(h, p.STAGE_UNMASK, 0, flip)
    assert result is not None and result.survivors == ((1, 2, 3, 4) if h.drops else (1, 2, 3, 4, 5))
    assert [(r.node, r.stage, r.error) for r in result.rejected] == [(1, p.STAGE_UNMASK, "MessageError")]
