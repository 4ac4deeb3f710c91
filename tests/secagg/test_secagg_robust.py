"""A holder that returns a wrong Shamir share is decoded around and rejected: exact sum, no abort.

The attack (Bonawitz et al. CCS'17 leave it open: the server combines the first t shares
it has) is shown first on a server whose secret check is switched off: the sum comes out
wrong and nothing notices. The real server checks each secret (seed commitment, mask
public key), finds the verifying shares, and records the lying holder.
"""

from __future__ import annotations

import numpy as np
import pytest
from secagg_helpers import finish

from privfl.errors import ProtocolAbort
from privfl.secagg import SecAggConfig
from privfl.secagg import protocol as p
from privfl.secagg.crypto import KeyPair, is_private_of, load_private, private_bytes, public_bytes
from privfl.secagg.server import _ServerRound
from privfl.secagg.shamir import PRIME, Reconstruction, robust_combine, split

CONFIG = SecAggConfig(coordinate_bound=2.0, num_neighbours=4, threshold=3)
LIAR = 1  # node 1 answers first, so its shares are among the t the server tries first


def add_to_share(reply, table: str, row: int, delta: int):
    """``reply`` with ``delta`` added to the share in row ``row`` of ``table``."""
    rows = reply.arrays[table].copy()
    value = int.from_bytes(rows[row].tobytes(), "big") + delta
    rows[row] = np.frombuffer(value.to_bytes(rows.shape[1], "big"), dtype=np.uint8)
    return reply.replace(arrays={**reply.arrays, table: rows})


def corrupting(h, table: str, deltas=None, about: int | None = None):
    """A delivery where node u adds ``deltas[u]`` to the share it returns in ``table`` at the unmask stage.

    The share is the one of node ``about``, or the first row if None. Distinct deltas matter:
    two liars adding the same value can cancel in the Lagrange sum and change nothing.
    """
    deltas = {LIAR: 1} if deltas is None else deltas

    def deliver(outbox):
        for message in outbox:
            if (message.metadata.stage, message.metadata.dst_node) in h.drops:
                continue
            reply = h.send(message)
            node = message.metadata.dst_node
            if message.metadata.stage == p.STAGE_UNMASK and node in deltas:
                names = reply.arrays[p.SURVIVORS if table == p.SELF_MASK_SHARES else p.DROPPED]
                row = 0 if about is None else [int(v) for v in names].index(about)
                reply = add_to_share(reply, table, row, deltas[node])
            yield reply

    return deliver


def run(h, deliver, drops=()):
    h.drops = set(drops)
    exchange = h.exchange()
    return finish(exchange, deliver, next(exchange))


@pytest.mark.parametrize("active", [True, False])
def test_wrong_self_mask_share_gives_a_wrong_sum_without_the_commitment_check(make_harness, monkeypatch, active):
    """The attack, on a weakened server that accepts any reconstructed seed."""
    h = make_harness(5, 6, CONFIG, active=active)
    monkeypatch.setattr(_ServerRound, "seed_verifies", lambda self, owner, seed: True)
    result = run(h, corrupting(h, p.SELF_MASK_SHARES))
    assert result.survivors == (1, 2, 3, 4, 5)
    assert not np.array_equal(result.total, h.expected_total(result))  # silently wrong
    assert result.rejected == ()


@pytest.mark.parametrize("active", [True, False])
def test_wrong_self_mask_share_is_rejected_and_the_sum_is_exact(make_harness, active):
    h = make_harness(5, 6, CONFIG, active=active)
    result = run(h, corrupting(h, p.SELF_MASK_SHARES))
    assert result.survivors == (1, 2, 3, 4, 5)
    assert np.array_equal(result.total, h.expected_total(result))
    [rejection] = result.rejected
    assert (rejection.node, rejection.stage, rejection.error) == (LIAR, p.STAGE_UNMASK, "MessageError")
    assert "self-mask seed" in rejection.reason


