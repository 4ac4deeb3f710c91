"""Server-side validation of client replies, streaming summation, and CSPRNG-only randomness."""

from __future__ import annotations

import gc
import random
import weakref

import numpy as np
import pytest
from secagg_helpers import finish, run_to

from privfl.core.message import Metadata
from privfl.secagg import SecAggConfig
from privfl.secagg import protocol as p


def tamper_at(h, stage: str, change):
    """A deliver function that passes the first reply of ``stage`` through ``change`` (which may return a list)."""
    done = []

    def deliver(outbox):
        for reply in h.deliver(outbox):
            if reply.metadata.stage == stage and not done:
                done.append(True)
                out = change(reply)
                yield from out if isinstance(out, list) else [out]
            else:
                yield reply

    return deliver


def with_metadata(reply, **changes):
    md = reply.metadata
    fields = {"run_id": md.run_id, "server_round": md.server_round, "src_node": md.src_node}
    fields.update(changes)
    return reply.replace(
        metadata=Metadata(fields["run_id"], fields["server_round"], fields["src_node"], 0, md.kind, md.stage)
    )


def masked(reply, arr):
    return reply.replace(arrays={p.MASKED: arr})


def rows(reply, key, change):
    return reply.replace(arrays={**reply.arrays, key: change(reply.arrays[key])})


