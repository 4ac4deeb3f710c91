"""The SecAgg+ server: a sans-IO exchange and the :class:`Aggregator` built on it.

Bonawitz et al. CCS'17 (Figure 4) with the sparse neighbour graph of Bell et al.
CCS'20. The server only routes keys and ciphertexts, sums masked vectors as they
arrive (memory O(d + n k): one running sum, the public keys, the encrypted shares
in transit), then reconstructs the self-mask seeds of survivors and the mask keys
of neighbours that dropped after sharing keys, and removes those masks.

Dropouts are tolerated at every stage. After the setup and share-keys stages,
clients with fewer than t live neighbours are excluded (they have masked nothing
yet, so excluding them is free), repeatedly until every remaining client has t.
Whenever what remains cannot be unmasked, the round ends with :class:`ProtocolAbort`.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from privfl.core.exchange import Aggregate, ClientResult, Exchange, RoundSpec
from privfl.core.message import SERVER_NODE_ID, Config, Message
from privfl.errors import ConfigError, MessageError, ProtocolAbort, ProtocolError
from privfl.secagg import protocol as p
from privfl.secagg.config import RoundParams, SecAggConfig
from privfl.secagg.crypto import KEY_BYTES, PURPOSE_MASK, agree, load_private, public_bytes
from privfl.secagg.graph import neighbour_graph
from privfl.secagg.prg import MaskExpander, low_bits_mask
from privfl.secagg.quantization import Quantizer
from privfl.secagg.shamir import SHARE_BYTES, combine, decode_element

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
        dropped: stage to the clients that did not answer that stage's request.
        excluded: stage to the clients excluded after it for lack of t live neighbours.
    """

    params: RoundParams
    total: np.ndarray
    survivors: tuple[int, ...]
    dropped: dict[str, tuple[int, ...]] = field(default_factory=dict)
    excluded: dict[str, tuple[int, ...]] = field(default_factory=dict)


def _prune(alive: Iterable[int], graph: Mapping[int, tuple[int, ...]], threshold: int) -> set[int]:
    """The largest subset in which every client has at least ``threshold`` neighbours."""
    live = set(alive)
    while True:
        weak = {u for u in live if sum(v in live for v in graph[u]) < threshold}
        if not weak:
            return live
        live -= weak


def _collect(replies: Iterator[Message], spec: RoundSpec, stage: str, expected: set[int]) -> Iterator[Message]:
    """Replies in arrival order, each checked to be this stage's, from an expected client, once."""
    seen: set[int] = set()
    for reply in replies:
        node = reply.metadata.src_node
        if node not in expected:
            raise ProtocolError(f"{stage}: reply from node {node}, which was not asked")
        if node in seen:
            raise ProtocolError(f"{stage}: duplicate reply from node {node}")
        p.check_metadata(
            reply, stage=stage, run_id=spec.run_id, server_round=spec.server_round, src=node, dst=SERVER_NODE_ID
        )
        seen.add(node)
        yield reply


