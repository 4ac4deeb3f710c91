"""Attacks of an actively malicious SecAgg+ server (issue 11), each run against a weakened client and the real one.

Every attack is a function ``attack(hardened) -> AttackOutcome``. With
``hardened=False`` it runs against a deliberately weakened variant (semi-honest mode,
or a client with one check removed) and must succeed: that shows the attack is real.
With ``hardened=True`` it runs against the real active-server protocol and must be
refused with a typed error, the secret it aims at staying out of reach.

* split view across owners (the attack of issue 11): tell the victim's neighbours
  "v survived" and the neighbours of v's partners "that partner dropped";
* key substitution: replace a neighbour's round keys with the server's own;
* k/t downgrade: announce a sparser graph and a lower threshold than the roster allows;
* colluders placed by the server: list the server's colluders as the victim's neighbours;
* model inconsistency (Pasquini et al. CCS'22): send the victim another model;
* query pass-through: ask the client for its model outside the protocol.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from privfl.audit.secagg import Refusal, SecAggHarness
from privfl.core.context import Context
from privfl.core.message import Message, MessageKind, Metadata
from privfl.core.mods import compose
from privfl.errors import DecryptionError, ProtocolError
from privfl.secagg import SecAggConfig, SecAggMod, SecAggPlusClient
from privfl.secagg import protocol as p
from privfl.secagg import session as s
from privfl.secagg.client import STATE_KEY
from privfl.secagg.crypto import (
    PURPOSE_MASK,
    PURPOSE_SHARES,
    KeyPair,
    associated_data,
    derive,
    exchange,
    load_private,
    public_bytes,
    unseal,
)
from privfl.secagg.graph import neighbour_graph
from privfl.secagg.prg import MaskExpander, low_bits_mask
from privfl.secagg.shamir import SHARE_BYTES, combine, decode_element

VICTIM = 1


@dataclass
class AttackOutcome:
    """What the attacking server got.

    Attributes:
        succeeded: the attack reached its goal (an input, a secret or a model in the clear).
        refusals: typed refusals of honest clients.
        detail: what was obtained or why not, in one sentence.
    """

    succeeded: bool
    refusals: list[Refusal] = field(default_factory=list)
    detail: str = ""


def _updates(n: int, dim: int, seed: int) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {u: np.clip(rng.normal(0.0, 0.2, dim), -0.9, 0.9) for u in range(1, n + 1)}


def _at(stage: str, change: Callable[[list[Message]], list[Message]]) -> Callable[[list[Message]], list[Message]]:
    return lambda outbox: change(outbox) if outbox and outbox[0].metadata.stage == stage else outbox


def _peers(harness: SecAggHarness, node: int) -> list[int]:
    return [int(v) for v in harness.sent_to(p.STAGE_SHARE_KEYS, 1, node).arrays[p.PEERS]]


def _shares(harness: SecAggHarness, owner: int, table: str, names: str) -> dict[int, int]:
    """Shares of ``owner``'s secret (self-mask seed or mask key) in the round-1 unmask replies."""
    out = {}
    for reply in harness.received(p.STAGE_UNMASK, 1):
        ids = [int(v) for v in reply.arrays[names]]
        if owner in ids:
            out[reply.metadata.src_node] = decode_element(reply.arrays[table][ids.index(owner)].tobytes())
    return out


def _forward_tags(harness: SecAggHarness) -> None:
    """The unmask stage a malicious server runs itself: each client gets every tag addressed to it.

    Only tags from senders the client can accept (surviving partners in the set it was
    shown) are forwarded, so a refusal is the tag check itself, not a malformed list.
    """
    inbox: dict[int, dict[int, bytes]] = {}
    for reply in harness.received(p.STAGE_CONSISTENCY, 1):
        for receiver, row in zip(reply.arrays[p.NODES], reply.arrays[p.TAGS], strict=True):
            inbox.setdefault(int(receiver), {})[reply.metadata.src_node] = row.tobytes()
    outbox = []
    for reply in harness.received(p.STAGE_CONSISTENCY, 1):
        node = reply.metadata.src_node
        request = harness.sent_to(p.STAGE_CONSISTENCY, 1, node)
        shown = {int(v) for v in request.arrays[p.SURVIVORS]}
        allowed = set(_partners(harness, node)) & shown
        senders = sorted(u for u in inbox.get(node, {}) if u in allowed)
        arrays = {p.NODES: p.node_array(senders), p.TAGS: p.byte_rows([inbox[node][u] for u in senders], 32)}
        outbox.append(request.with_stage(p.STAGE_UNMASK).replace(arrays=arrays))
    harness.deliver(outbox)