CASES = {
    "duplicate": (p.STAGE_SHARE_KEYS, lambda r: [r, r], "ProtocolError"),
    "unknown sender": (p.STAGE_SETUP, lambda r: with_metadata(r, src_node=99), "ProtocolError"),
    "wrong round": (p.STAGE_MASKED_INPUT, lambda r: with_metadata(r, server_round=2), "ProtocolError"),
    "wrong run": (p.STAGE_UNMASK, lambda r: with_metadata(r, run_id=8), "ProtocolError"),
    "wrong stage": (p.STAGE_SETUP, lambda r: r.with_stage(p.STAGE_UNMASK), "ProtocolError"),
    "short key": (p.STAGE_SETUP, lambda r: r.replace(config={**r.config, p.PK_MASK: b"x"}), "MessageError"),
    "forged signature": (
        p.STAGE_SETUP,
        lambda r: r.replace(config={**r.config, p.SIGNATURE: bytes(64)}),
        "AuthenticationError",
    ),
    "extra array": (p.STAGE_SETUP, lambda r: r.replace(arrays={"secagg.extra": np.zeros(1)}), "MessageError"),
    "masked dtype": (p.STAGE_MASKED_INPUT, lambda r: masked(r, r.arrays[p.MASKED].astype(np.int64)), "MessageError"),
    "masked size": (p.STAGE_MASKED_INPUT, lambda r: masked(r, r.arrays[p.MASKED][:-1]), "MessageError"),
    "masked range": (
        p.STAGE_MASKED_INPUT,
        lambda r: masked(r, r.arrays[p.MASKED] | np.uint32(1 << 31)),
        "MessageError",
    ),
    "ciphertext table": (
        p.STAGE_SHARE_KEYS,
        lambda r: rows(r, p.CIPHERTEXTS, lambda a: a.astype(np.uint16)),
        "MessageError",
    ),
    "share receivers": (p.STAGE_SHARE_KEYS, lambda r: rows(r, p.NODES, lambda a: a[::-1]), "MessageError"),
    "tag table": (p.STAGE_CONSISTENCY, lambda r: rows(r, p.TAGS, lambda a: a[:, :16]), "MessageError"),
    "tag receivers": (p.STAGE_CONSISTENCY, lambda r: rows(r, p.NODES, lambda a: a[1:]), "MessageError"),
    "consistency stage": (p.STAGE_CONSISTENCY, lambda r: r.with_stage(p.STAGE_SETUP), "ProtocolError"),
    "share table shape": (
        p.STAGE_UNMASK,
        lambda r: rows(r, p.SELF_MASK_SHARES, lambda a: a[:, :10]),
        "MessageError",
    ),
    "node ids dtype": (p.STAGE_UNMASK, lambda r: rows(r, p.SURVIVORS, lambda a: a.astype(np.int32)), "MessageError"),
    "missing array": (
        p.STAGE_UNMASK,
        lambda r: r.replace(arrays={k: v for k, v in r.arrays.items() if k != p.MASK_KEY_SHARES}),
        "MessageError",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_bad_reply_is_a_recorded_dropout_and_the_round_completes(make_harness, case: str) -> None:
    """Issue 12: one client of n sends a malformed reply at one stage; the round finishes without it."""
    stage, change, error = CASES[case]
    h = make_harness(6, 4)
    exchange = h.exchange()
    result = finish(exchange, tamper_at(h, stage, change), next(exchange))
    assert len(result.rejected) == 1
    rejection = result.rejected[0]
    assert (rejection.stage, rejection.error) == (stage, error) and rejection.reason
    assert np.array_equal(result.total, h.expected_total(result))  # the exact sum of the survivors
    missing = set(h.nodes) - set(result.survivors)
    if stage in (p.STAGE_SETUP, p.STAGE_SHARE_KEYS, p.STAGE_MASKED_INPUT) and case != "duplicate":
        assert len(missing) == 1 and rejection.node in missing | {99}  # 99: the forged sender id
    else:  # its masked input is in the sum; its missing shares are made up by the other neighbours
        assert not missing


def test_garbage_consistency_tags_from_one_client_do_not_stop_the_round(make_harness) -> None:
    """The server cannot check tags; a client with t valid ones among them still reveals."""
    h = make_harness(6, 4)

    def garble(reply):
        return rows(reply, p.TAGS, lambda a: np.zeros_like(a))

    exchange = h.exchange()
    result = finish(exchange, tamper_at(h, p.STAGE_CONSISTENCY, garble), next(exchange))
    assert result.rejected == () and len(result.survivors) == 6
    assert np.array_equal(result.total, h.expected_total(result))


@pytest.mark.slow  # about 5 s: ten 2000-word rounds with a gc.collect per message
def test_masked_vectors_are_summed_as_they_arrive(make_harness) -> None:
    """While reply i + 1 is produced, reply i - 1's vector is already garbage: O(d) vectors held, not O(n d)."""
    h = make_harness(10, 2000, SecAggConfig(coordinate_bound=2.0))
    exchange = h.exchange()
    outbox = run_to(exchange, h.deliver, p.STAGE_MASKED_INPUT)
    refs = []
    alive_when_next_produced = []

    def deliver(outbox):
        if outbox[0].metadata.stage != p.STAGE_MASKED_INPUT:
            yield from h.deliver(outbox)
            return
        for message in outbox:
            gc.collect()
            alive_when_next_produced.append(sum(r() is not None for r in refs[:-1]))
            reply = h.send(message)
            refs.append(weakref.ref(reply.arrays[p.MASKED]))
            yield reply

    finish(exchange, deliver, outbox)
    assert len(refs) == 10 and alive_when_next_produced == [0] * 10


def test_no_numpy_or_random_module_generator_is_used(make_harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """Masks, seeds, shares, rounding and the graph come from os.urandom / secrets / AES-CTR only."""

    def forbidden(*args, **kwargs):
        raise AssertionError("a non-cryptographic generator was used in a SecAgg+ round")

    for name in ("default_rng", "seed", "rand", "randn", "randint", "random", "normal", "uniform", "permutation"):
        monkeypatch.setattr(np.random, name, forbidden)
    monkeypatch.setattr(np.random, "Generator", forbidden)
    for name in ("random", "randint", "randrange", "shuffle", "sample", "getrandbits", "choice", "seed"):
        monkeypatch.setattr(random, name, forbidden)
    monkeypatch.setattr(random.Random, "random", forbidden)
    h = make_harness(7, 30)
    result = h.run(drops=[(p.STAGE_MASKED_INPUT, 2)])
    assert np.array_equal(result.total, h.expected_total(result))


def test_a_single_masked_vector_looks_uniform(make_harness) -> None:
    """What the server receives from one client is uniform on [0, 2^m), unlike the client's quantised update."""
    from scipy.stats import chisquare

    h = make_harness(6, 20_000)
    seen = {}

    def deliver(outbox):
        for reply in h.deliver(outbox):
            if reply.metadata.stage == p.STAGE_MASKED_INPUT:
                seen.setdefault(reply.metadata.src_node, reply.arrays[p.MASKED])
            yield reply

    exchange = h.exchange()
    result = finish(exchange, deliver, next(exchange))
    m = result.params.modulus_bits
    node, vector = next(iter(seen.items()))
    top_bits = lambda v: np.bincount((v >> np.uint32(m - 6)).astype(np.int64), minlength=64)  # noqa: E731
    assert int(vector.max()) < 2**m
    assert chisquare(top_bits(vector)).pvalue > 1e-4
    assert chisquare(top_bits(h.encoded[(1, node)])).pvalue < 1e-9