class _ServerRound:
    """The server's state during one SecAgg+ round: graph, public keys, stage bookkeeping."""

    def __init__(self, spec: RoundSpec, config: SecAggConfig) -> None:
        nodes = tuple(spec.nodes)
        if len(set(nodes)) != len(nodes):
            raise ConfigError("round nodes must be distinct")
        if len(nodes) < MIN_CLIENTS:
            raise ProtocolAbort(f"secure aggregation needs at least {MIN_CLIENTS} clients, {len(nodes)} selected")
        if any(name.startswith(p.PREFIX) for name in spec.parameters):
            raise ConfigError(f"parameter names must not start with {p.PREFIX!r}")
        self.spec = spec
        self.nodes = nodes
        self.params = config.round_params(len(nodes))
        self.t = self.params.threshold
        self.graph = neighbour_graph(nodes, self.params.num_neighbours)
        self.length = sum(int(np.size(a)) for a in spec.parameters.values()) + 1
        self.keys: dict[int, tuple[bytes, bytes]] = {}  # node -> (encryption key, mask key), public
        self.dropped: dict[str, tuple[int, ...]] = {}
        self.excluded: dict[str, tuple[int, ...]] = {}

    def neighbours(self, node: int, live: set[int]) -> tuple[int, ...]:
        return tuple(v for v in self.graph[node] if v in live)

    def message(self, node: int, stage: str, arrays: dict[str, np.ndarray], config: Config | None = None) -> Message:
        return self.spec.message_to(node, stage=stage, arrays=arrays, config={} if config is None else config)

    def keep_well_connected(self, answered: set[int], asked: Iterable[int], stage: str) -> set[int]:
        """Record who did not answer ``stage`` and who is excluded for lack of t live neighbours."""
        live = _prune(answered, self.graph, self.t)
        self.dropped[stage] = tuple(sorted(set(asked) - answered))
        self.excluded[stage] = tuple(sorted(answered - live))
        if not live:
            raise ProtocolAbort(f"round {self.spec.server_round}: no client has {self.t} live neighbours after {stage}")
        return live

    def setup(self) -> Exchange[set[int]]:
        """AdvertiseKeys: send parameters and neighbour lists, collect two public keys per client."""
        config = self.params.to_config()
        replies = yield [
            self.message(u, p.STAGE_SETUP, {p.NODES: p.node_array(self.graph[u])}, config) for u in self.nodes
        ]
        for reply in _collect(replies, self.spec, p.STAGE_SETUP, set(self.nodes)):
            p.check_names(reply, [], [p.PK_ENC, p.PK_MASK])
            self.keys[reply.metadata.src_node] = (p.read_key(reply, p.PK_ENC), p.read_key(reply, p.PK_MASK))
        return self.keep_well_connected(set(self.keys), self.nodes, p.STAGE_SETUP)

    def share_keys(self, live: set[int]) -> Exchange[tuple[set[int], dict[int, dict[int, bytes]]]]:
        """ShareKeys: route neighbours' public keys, collect encrypted shares (receiver -> sender -> bytes)."""
        outbox = []
        for u in sorted(live):
            nbrs = self.neighbours(u, live)
            arrays = {
                p.NODES: p.node_array(nbrs),
                p.PK_ENC: p.byte_rows([self.keys[v][0] for v in nbrs], KEY_BYTES),
                p.PK_MASK: p.byte_rows([self.keys[v][1] for v in nbrs], KEY_BYTES),
            }
            outbox.append(self.message(u, p.STAGE_SHARE_KEYS, arrays))
        replies = yield outbox
        mailbox: dict[int, dict[int, bytes]] = defaultdict(dict)
        shared: set[int] = set()
        for reply in _collect(replies, self.spec, p.STAGE_SHARE_KEYS, live):
            u = reply.metadata.src_node
            p.check_names(reply, [p.NODES, p.CIPHERTEXTS])
            nbrs = self.neighbours(u, live)
            dests = p.read_nodes(reply.arrays, p.NODES, nbrs)
            if len(dests) != len(nbrs):
                raise MessageError(f"node {u} sent shares to {len(dests)} of its {len(nbrs)} live neighbours")
            blobs = p.read_rows(reply.arrays, p.CIPHERTEXTS, len(dests), p.CIPHERTEXT_BYTES)
            for v, blob in zip(dests, blobs, strict=True):
                mailbox[v][u] = blob
            shared.add(u)
        return self.keep_well_connected(shared, live, p.STAGE_SHARE_KEYS), mailbox

    def masked_input(
        self, live: set[int], mailbox: dict[int, dict[int, bytes]]
    ) -> Exchange[tuple[set[int], np.ndarray]]:
        """MaskedInputCollection: forward shares with the model, fold masked vectors into a running sum."""
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
        replies = yield outbox
        params = self.params
        total = np.zeros(self.length, dtype=params.dtype)
        bound = low_bits_mask(params.modulus_bits)
        masked: set[int] = set()
        for reply in _collect(replies, self.spec, p.STAGE_MASKED_INPUT, live):
            node = reply.metadata.src_node
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
            masked.add(node)
        self.dropped[p.STAGE_MASKED_INPUT] = tuple(sorted(live - masked))
        short = [u for u in masked if len(self.neighbours(u, masked)) < self.t]
        if not masked or short:
            raise ProtocolAbort(
                f"round {self.spec.server_round}: {len(masked)} masked inputs, {len(short)} of them with fewer "
                f"than {self.t} surviving neighbours; their self masks cannot be removed"
            )
        return masked, total

    def unmask(self, masked: set[int], dropped: set[int]) -> Exchange[tuple[SharesOf, SharesOf]]:
        """Unmasking: ask each survivor for self-mask shares of survivors and mask-key shares of dropouts."""
        replies = yield [
            self.message(
                u,
                p.STAGE_UNMASK,
                {
                    p.SURVIVORS: p.node_array(self.neighbours(u, masked)),
                    p.DROPPED: p.node_array(self.neighbours(u, dropped)),
                },
            )
            for u in sorted(masked)
        ]
        self_mask_shares: SharesOf = defaultdict(dict)
        mask_key_shares: SharesOf = defaultdict(dict)
        answered = set()
        for reply in _collect(replies, self.spec, p.STAGE_UNMASK, masked):
            u = reply.metadata.src_node
            p.check_names(reply, [p.SURVIVORS, p.SELF_MASK_SHARES, p.DROPPED, p.MASK_KEY_SHARES])
            for key, table, live, store in (
                (p.SURVIVORS, p.SELF_MASK_SHARES, masked, self_mask_shares),
                (p.DROPPED, p.MASK_KEY_SHARES, dropped, mask_key_shares),
            ):
                asked = self.neighbours(u, live)
                got = p.read_nodes(reply.arrays, key, asked)
                if len(got) != len(asked):
                    raise MessageError(f"node {u}: {key} must list the {len(asked)} nodes asked about")
                for w, share in zip(got, p.read_rows(reply.arrays, table, len(got), SHARE_BYTES), strict=True):
                    store[w][u] = decode_element(share)
            answered.add(u)
        self.dropped[p.STAGE_UNMASK] = tuple(sorted(masked - answered))
        return self_mask_shares, mask_key_shares

    def remove_masks(
        self, total: np.ndarray, masked: set[int], dropped: set[int], self_masks: SharesOf, mask_keys: SharesOf
    ) -> None:
        """Subtract the survivors' self masks and the dropouts' pairwise masks from ``total``, mod 2^m."""
        expander = MaskExpander(total.size, total.dtype)
        for w in sorted(masked):
            expander.add(total, _reconstruct(self_masks[w], self.t, w, "self-mask seed"), -1)
        for v in sorted(dropped):
            partners = self.neighbours(v, masked)
            if not partners:
                continue
            private = load_private(_reconstruct(mask_keys[v], self.t, v, "mask key"))
            if public_bytes(private.public_key()) != self.keys[v][1]:
                raise ProtocolAbort(f"shares of node {v}'s mask key do not match its advertised public key")
            for u in partners:
                seed = agree(
                    private,
                    self.keys[u][1],
                    purpose=PURPOSE_MASK,
                    run_id=self.spec.run_id,
                    server_round=self.spec.server_round,
                    a=u,
                    b=v,
                )
                # u added +PRG(s_uv) if u < v, else -PRG(s_uv): remove it with the opposite sign.
                expander.add(total, seed, -1 if u < v else 1)
        total &= low_bits_mask(self.params.modulus_bits)