def _partners(harness: SecAggHarness, node: int) -> list[int]:
    return [int(v) for v in harness.sent_to(p.STAGE_MASKED_INPUT, 1, node).arrays[p.NODES]]


def _plan_split(graph: dict[int, set[int]], victim: int, t: int) -> dict[int, set[int]]:
    """For each holder h, the victim's partners it is told dropped: t holders per partner, h keeping t survivors.

    A b-matching found as a maximum flow (source -> partner w, capacity t; w -> each of
    its neighbours h, capacity 1; h -> sink, capacity deg(h) - t), by augmenting paths.
    """
    partners = sorted(graph[victim])
    budget = {h: len(graph[h]) - t for h in graph}
    told: dict[int, set[int]] = {h: set() for h in graph}
    need = dict.fromkeys(partners, t)

    def augment(w: int, seen: set[int]) -> bool:
        for h in sorted(graph[w]):
            if h in seen or w in told[h]:
                continue
            seen.add(h)
            if budget[h] > 0:
                budget[h] -= 1
                told[h].add(w)
                return True
            for other in sorted(told[h]):  # move one of h's assignments elsewhere to free it
                if augment(other, seen):
                    told[h].discard(other)
                    told[h].add(w)
                    return True
        return False

    for w in partners:
        while need[w] and augment(w, set()):
            need[w] -= 1
    return told


def split_view(hardened: bool) -> AttackOutcome:
    """Issue 11's attack: holders of v's seed hear "v survived", holders of each partner's key "it dropped".

    The server gives every holder h its own survivor set S_h = all - X_h, with X_h a set
    of v's partners (never v, never h) small enough that h keeps t surviving neighbours.
    Each holder's view is consistent with itself, so a client that checks only its own
    view reveals: v's neighbours give b_v, the neighbours of each partner w give s_w^SK,
    and the server removes every mask from y_v. The consistency round makes holders
    verify t neighbours' tags on their own set, and the sets differ.
    """
    config = SecAggConfig(
        coordinate_bound=1.0, bits=16, weighting="uniform", num_neighbours=8, threshold=5, corruption=0.0
    )
    harness = SecAggHarness(_updates(40, 64, 11), config, active=hardened)
    t = config.threshold or 0
    plan: dict[int, set[int]] = {}

    def split(outbox: list[Message]) -> list[Message]:
        graph = {m.metadata.dst_node: set(_peers(harness, m.metadata.dst_node)) for m in outbox}
        plan.update(_plan_split(graph, VICTIM, t))
        everyone = {int(v) for v in outbox[0].arrays[p.SURVIVORS]}
        return [
            m.replace(arrays={p.SURVIVORS: p.node_array(sorted(everyone - plan.get(m.metadata.dst_node, set())))})
            for m in outbox
        ]

    harness.run(1, _at(harness.survivor_stage(), split))
    if hardened:
        _forward_tags(harness)
    seeds = _shares(harness, VICTIM, p.SELF_MASK_SHARES, p.SURVIVORS)
    partners = _peers(harness, VICTIM)
    keys = {w: _shares(harness, w, p.MASK_KEY_SHARES, p.DROPPED) for w in partners}
    if len(seeds) < t or any(len(k) < t for k in keys.values()):
        short = sorted(w for w, k in keys.items() if len(k) < t)
        return AttackOutcome(
            False,
            harness.refusals,
            f"{len(seeds)} of t = {t} shares of v's seed; partners short of t key shares: {short}",
        )
    # Every partner's mask key is known: remove each pairwise mask of v, then v's self mask.
    params = config.round_params(40)
    session = harness.session(1)
    pk_mask = {m.metadata.src_node: m.config[p.PK_MASK] for m in harness.received(p.STAGE_SETUP, 1)}
    vector = harness.masked(1)[VICTIM].copy()
    expander = MaskExpander(vector.size, vector.dtype)
    for w in partners:
        shared = exchange(load_private(combine(keys[w], t)), pk_mask[VICTIM])
        seed = derive(shared, purpose=PURPOSE_MASK, run_id=0, server_round=1, a=VICTIM, b=w, session=session)
        expander.add(vector, seed, -1 if w > VICTIM else 1)  # v added +PRG(s_vw) when v < w
    expander.add(vector, combine(seeds, t), -1)
    vector &= low_bits_mask(params.modulus_bits)
    recovered = params.quantizer.dequantize_sum(vector[:-1], 1)
    error = float(np.max(np.abs(recovered - np.clip(harness.updates[VICTIM], -1.0, 1.0))))
    ok = error <= params.quantizer.step
    return AttackOutcome(ok, harness.refusals, f"v's update recovered from its masked vector, max error {error:.1e}")


