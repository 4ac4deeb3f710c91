"""The SecAgg+ server: a sans-IO exchange and the :class:`Aggregator` built on it.

Bonawitz et al. CCS'17 (Figure 4; Figure 5 for the active-server variant) with the
sparse neighbour graph of Bell et al. CCS'20. The server only routes keys,
ciphertexts and consistency tags, sums masked vectors as they arrive (memory
O(d + n k): one running sum, the public keys, the encrypted shares in transit),
then reconstructs the self-mask seeds of survivors and the mask keys of neighbours
that dropped after sharing keys, and removes those masks. Every reconstructed secret is
checked (a seed against the hash commitment its owner sent with its shares, a mask key
against its advertised public key) and decoded around wrong shares, so a holder that
returns a wrong share is a rejection, never a wrong sum.

Dropouts are tolerated at every stage, and a reply that fails validation is a
dropout too: it is recorded (:class:`Rejection`: node, stage, typed reason) and the
client is treated as gone. A client that would refuse a stage (fewer than t live
neighbours) is not asked; masked inputs are requested from the recoverable core
(:func:`recoverable_core`), the largest set whose masks can all be removed. The
round aborts only when the sum cannot be unmasked, and then :class:`ProtocolAbort`
names every secret that lacks shares.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from privfl.core.exchange import Aggregate, ClientResult, Exchange, Rejection, RoundSpec
from privfl.core.message import SERVER_NODE_ID, Config, Message
from privfl.errors import ConfigError, MessageError, PrivflError, ProtocolAbort, ProtocolError
from privfl.secagg import protocol as p
from privfl.secagg import session as s
from privfl.secagg.config import RoundParams, SecAggConfig
from privfl.secagg.crypto import KEY_BYTES, PURPOSE_MASK, agree, is_private_of, load_private
from privfl.secagg.graph import neighbour_graph
from privfl.secagg.identity import SIGNATURE_BYTES, SignedRoster, verify
from privfl.secagg.params import check_secure
from privfl.secagg.prg import MaskExpander, low_bits_mask
from privfl.secagg.quantization import Quantizer
from privfl.secagg.shamir import SHARE_BYTES, decode_element, robust_combine

MIN_CLIENTS = 2
"""Fewest clients a SecAgg+ round runs with (one client's "sum" would be its update)."""

SharesOf = dict[int, dict[int, int]]
"""Whose secret -> share holder -> share value."""


@dataclass
class SecAggRoundResult:
    """What the server learns from one SecAgg+ round.

    Attributes:
        params: the round's resolved parameters.
        total: sum mod 2^m over ``survivors`` of their quantised vectors; the last
            coordinate is the sum of their weights.
        survivors: clients whose masked input is in ``total``.
        trust: :data:`~privfl.secagg.protocol.ACTIVE` or :data:`~privfl.secagg.protocol.SEMI_HONEST`.
        dropped: stage to the clients that did not answer that stage's request.
        excluded: stage to the clients not asked at that stage because they would refuse
            (fewer than t live neighbours).
        rejected: replies that failed validation, in arrival order, then holders whose
            returned share did not match a verified secret. A client rejected at the unmask
            stage stays in ``survivors``: its masked input is already in ``total``.
    """

    params: RoundParams
    total: np.ndarray
    survivors: tuple[int, ...]
    trust: str = p.SEMI_HONEST
    dropped: dict[str, tuple[int, ...]] = field(default_factory=dict)
    excluded: dict[str, tuple[int, ...]] = field(default_factory=dict)
    rejected: tuple[Rejection, ...] = ()


def recoverable_core(clients: set[int], graph: dict[int, tuple[int, ...]], threshold: int) -> set[int]:
    """The largest subset in which every client has at least t neighbours (the graph's t-core).

    Exactly the clients whose masks can be removed: a client masks only with t partners
    (its self-mask seed and mask key need t holders), so one with fewer than t
    neighbours in the set can never be recovered, and its neighbours must not mask
    with it. Any recoverable set lies inside the t-core, and the t-core itself is
    recoverable when its clients answer, so nothing recoverable is given up. It is
    computed once, when the masked inputs are requested (Batagelj and Zaversnik 2003,
    peeling); with (k, t) from :func:`privfl.secagg.params.choose_parameters` it drops
    only the clients that lack t live neighbours themselves, except with probability
    below the abort target.
    """
    core = set(clients)
    weak = [u for u in core if sum(v in core for v in graph[u]) < threshold]
    while weak:
        u = weak.pop()
        if u in core:
            core.discard(u)
            weak.extend(v for v in graph[u] if v in core and sum(w in core for w in graph[v]) < threshold)
    return core


def check_roster_matches(config: SecAggConfig, roster: SignedRoster) -> None:
    """Raise :class:`ConfigError` unless the config's corruption and security level are the roster's.

    The operator's signed roster is the one source of truth for both: clients derive
    their floor on k and t from it, so a server choosing (k, t) from other values would
    only see its clients refuse.
    """
    signed = roster.roster
    if (config.corruption, config.security_bits) != (signed.corruption, signed.security_bits):
        raise ConfigError(
            f"SecAggConfig has corruption {config.corruption:g} and security_bits {config.security_bits:g}; the "
            f"roster the clients pin says {signed.corruption:g} and {signed.security_bits}: set "
            f"SecAggConfig(corruption={signed.corruption:g}, security_bits={signed.security_bits})"
        )


class _ServerRound:
    """The server's state during one SecAgg+ round: session, graph, public keys, stage bookkeeping."""

    def __init__(
        self, spec: RoundSpec, config: SecAggConfig, roster: SignedRoster | None, vector_length: int | None = None
    ) -> None:
        nodes = tuple(sorted(spec.nodes))
        if len(set(nodes)) != len(nodes):
            raise ConfigError("round nodes must be distinct")
        if len(nodes) < MIN_CLIENTS:
            raise ProtocolAbort(f"secure aggregation needs at least {MIN_CLIENTS} clients, {len(nodes)} selected")
        if any(name.startswith(p.PREFIX) for name in spec.parameters) or any(
            key.startswith(p.PREFIX) for key in spec.config
        ):
            raise ConfigError(f"parameter and config names must not start with {p.PREFIX!r}")
        self.spec = spec
        self.nodes = nodes
        self.params = config.round_params(len(nodes))
        self.t = self.params.threshold
        self.roster = roster
        self.trust = p.SEMI_HONEST if roster is None else p.ACTIVE
        if roster is not None:
            check_roster_matches(config, roster)
            unknown = [u for u in nodes if u not in roster.roster.keys]
            if unknown:
                raise ConfigError(f"node(s) {unknown[:8]} are not on the roster")
            # The same floor every client checks (privfl.secagg.params), from the operator's settings.
            check_secure(
                len(nodes),
                self.params.num_neighbours,
                self.t,
                corruption=roster.roster.corruption,
                security_bits=roster.roster.security_bits,
            )
        self.model = s.model_digest(spec.parameters, spec.config)
        self.prefix = s.round_prefix(
            run_id=spec.run_id,
            server_round=spec.server_round,
            model=self.model,
            params=self.params.to_config(),
            nodes=nodes,
            roster=b"" if roster is None else roster.digest,
        )
        default_length = sum(int(np.size(a)) for a in spec.parameters.values()) + 1
        self.length = default_length if vector_length is None else vector_length
        self.ads: dict[int, tuple[bytes, bytes, bytes]] = {}  # node -> (encryption key, mask key, signature)
        self.session = b""
        self.graph: dict[int, tuple[int, ...]] = {}
        self.digest_table: tuple[np.ndarray, np.ndarray] = (p.node_array(()), p.byte_rows([], 32))
        self.dropped: dict[str, tuple[int, ...]] = {}
        self.excluded: dict[str, tuple[int, ...]] = {}
        self.rejected: list[Rejection] = []
        self.commitments: dict[int, bytes] = {}  # node -> H(session, node, self-mask seed), from share-keys

    def neighbours(self, node: int, live: set[int]) -> tuple[int, ...]:
        return tuple(v for v in self.graph[node] if v in live)

    def message(self, node: int, stage: str, arrays: dict[str, np.ndarray], config: Config | None = None) -> Message:
        return self.spec.message_to(node, stage=stage, arrays=arrays, config={} if config is None else config)

    def collect(
        self, replies: Iterator[Message], stage: str, asked: set[int], accept: Callable[[int, Message], None]
    ) -> set[int]:
        """Feed each valid reply to ``accept``; record a failing one as a :class:`Rejection` (a dropout).

        ``accept`` must validate everything before it changes any state.
        """
        answered: set[int] = set()
        for reply in replies:
            node = reply.metadata.src_node
            try:
                if node not in asked:
                    raise ProtocolError(f"{stage}: reply from node {node}, which was not asked")
                if node in answered:
                    raise ProtocolError(f"{stage}: duplicate reply from node {node}")
                p.check_metadata(
                    reply,
                    stage=stage,
                    run_id=self.spec.run_id,
                    server_round=self.spec.server_round,
                    src=node,
                    dst=SERVER_NODE_ID,
                )
                accept(node, reply)
            except PrivflError as exc:
                self.rejected.append(Rejection(node, stage, type(exc).__name__, str(exc)))
                if node in asked:
                    asked = asked - {node}  # a later reply from it in this stage is not accepted either
                continue
            answered.add(node)
        self.dropped[stage] = tuple(sorted(set(asked) - answered))
        return answered

    def ask_able(self, candidates: set[int], live: set[int], stage: str) -> set[int]:
        """The candidates with at least t live neighbours; the others would refuse, so they are not asked."""
        able = {u for u in candidates if len(self.neighbours(u, live)) >= self.t}
        self.excluded[stage] = tuple(sorted(candidates - able))
        return able

    def setup(self) -> Exchange[set[int]]:
        """AdvertiseKeys: send parameters, nodes, model digest (and signed roster); collect signed public keys."""
        config: Config = {**self.params.to_config(), p.TRUST: self.trust, p.MODEL_DIGEST: self.model}
        if self.roster is not None:
            config[p.ROSTER], config[p.ROSTER_SIGNATURE] = self.roster.body, self.roster.signature
        nodes = p.node_array(self.nodes)
        replies = yield [self.message(u, p.STAGE_SETUP, {p.NODES: nodes}, config) for u in self.nodes]
        signed = self.roster is not None

        def accept(u: int, reply: Message) -> None:
            p.check_names(reply, [], [p.PK_ENC, p.PK_MASK] + ([p.SIGNATURE] if signed else []))
            enc, mask = p.read_bytes(reply, p.PK_ENC), p.read_bytes(reply, p.PK_MASK)
            sig = p.read_bytes(reply, p.SIGNATURE, SIGNATURE_BYTES) if signed else b""
            if signed:  # a forged advertisement would make every honest neighbour refuse: drop it here
                assert self.roster is not None
                verify(self.roster.roster.keys[u], sig, s.advertisement(self.prefix, u, enc, mask), f"node {u}")
            self.ads[u] = (enc, mask, sig)

        advertised = self.collect(replies, p.STAGE_SETUP, set(self.nodes), accept)
        # A public key reused across clients would make their neighbours refuse: drop every copy.
        uses = Counter(key for u in advertised for key in self.ads[u][:2])
        for u in sorted(advertised):
            if any(uses[key] > 1 for key in self.ads[u][:2]):
                self.rejected.append(Rejection(u, p.STAGE_SETUP, "MessageError", f"node {u}: public key not unique"))
                advertised.discard(u)
        digests = {u: s.advertisement_digest(u, *self.ads[u]) for u in advertised}
        self.session = s.session_hash(self.prefix, digests)
        self.graph = neighbour_graph(self.nodes, self.params.num_neighbours, self.session)
        self.digest_table = (p.node_array(sorted(digests)), p.byte_rows([digests[u] for u in sorted(digests)], 32))
        return advertised

    def share_keys(self, advertised: set[int]) -> Exchange[tuple[set[int], dict[int, dict[int, bytes]]]]:
        """ShareKeys: send every advertisement digest and the neighbours' signed keys; collect encrypted shares."""
        signed = self.roster is not None
        outbox = []
        for u in sorted(self.ask_able(advertised, advertised, p.STAGE_SHARE_KEYS)):
            peers = self.neighbours(u, advertised)
            arrays = {
                p.NODES: self.digest_table[0],
                p.DIGESTS: self.digest_table[1],
                p.PEERS: p.node_array(peers),
                p.PK_ENC: p.byte_rows([self.ads[v][0] for v in peers], KEY_BYTES),
                p.PK_MASK: p.byte_rows([self.ads[v][1] for v in peers], KEY_BYTES),
            }
            if signed:
                arrays[p.SIGNATURES] = p.byte_rows([self.ads[v][2] for v in peers], SIGNATURE_BYTES)
            outbox.append(self.message(u, p.STAGE_SHARE_KEYS, arrays))
        asked = {m.metadata.dst_node for m in outbox}
        replies = yield outbox
        mailbox: dict[int, dict[int, bytes]] = defaultdict(dict)

        def accept(u: int, reply: Message) -> None:
            p.check_names(reply, [p.NODES, p.CIPHERTEXTS], [p.SEED_COMMITMENT])
            peers = self.neighbours(u, advertised)
            dests = p.read_nodes(reply.arrays, p.NODES, peers)
            if dests != peers:
                raise MessageError(f"node {u} must send shares to its {len(peers)} neighbours, in order")
            blobs = p.read_rows(reply.arrays, p.CIPHERTEXTS, len(dests), p.CIPHERTEXT_BYTES)
            self.commitments[u] = p.read_bytes(reply, p.SEED_COMMITMENT, s.DIGEST_BYTES)
            for v, blob in zip(dests, blobs, strict=True):
                mailbox[v][u] = blob

        shared = self.collect(replies, p.STAGE_SHARE_KEYS, asked, accept)
        return shared, mailbox

    def masked_input(
        self, shared: set[int], mailbox: dict[int, dict[int, bytes]]
    ) -> Exchange[tuple[set[int], set[int], np.ndarray]]:
        """MaskedInputCollection: forward shares with the model, fold masked vectors into a running sum.

        Returns the clients that were asked (the recoverable core: partners of one
        another from here on), those whose masked input is in the sum, and the sum.
        """
        live = recoverable_core(shared, self.graph, self.t)
        self.excluded[p.STAGE_MASKED_INPUT] = tuple(sorted(shared - live))
        outbox = []
        for v in sorted(live):
            sources = self.neighbours(v, live)
            arrays = {
                **self.spec.parameters,
                p.NODES: p.node_array(sources),
                p.CIPHERTEXTS: p.byte_rows([mailbox[v][u] for u in sources], p.CIPHERTEXT_BYTES),
            }
            outbox.append(self.message(v, p.STAGE_MASKED_INPUT, arrays, dict(self.spec.config)))
        mailbox.clear()
        asked = {m.metadata.dst_node for m in outbox}
        replies = yield outbox
        params = self.params
        total = np.zeros(self.length, dtype=params.dtype)
        bound = low_bits_mask(params.modulus_bits)

        def accept(node: int, reply: Message) -> None:
            p.check_names(reply, [p.MASKED])
            vector = reply.arrays[p.MASKED]
            if vector.dtype != params.dtype or vector.shape != (self.length,):
                raise MessageError(
                    f"node {node}: masked vector must be {params.dtype} of shape ({self.length},), "
                    f"got {vector.dtype} {vector.shape}"
                )
            if params.modulus_bits % (8 * params.dtype.itemsize) and vector.max() > bound:
                raise MessageError(f"node {node}: masked values must be below 2^{params.modulus_bits}")
            np.add(total, vector, out=total)

        masked = self.collect(replies, p.STAGE_MASKED_INPUT, asked, accept)
        if not masked:
            raise ProtocolAbort(f"round {self.spec.server_round}: no masked input arrived")
        return live, masked, total

    def consistency(self, masked: set[int], shared: set[int]) -> Exchange[tuple[set[int], dict[int, dict[int, bytes]]]]:
        """ConsistencyCheck (Bonawitz et al. CCS'17, Fig. 5): send the survivor set, collect per-neighbour tags."""
        survivors = p.node_array(sorted(masked))
        asked = self.ask_able(masked, shared & masked, p.STAGE_CONSISTENCY)
        replies = yield [self.message(u, p.STAGE_CONSISTENCY, {p.SURVIVORS: survivors}) for u in sorted(asked)]
        inbox: dict[int, dict[int, bytes]] = defaultdict(dict)  # receiver -> sender -> tag

        def accept(u: int, reply: Message) -> None:
            p.check_names(reply, [p.NODES, p.TAGS])
            alive = tuple(v for v in self.neighbours(u, shared) if v in masked)
            receivers = p.read_nodes(reply.arrays, p.NODES, alive)
            if receivers != alive:
                raise MessageError(f"node {u} must attest to its {len(alive)} surviving neighbours, in order")
            for v, got in zip(receivers, p.read_rows(reply.arrays, p.TAGS, len(alive), 32), strict=True):
                inbox[v][u] = got

        confirmed = self.collect(replies, p.STAGE_CONSISTENCY, asked, accept)
        return confirmed, inbox

    def unmask(
        self, masked: set[int], shared: set[int], confirmed: set[int], inbox: dict[int, dict[int, bytes]] | None
    ) -> Exchange[tuple[SharesOf, SharesOf]]:
        """Unmasking: each survivor returns self-mask shares of surviving partners, mask-key shares of dropped ones."""
        outbox = []
        if inbox is None:  # semi-honest: the survivor set itself
            survivors = p.node_array(sorted(masked))
            able = self.ask_able(masked, shared & masked, p.STAGE_UNMASK)
            outbox = [self.message(u, p.STAGE_UNMASK, {p.SURVIVORS: survivors}) for u in sorted(able)]
        else:  # active server: the tags of neighbours that confirmed, which each client verifies
            attested = {u for u in confirmed if len(set(inbox[u]) & confirmed) >= self.t}
            self.excluded[p.STAGE_UNMASK] = tuple(sorted(confirmed - attested))
            for u in sorted(attested):
                senders = tuple(v for v in sorted(inbox[u]) if v in confirmed)
                arrays = {p.NODES: p.node_array(senders), p.TAGS: p.byte_rows([inbox[u][v] for v in senders], 32)}
                outbox.append(self.message(u, p.STAGE_UNMASK, arrays))
        asked = {m.metadata.dst_node for m in outbox}
        replies = yield outbox
        self_mask_shares: SharesOf = defaultdict(dict)
        mask_key_shares: SharesOf = defaultdict(dict)

        def accept(u: int, reply: Message) -> None:
            p.check_names(reply, [p.SURVIVORS, p.SELF_MASK_SHARES, p.DROPPED, p.MASK_KEY_SHARES])
            partners = self.neighbours(u, shared)
            received = []
            for key, table, expected, store in (
                (p.SURVIVORS, p.SELF_MASK_SHARES, tuple(v for v in partners if v in masked), self_mask_shares),
                (p.DROPPED, p.MASK_KEY_SHARES, tuple(v for v in partners if v not in masked), mask_key_shares),
            ):
                got = p.read_nodes(reply.arrays, key, expected)
                if got != expected:
                    raise MessageError(f"node {u}: {key} must list the {len(expected)} nodes asked about, in order")
                rows = p.read_rows(reply.arrays, table, len(got), SHARE_BYTES)
                received.append((store, got, [decode_element(row) for row in rows]))
            for store, got, values in received:
                for w, value in zip(got, values, strict=True):
                    store[w][u] = value

        self.collect(replies, p.STAGE_UNMASK, asked, accept)
        return self_mask_shares, mask_key_shares

    def remove_masks(
        self, total: np.ndarray, masked: set[int], shared: set[int], self_masks: SharesOf, mask_keys: SharesOf
    ) -> None:
        """Subtract the survivors' self masks and the dropouts' pairwise masks from ``total``, mod 2^m.

        Every secret is checked before use (the seed against its owner's commitment, the
        mask key against its advertised public key) and decoded around wrong shares
        (:meth:`reconstruct`), so a holder returning a wrong share is a rejection, not a
        wrong sum or an abort.

        Raises:
            ProtocolAbort: some secret has fewer than t shares, or no t of its shares give
                the committed secret; the message lists every such client and why.
        """
        dropped = {v for v in shared - masked if self.neighbours(v, masked)}  # their masks are in the sum
        missing = [
            f"self-mask seed of node {w}: {len(self_masks[w])} shares"
            for w in sorted(masked)
            if len(self_masks[w]) < self.t
        ] + [f"mask key of node {v}: {len(mask_keys[v])} shares" for v in sorted(dropped) if len(mask_keys[v]) < self.t]
        if missing:
            raise ProtocolAbort(
                f"round {self.spec.server_round}: the sum cannot be unmasked, threshold t = {self.t}: "
                + "; ".join(missing[:16])
                + (f"; and {len(missing) - 16} more" if len(missing) > 16 else "")
            )
        expander = MaskExpander(total.size, total.dtype)
        for w in sorted(masked):
            expander.add(total, self.reconstruct("self-mask seed", w, self_masks[w], self.seed_verifies), -1)
        for v in sorted(dropped):
            private = load_private(self.reconstruct("mask key", v, mask_keys[v], self.key_verifies))
            for u in self.neighbours(v, masked):
                seed = agree(
                    private,
                    self.ads[u][1],
                    purpose=PURPOSE_MASK,
                    run_id=self.spec.run_id,
                    server_round=self.spec.server_round,
                    a=u,
                    b=v,
                    session=self.session,
                )
                # u added +PRG(s_uv) if u < v, else -PRG(s_uv): remove it with the opposite sign.
                expander.add(total, seed, -1 if u < v else 1)
        total &= low_bits_mask(self.params.modulus_bits)

    def seed_verifies(self, owner: int, seed: bytes) -> bool:
        """Whether ``seed`` is the self-mask seed ``owner`` committed to at share-keys (one SHA-256)."""
        return s.seed_commitment(self.session, owner, seed) == self.commitments[owner]

    def key_verifies(self, owner: int, key: bytes) -> bool:
        """Whether ``key`` is the private half of the mask public key ``owner`` advertised (one X25519 base mult)."""
        return is_private_of(key, self.ads[owner][1])

    def reconstruct(
        self, what: str, owner: int, shares: dict[int, int], verifies: Callable[[int, bytes], bool]
    ) -> bytes:
        """The verified secret ``what`` of ``owner``; holders of wrong shares become rejections.

        Holders already caught with a wrong share are tried last. Bonawitz et al. CCS'17
        (section 4) leave a holder's wrong share undetected; here it is decoded around
        (:func:`~privfl.secagg.shamir.robust_combine`) and recorded once per holder.

        Raises:
            ProtocolAbort: no t of the shares give a secret that verifies (more wrong
                shares than the decoder corrects, or a wrong commitment from the owner).
        """
        caught = {r.node for r in self.rejected if r.stage == p.STAGE_UNMASK}
        ordered = dict(sorted(shares.items(), key=lambda item: item[0] in caught))
        found = robust_combine(ordered, self.t, lambda secret: verifies(owner, secret))
        if found is None:
            raise ProtocolAbort(
                f"round {self.spec.server_round}: no {self.t} of the {len(shares)} shares of node {owner}'s {what} "
                f"give the secret it committed to; suspected holders {sorted(shares)[:16]} (or node {owner} itself)"
            )
        for holder in found.inconsistent:
            if holder not in caught:
                reason = f"node {holder}: its share of node {owner}'s {what} does not match the committed secret"
                self.rejected.append(Rejection(holder, p.STAGE_UNMASK, "MessageError", reason))
                caught.add(holder)
        return found.secret


def secagg_exchange(
    spec: RoundSpec,
    config: SecAggConfig,
    roster: SignedRoster | None = None,
    *,
    vector_length: int | None = None,
    before_unmask: Callable[[RoundParams, tuple[int, ...]], None] | None = None,
) -> Exchange[SecAggRoundResult]:
    """Run one SecAgg+ round over ``spec.nodes``; return the exact sum of the survivors' vectors.

    With a ``roster`` the round resists an active server (signed keys, consistency
    round); without one it is the semi-honest protocol (the recipes make this choice
    explicit: :class:`SecAggPlusAggregator`). ``vector_length`` overrides the default
    length (model size + 1 weight) for clients with a custom integer encoder;
    ``before_unmask`` is called with the parameters and the clients whose masked input is
    in the sum, before any unmask request is sent: raising there ends the round with
    nothing revealed.

    Raises:
        ProtocolAbort: the sum cannot be unmasked (too many dropouts or rejected replies).
        ConfigError: the configuration is unsafe for this number of clients or roster.
    """
    rnd = _ServerRound(spec, config, roster, vector_length)
    advertised = yield from rnd.setup()
    shared, mailbox = yield from rnd.share_keys(advertised)
    live, masked, total = yield from rnd.masked_input(shared, mailbox)
    confirmed, inbox = masked, None
    if roster is not None:
        confirmed, inbox = yield from rnd.consistency(masked, live)
    if before_unmask is not None:
        before_unmask(rnd.params, tuple(sorted(masked)))
    self_masks, mask_keys = yield from rnd.unmask(masked, live, confirmed, inbox)
    rnd.remove_masks(total, masked, live, self_masks, mask_keys)
    return SecAggRoundResult(
        params=rnd.params,
        total=total,
        survivors=tuple(sorted(masked)),
        trust=rnd.trust,
        dropped=rnd.dropped,
        excluded=rnd.excluded,
        rejected=tuple(rnd.rejected),
    )


@dataclass(frozen=True)
class SecAggPlusAggregator:
    """An :class:`~privfl.core.exchange.Aggregator` that sums client updates with SecAgg+.

    Choose the trust model explicitly:
    ``SecAggPlusAggregator(SecAggConfig(), roster=signed_roster)`` runs the protocol
    that resists an actively malicious server (clients need
    ``SecAggMod(trust=ClientTrust(...))`` pinning the operator key that signed the
    roster); ``SecAggPlusAggregator(SecAggConfig(), semi_honest=True)`` trusts the
    server to follow the protocol (clients need ``SecAggMod(semi_honest=True)``), and
    says so in every round's metrics (``secagg.active_server`` = 0).

    The update sum is sum_i w_i * clip(u_i) estimated from the quantised sum (within
    ``n * max_weight * 2 * clip / (2^bits - 1)`` per coordinate, unbiased); the weight
    sum is exact. Per-client results carry no metrics and ``num_examples`` 0: the
    server does not learn them.
    """

    config: SecAggConfig = field(default_factory=SecAggConfig)
    roster: SignedRoster | None = None
    semi_honest: bool = False

    def __post_init__(self) -> None:
        if self.roster is not None:
            check_roster_matches(self.config, self.roster)
        if (self.roster is None) != self.semi_honest:
            raise ConfigError(
                "choose the SecAgg+ trust model: SecAggPlusAggregator(config, roster=signed_roster) against an "
                "active server, or SecAggPlusAggregator(config, semi_honest=True) to trust the server"
            )

    @property
    def weighting(self) -> str:
        """``"examples"`` or ``"uniform"``, as wrappers such as central DP check it."""
        return self.config.weighting

    @property
    def min_clients(self) -> int:
        """Fewest selected clients a round runs with: the smallest n >= 2 whose parameters resolve.

        See :class:`~privfl.core.exchange.ClientFloor`; central DP scales its noise by it.
        """
        for n in range(MIN_CLIENTS, 257):
            try:
                self.config.round_params(n)
            except ConfigError:
                continue
            return n
        raise ConfigError("this SecAggConfig resolves for no round of 2 to 256 clients")

    def aggregate(self, spec: RoundSpec) -> Exchange[Aggregate]:
        result = yield from secagg_exchange(spec, self.config, self.roster)
        params = result.params
        d = result.total.size - 1
        scaled = params.quantizer.dequantize_sum(result.total[:d], len(result.survivors))
        flat = scaled * float(params.max_weight)
        update_sum, offset = {}, 0
        for name, value in spec.parameters.items():
            size = int(np.size(value))
            update_sum[name] = flat[offset : offset + size].reshape(np.shape(value))
            offset += size
        weight_sum = float(result.total[d])
        metrics = {
            "num_examples": weight_sum if params.weighted else 0.0,
            "secagg.num_neighbours": float(params.num_neighbours),
            "secagg.threshold": float(params.threshold),
            "secagg.modulus_bits": float(params.modulus_bits),
            "secagg.active_server": 1.0 if result.trust == p.ACTIVE else 0.0,
            "secagg.rejected": float(len(result.rejected)),
        }
        for stage, lost in result.dropped.items():
            metrics[f"{stage}.dropped"] = float(len(lost))
        for stage, lost in result.excluded.items():
            metrics[f"{stage}.excluded"] = float(len(lost))
        return Aggregate(
            update_sum=update_sum,
            weight_sum=weight_sum,
            num_clients=len(result.survivors),
            results=[ClientResult(u, 0, {}) for u in result.survivors],
            dropped=tuple(u for u in spec.nodes if u not in set(result.survivors)),
            metrics=metrics,
            rejected=tuple(result.rejected),
        )

    def contribution_error_bound(self, spec: RoundSpec) -> float:
        """L2 bound on the rounding error of one client's contribution (see :class:`BoundedDistortion`).

        Each of the d coordinates moves by less than one quantisation step 2c / (2^b - 1)
        of the w/W-scaled value, i.e. W steps in update units (W = 1 with uniform weights).
        """
        d = sum(int(np.size(v)) for v in spec.parameters.values())
        weight = self.config.max_weight if self.config.weighting == "examples" else 1
        return math.sqrt(d) * Quantizer(self.config.coordinate_bound, self.config.bits).step * weight

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        del state