def secagg_exchange(spec: RoundSpec, config: SecAggConfig) -> Exchange[SecAggRoundResult]:
    """Run one SecAgg+ round over ``spec.nodes``; return the exact sum of the survivors' vectors.

    Raises:
        ProtocolAbort: too few clients remain at some stage to finish safely.
        ProtocolError, MessageError: a reply out of order or malformed.
        ConfigError: the configuration is unsafe for this number of clients.
    """
    rnd = _ServerRound(spec, config)
    live = yield from rnd.setup()
    live, mailbox = yield from rnd.share_keys(live)
    masked, total = yield from rnd.masked_input(live, mailbox)
    dropped = live - masked  # shared keys, so their pairwise masks may be in the sum
    self_masks, mask_keys = yield from rnd.unmask(masked, dropped)
    rnd.remove_masks(total, masked, dropped, self_masks, mask_keys)
    return SecAggRoundResult(
        params=rnd.params, total=total, survivors=tuple(sorted(masked)), dropped=rnd.dropped, excluded=rnd.excluded
    )


def _reconstruct(shares: dict[int, int], threshold: int, node: int, what: str) -> bytes:
    if len(shares) < threshold:
        raise ProtocolAbort(f"only {len(shares)} shares of node {node}'s {what}, threshold {threshold}")
    return combine(shares, threshold)


@dataclass(frozen=True)
class SecAggPlusAggregator:
    """An :class:`~privfl.core.exchange.Aggregator` that sums client updates with SecAgg+.

    ``FedAvg(aggregator=SecAggPlusAggregator(SecAggConfig()))`` trains with the server
    seeing only masked vectors and the sum. Clients need :func:`privfl.secagg.client.secagg_mod`.

    The update sum is sum_i w_i * clip(u_i) estimated from the quantised sum (within
    ``n * max_weight * 2 * clip / (2^bits - 1)`` per coordinate, unbiased); the weight
    sum is exact. Per-client results carry no metrics and ``num_examples`` 0: the
    server does not learn them.
    """

    config: SecAggConfig = field(default_factory=SecAggConfig)

    @property
    def weighting(self) -> str:
        """``"examples"`` or ``"uniform"``, as wrappers such as central DP check it."""
        return self.config.weighting

    @property
    def min_clients(self) -> int:
        """Fewest selected clients a round runs with (see :class:`~privfl.core.exchange.ClientFloor`)."""
        return MIN_CLIENTS

    def aggregate(self, spec: RoundSpec) -> Exchange[Aggregate]:
        result = yield from secagg_exchange(spec, self.config)
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
        )

    def contribution_error_bound(self, spec: RoundSpec) -> float:
        """L2 bound on the rounding error of one client's contribution (see :class:`BoundedDistortion`).

        Each of the d coordinates moves by less than one quantisation step 2c / (2^b - 1)
        of the w/W-scaled value, i.e. W steps in update units (W = 1 with uniform weights).
        """
        d = sum(int(np.size(v)) for v in spec.parameters.values())
        weight = self.config.max_weight if self.config.weighting == "examples" else 1
        return math.sqrt(d) * Quantizer(self.config.clip, self.config.bits).step * weight

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        del state