def key_substitution(hardened: bool) -> AttackOutcome:
    """The server swaps a neighbour's round keys for its own in the victim's share-keys request.

    Against unauthenticated keys the victim encrypts its shares (and derives a pairwise
    mask) to the server, which decrypts them. Signed advertisements make the victim refuse.
    """
    harness = SecAggHarness(_updates(8, 16, 12), active=hardened)
    fake_enc, fake_mask = KeyPair.generate(), KeyPair.generate()
    swapped: list[int] = []
    sessions: list[bytes] = []

    def substitute(outbox: list[Message]) -> list[Message]:
        """Swap one neighbour's keys, keeping everything the victim checks consistent with the swap.

        The digest list changes, hence the session hash and the victim's neighbours: the
        server recomputes them (it knows the round prefix) and sends the matching list.
        """
        victim_state = harness.contexts[VICTIM].state[STATE_KEY]
        template = next(m for m in outbox if m.metadata.dst_node == VICTIM)
        ads = {r.metadata.src_node: r.config for r in harness.received(p.STAGE_SETUP, 1)}
        sig_of = lambda u: ads[u].get(p.SIGNATURE, b"")  # noqa: E731
        digests = {u: s.advertisement_digest(u, ads[u][p.PK_ENC], ads[u][p.PK_MASK], sig_of(u)) for u in ads}
        params = victim_state.params
        for w in sorted(set(ads) - {VICTIM}):
            forged = {**digests, w: s.advertisement_digest(w, fake_enc.public, fake_mask.public, sig_of(w))}
            graph = neighbour_graph(
                victim_state.nodes, params.num_neighbours, s.session_hash(victim_state.prefix, forged)
            )
            if w in graph[VICTIM]:
                sessions.append(s.session_hash(victim_state.prefix, forged))  # the victim's view of the round
                break
        peers = list(graph[VICTIM])
        keys = {u: (ads[u][p.PK_ENC], ads[u][p.PK_MASK], sig_of(u)) for u in peers}
        keys[w] = (fake_enc.public, fake_mask.public, sig_of(w))
        arrays = {
            p.NODES: p.node_array(sorted(forged)),
            p.DIGESTS: p.byte_rows([forged[u] for u in sorted(forged)], 32),
            p.PEERS: p.node_array(peers),
            p.PK_ENC: p.byte_rows([keys[u][0] for u in peers], 32),
            p.PK_MASK: p.byte_rows([keys[u][1] for u in peers], 32),
        }
        if hardened:
            arrays[p.SIGNATURES] = p.byte_rows([keys[u][2] for u in peers], 64)
        swapped.append(w)
        return [template.replace(arrays=arrays) if m is template else m for m in outbox]

    harness.run(1, _at(p.STAGE_SHARE_KEYS, substitute))
    reply = next((r for r in harness.received(p.STAGE_SHARE_KEYS, 1) if r.metadata.src_node == VICTIM), None)
    if reply is None:
        return AttackOutcome(False, harness.refusals, "the victim sent no shares")
    w = swapped[0]
    session = sessions[0]
    row = [int(v) for v in reply.arrays[p.NODES]].index(w)
    try:
        bundle = _open_bundle(harness, fake_enc.private, w, reply.arrays[p.CIPHERTEXTS][row].tobytes(), session)
    except DecryptionError:
        return AttackOutcome(False, harness.refusals, "the victim's share bundle did not decrypt")
    return AttackOutcome(len(bundle) == 2 * SHARE_BYTES, harness.refusals, "decrypted the victim's share bundle")