def test_wrong_mask_key_share_of_a_dropout_used_to_abort_and_is_now_rejected(make_harness, monkeypatch):
    """Node 5 drops after sharing keys; node 1 returns a wrong share of its mask key."""
    drops = {(p.STAGE_MASKED_INPUT, 5)}
    h = make_harness(5, 6, CONFIG)
    monkeypatch.setattr(_ServerRound, "key_verifies", lambda self, owner, key: True)
    weakened = run(h, corrupting(h, p.MASK_KEY_SHARES), drops)
    assert weakened.survivors == (1, 2, 3, 4)
    assert not np.array_equal(weakened.total, h.expected_total(weakened))
    monkeypatch.undo()

    h = make_harness(5, 6, CONFIG)
    result = run(h, corrupting(h, p.MASK_KEY_SHARES), drops)
    assert result.survivors == (1, 2, 3, 4)
    assert np.array_equal(result.total, h.expected_total(result))
    assert [(r.node, r.stage) for r in result.rejected] == [(LIAR, p.STAGE_UNMASK)]
    assert "mask key of node 5" in result.rejected[0].reason or "node 5's mask key" in result.rejected[0].reason


def test_too_many_wrong_shares_abort_naming_the_secret_and_the_holders(make_harness):
    """Two of the four holders of node 5's seed lie: only 2 < t = 3 honest shares remain."""
    h = make_harness(5, 6, CONFIG)
    exchange = h.exchange()
    deliver = corrupting(h, p.SELF_MASK_SHARES, {1: 1, 2: 5}, about=5)
    with pytest.raises(ProtocolAbort, match=r"node 5's self-mask seed.*suspected holders \[1, 2, 3, 4\]"):
        finish(exchange, deliver, next(exchange))


def test_a_share_keys_reply_without_a_seed_commitment_is_a_dropout(make_harness):
    h = make_harness(5, 6, CONFIG)

    def deliver(outbox):
        for message in outbox:
            reply = h.send(message)
            if message.metadata.stage == p.STAGE_SHARE_KEYS and message.metadata.dst_node == 2:
                reply = reply.replace(config={})
            yield reply

    exchange = h.exchange()
    result = finish(exchange, deliver, next(exchange))
    assert 2 not in result.survivors
    assert [(r.node, r.stage, r.error) for r in result.rejected] == [(2, p.STAGE_SHARE_KEYS, "MessageError")]
    assert np.array_equal(result.total, h.expected_total(result))


def test_a_non_canonical_key_cannot_frame_honest_holders() -> None:
    """Holder 1 shifts the key by 2^248 (a bit X25519 clamping clears) in the subset {1, 3, 4}.

    Checked by its public key alone, that "twin" key verifies, and the decoder then blames
    honest holder 5; checked canonically (:func:`is_private_of`) only the liars are named.
    """
    key = private_bytes(KeyPair.generate().private)
    public = KeyPair(load_private(key)).public
    shares = split(key, [1, 2, 3, 4, 5], 3)
    shares[2] = (shares[2] + 12345) % PRIME  # a plain liar, so the first t shares fail
    lagrange_1 = 2  # (3 * 4) / ((3 - 1) * (4 - 1)): holder 1's coefficient at 0 in {1, 3, 4}
    shares[1] = (shares[1] + pow(lagrange_1, -1, PRIME) * 2**248) % PRIME
    twin = (int.from_bytes(key, "big") + 2**248).to_bytes(32, "big")

    def by_public_key_only(candidate: bytes) -> bool:
        return public_bytes(load_private(candidate).public_key()) == public

    assert by_public_key_only(twin) and not is_private_of(twin, public)
    assert robust_combine(shares, 3, by_public_key_only) == Reconstruction(twin, (2, 5))  # 5 is honest
    assert robust_combine(shares, 3, lambda c: is_private_of(c, public)) == Reconstruction(key, (1, 2))


def test_two_liars_on_one_seed_are_both_rejected(make_harness):
    """n = 8, k = 7, t = 5: node 8's seed has 7 holders; 1 and 2 lie about it (different amounts)."""
    h = make_harness(8, 6, SecAggConfig(coordinate_bound=2.0, num_neighbours=7, threshold=5), active=False)
    result = run(h, corrupting(h, p.SELF_MASK_SHARES, {1: 3, 2: 11}, about=8))
    assert result.survivors == tuple(range(1, 9))
    assert np.array_equal(result.total, h.expected_total(result))
    assert [(r.node, r.stage) for r in result.rejected] == [(1, p.STAGE_UNMASK), (2, p.STAGE_UNMASK)]
    assert all("node 8's self-mask seed" in r.reason for r in result.rejected)
