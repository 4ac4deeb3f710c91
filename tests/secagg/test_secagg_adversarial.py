"""A malicious server against honest SecAgg+ clients: each attack yields nothing useful.

The server here is the test: it runs the honest exchange up to a stage, then sends
requests of its own making to the real client mods.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import chisquare
from secagg_helpers import graph_of, run_to

from privfl.errors import ConfigError, DecryptionError, MessageError, ProtocolAbort, ProtocolError
from privfl.secagg import SecAggConfig
from privfl.secagg import protocol as p
from privfl.secagg.crypto import PURPOSE_MASK, agree, load_private, public_bytes
from privfl.secagg.prg import MaskExpander, low_bits_mask
from privfl.secagg.shamir import combine, decode_element
from privfl.server.transport import drive

K, T = 6, 4


@pytest.fixture
def paused(make_harness):
    """8 clients (k = 6, t = 4), every masked input received, paused before unmasking."""
    h = make_harness(8, 2000, SecAggConfig(coordinate_bound=2.0, num_neighbours=K, threshold=T))
    exchange = h.exchange()
    setup = run_to(exchange, h.deliver, p.STAGE_SETUP)
    graph = graph_of(setup)
    keys = {}
    masked = {}

    def deliver(outbox):
        for reply in h.deliver(outbox):
            if reply.metadata.stage == p.STAGE_SETUP:
                keys[reply.metadata.src_node] = reply.config[p.PK_MASK]
            if reply.metadata.stage == p.STAGE_MASKED_INPUT:
                masked[reply.metadata.src_node] = reply.arrays[p.MASKED]
            yield reply

    unmask = run_to_from(exchange, deliver, setup, p.STAGE_UNMASK)
    return h, graph, keys, masked, {m.metadata.dst_node: m for m in unmask}


def run_to_from(exchange, deliver, outbox, stage):
    while outbox[0].metadata.stage != stage:
        outbox = exchange.send(iter(deliver(outbox)))
    return outbox


def ask(h, template, survivors, dropped):
    arrays = {p.SURVIVORS: p.node_array(sorted(survivors)), p.DROPPED: p.node_array(sorted(dropped))}
    return h.send(template.replace(arrays=arrays))


def shares_of(reply, victim, which):
    nodes, table = (p.SURVIVORS, p.SELF_MASK_SHARES) if which == "self" else (p.DROPPED, p.MASK_KEY_SHARES)
    ids = reply.arrays[nodes].tolist()
    return decode_element(reply.arrays[table][ids.index(victim)].tobytes()) if victim in ids else None


def test_claiming_a_survivor_dropped_reveals_only_a_masked_vector(paused) -> None:
    """Server got u's masked input, tells all of u's neighbours u dropped: it learns s_u^SK, never b_u."""
    h, graph, keys, masked, requests = paused
    u = 1
    sk_shares = {}
    for v in graph[u]:
        partners = set(requests[v].arrays[p.SURVIVORS].tolist()) | set(requests[v].arrays[p.DROPPED].tolist())
        reply = ask(h, requests[v], partners - {u}, {u})
        sk_shares[v] = shares_of(reply, u, "mask key")
        # The self-mask share of u is now out of reach from v: a second request is refused.
        with pytest.raises(ProtocolAbort, match="second, different"):
            ask(h, requests[v], partners, set())
    private = load_private(combine(sk_shares, T))
    assert public_bytes(private.public_key()) == keys[u]  # the server did get u's mask key ...
    # ... and strips every pairwise mask from y_u; what is left is x_u + PRG(b_u): still uniform.
    params = SecAggConfig(coordinate_bound=2.0, num_neighbours=K, threshold=T).round_params(8)
    y = masked[u].copy()
    expander = MaskExpander(y.size, y.dtype)
    for v in graph[u]:
        seed = agree(private, keys[v], purpose=PURPOSE_MASK, run_id=7, server_round=1, a=u, b=v)
        expander.add(y, seed, -1 if u < v else 1)
    y &= low_bits_mask(params.modulus_bits)
    quantised = h.encoded[(1, u)]
    assert not np.array_equal(y, quantised)
    top = (y[:-1] >> np.uint32(params.modulus_bits - 5)).astype(np.int64)
    assert chisquare(np.bincount(top, minlength=32)).pvalue > 1e-4  # the honest input is quantised
    assert chisquare(np.bincount((quantised[:-1] >> np.uint32(12)).astype(np.int64), minlength=32)).pvalue < 1e-6


def test_split_neighbourhood_never_yields_both_secrets(paused) -> None:
    """Telling some neighbours 'u survived' and the others 'u dropped': with t > k/2 one side is short."""
    h, graph, _, _, requests = paused
    u = 2
    nbrs = list(graph[u])
    half_a = nbrs[: K // 2]
    b_shares, sk_shares = {}, {}
    for v in nbrs:
        partners = set(requests[v].arrays[p.SURVIVORS].tolist()) | set(requests[v].arrays[p.DROPPED].tolist())
        if v in half_a:
            b_shares[v] = shares_of(ask(h, requests[v], partners, set()), u, "self")
        else:
            sk_shares[v] = shares_of(ask(h, requests[v], partners - {u}, {u}), u, "mask key")
    assert len(b_shares) < T and len(sk_shares) < T
    for shares in (b_shares, sk_shares):
        with pytest.raises(ConfigError):
            combine(shares, T)
    # Interpolating the 3 shares as if t were 3 gives garbage, not u's key.
    with pytest.raises(MessageError):  # not even a 32-byte value, let alone u's key
        combine(sk_shares, len(sk_shares))


def test_replayed_old_round_gets_no_answer(make_harness) -> None:
    h = make_harness(6, 5, SecAggConfig(num_neighbours=4, threshold=3))
    recorded = {}

    def recording(outbox):
        recorded.update({(m.metadata.stage, m.metadata.dst_node): m for m in outbox})
        yield from h.deliver(outbox)

    drive(h.exchange(1), recording)
    node = 1
    first_unmask_reply = h.send(recorded[(p.STAGE_UNMASK, node)])  # identical retransmission: cached answer
    # After the round: every earlier stage is refused, and so is any different unmask request.
    for stage in (p.STAGE_SETUP, p.STAGE_SHARE_KEYS, p.STAGE_MASKED_INPUT):
        with pytest.raises(ProtocolError):
            h.send(recorded[(stage, node)])
    old_unmask = recorded[(p.STAGE_UNMASK, node)]
    assert h.send(old_unmask) is first_unmask_reply
    with pytest.raises(ProtocolError):
        h.send(old_unmask.replace(arrays={**old_unmask.arrays, p.DROPPED: old_unmask.arrays[p.SURVIVORS][:1]}))
    with pytest.raises(ProtocolError):  # having seen an attack, the client has abandoned the round
        h.send(old_unmask)
    # In round 2, round-1 messages are refused, and round-1 ciphertexts relabelled as round 2 fail AEAD.
    current = next(m for m in run_to(h.exchange(2), h.deliver, p.STAGE_MASKED_INPUT) if m.metadata.dst_node == node)
    stale = recorded[(p.STAGE_MASKED_INPUT, node)]
    with pytest.raises(ProtocolError):
        h.send(stale)
    forged = {
        **current.arrays,
        p.CIPHERTEXTS: np.resize(stale.arrays[p.CIPHERTEXTS], current.arrays[p.CIPHERTEXTS].shape),
    }
    with pytest.raises(DecryptionError):
        h.send(current.replace(arrays=forged))