def _open_bundle(harness: SecAggHarness, private: X25519PrivateKey, holder: int, blob: bytes, session: bytes) -> bytes:
    """Decrypt the victim's share bundle for ``holder`` with the holder's round key (which the server holds)."""
    pk_enc = next(r.config[p.PK_ENC] for r in harness.received(p.STAGE_SETUP, 1) if r.metadata.src_node == VICTIM)
    shared = exchange(private, pk_enc)
    key = derive(shared, purpose=PURPOSE_SHARES, run_id=0, server_round=1, a=VICTIM, b=holder, session=session)
    return unseal(key, blob, associated_data(0, 1, VICTIM, holder, session))


def parameter_downgrade(hardened: bool) -> AttackOutcome:
    """The server announces k = 4, t = 3 to 20 clients where 10% may collude (secure needs far more)."""
    config = SecAggConfig(
        coordinate_bound=1.0, bits=16, weighting="uniform", num_neighbours=19, threshold=11, corruption=0.0
    )
    harness = SecAggHarness(_updates(20, 16, 13), config, active=hardened, corruption=0.1)

    def downgrade(outbox: list[Message]) -> list[Message]:
        low = {"secagg.num_neighbours": 4, "secagg.threshold": 3}
        return [m.replace(config={**m.config, **low}) for m in outbox]

    harness.run(1, _at(p.STAGE_SETUP, downgrade))
    accepted = len(harness.received(p.STAGE_SETUP, 1))
    return AttackOutcome(accepted > 0, harness.refusals, f"{accepted} of 20 clients took part with k = 4, t = 3")


class _TrustsServerGraph(SecAggPlusClient):
    """Weakened client: takes its neighbour list from the server instead of the session hash."""

    def _peers(self, message: Message, advertisers: set[int]) -> tuple[int, ...]:
        return p.read_nodes(message.arrays, p.PEERS, advertisers - {self.node_id})


def placed_colluders(hardened: bool) -> AttackOutcome:
    """The server lists t of its colluders as the victim's neighbours; they then hold t shares of both secrets."""
    config = SecAggConfig(
        coordinate_bound=1.0, bits=16, weighting="uniform", num_neighbours=8, threshold=5, corruption=0.0
    )
    client = SecAggPlusClient if hardened else _TrustsServerGraph
    harness = SecAggHarness(_updates(20, 16, 14), config, active=True, client=client)
    colluders = list(range(16, 21))  # t clients the server controls
    colluder_keys = {}

    def place(outbox: list[Message]) -> list[Message]:
        template = next(m for m in outbox if m.metadata.dst_node == VICTIM)
        setup = {r.metadata.src_node: r for r in harness.received(p.STAGE_SETUP, 1)}
        ads = {
            c: (setup[c].config[p.PK_ENC], setup[c].config[p.PK_MASK], setup[c].config[p.SIGNATURE]) for c in colluders
        }
        for c in colluders:  # the server knows its colluders' round keys
            colluder_keys[c] = load_private(harness.contexts[c].state[STATE_KEY].enc_private)
        arrays = {
            **template.arrays,
            p.PEERS: p.node_array(colluders),
            p.PK_ENC: p.byte_rows([ads[c][0] for c in colluders], 32),
            p.PK_MASK: p.byte_rows([ads[c][1] for c in colluders], 32),
            p.SIGNATURES: p.byte_rows([ads[c][2] for c in colluders], 64),
        }
        return [template.replace(arrays=arrays) if m is template else m for m in outbox]

    harness.run(1, _at(p.STAGE_SHARE_KEYS, place))
    reply = next((r for r in harness.received(p.STAGE_SHARE_KEYS, 1) if r.metadata.src_node == VICTIM), None)
    if reply is None:
        return AttackOutcome(False, harness.refusals, "the victim sent no shares")
    session = harness.contexts[VICTIM].state[STATE_KEY].session or harness.session(1)
    seeds, keys = {}, {}
    for c, blob in zip([int(v) for v in reply.arrays[p.NODES]], reply.arrays[p.CIPHERTEXTS], strict=True):
        bundle = _open_bundle(harness, colluder_keys[c], c, blob.tobytes(), session)
        seeds[c], keys[c] = decode_element(bundle[:SHARE_BYTES]), decode_element(bundle[SHARE_BYTES:])
    t = config.threshold or 0
    mask_key = load_private(combine(keys, t))
    pk_mask_victim = next(
        r.config[p.PK_MASK] for r in harness.received(p.STAGE_SETUP, 1) if r.metadata.src_node == VICTIM
    )
    ok = public_bytes(mask_key.public_key()) == pk_mask_victim and len(seeds) >= t
    return AttackOutcome(ok, harness.refusals, "the colluders hold t shares of the victim's seed and mask key")


class _IgnoresModel(SecAggPlusClient):
    """Weakened client: trains on whatever model arrives at masked input."""

    def _check_model(self, parameters: dict[str, np.ndarray], config: dict) -> None:
        del parameters, config


def model_inconsistency(hardened: bool) -> AttackOutcome:
    """Pasquini et al. CCS'22: the victim alone gets another model at masked input (same digest at setup)."""
    client = SecAggPlusClient if hardened else _IgnoresModel
    harness = SecAggHarness(_updates(8, 16, 15), client=client)

    def swap_model(outbox: list[Message]) -> list[Message]:
        return [
            m.replace(arrays={**m.arrays, "w": np.full_like(m.arrays["w"], 0.5)})
            if m.metadata.dst_node == VICTIM
            else m
            for m in outbox
        ]

    harness.run(1, _at(p.STAGE_MASKED_INPUT, swap_model))
    trained = any(r.metadata.src_node == VICTIM for r in harness.received(p.STAGE_MASKED_INPUT, 1))
    detail = "the victim trained on the server's substitute model" if trained else "the victim refused the model"
    return AttackOutcome(trained, harness.refusals, detail)


def query_pass_through(hardened: bool) -> AttackOutcome:
    """A query (not a train message) asks the client for its model; it must not leave outside the protocol."""
    local = np.arange(8, dtype=np.float64)

    def app(message: Message, context: Context) -> Message:
        del context
        return message.reply(arrays={"w": local.copy()})  # what get_parameters returns: the local model

    def pass_through(message: Message, context: Context, call_next) -> Message:
        return call_next(message, context)  # the weakened guard: only train messages go through SecAgg+

    mod = SecAggMod(semi_honest=True) if hardened else pass_through
    query = Message(Metadata(0, 1, 0, VICTIM, MessageKind.QUERY, ""))
    refusals = []
    try:
        reply = compose(app, [mod])(query, Context(node_id=VICTIM))
    except ProtocolError as exc:
        refusals.append(Refusal(VICTIM, "query", 1, type(exc).__name__, str(exc)))
        return AttackOutcome(False, refusals, "the client refused to return arrays")
    leaked = "w" in reply.arrays and np.array_equal(reply.arrays["w"], local)
    return AttackOutcome(leaked, refusals, "the query returned the client's local model")


ATTACKS: dict[str, Callable[[bool], AttackOutcome]] = {
    "split view across owners": split_view,
    "key substitution": key_substitution,
    "k/t downgrade": parameter_downgrade,
    "colluders placed by the server": placed_colluders,
    "model inconsistency": model_inconsistency,
    "query pass-through": query_pass_through,
}
"""Name -> attack, in report order."""
