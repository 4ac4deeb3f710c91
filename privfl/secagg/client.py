"""The SecAgg+ client: a sans-IO state machine behind a client mod.

The client follows Bonawitz et al. CCS'17 (Figure 4, with Bell et al. CCS'20's
neighbour sets in place of "all users") and enforces the checks that keep a
malicious server from learning an individual input:

* it masks only if at least t neighbours shared keys with it (else its self mask,
  which the server may reconstruct, would be its only protection);
* at unmasking, the survivor and dropout lists must partition exactly the
  neighbours it masked with, with at least t survivors; it reveals the self-mask
  share of each survivor and the mask-key share of each dropout, never both for the
  same neighbour, and refuses a second, different unmask request in the round;
* any failed check abandons the round and erases its secrets.

Secrets live in a :class:`SecAggClientState` under the context key ``"secagg"``;
only the last round id is ever checkpointed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields
from enum import Enum
from typing import Any

import numpy as np

from privfl.core.context import Context
from privfl.core.message import SERVER_NODE_ID, Message, MessageKind, check_same_layout
from privfl.core.mods import App
from privfl.core.names import NUM_EXAMPLES
from privfl.core.wire import decode, encode
from privfl.errors import MessageError, ProtocolAbort, ProtocolError
from privfl.secagg import protocol as p
from privfl.secagg.config import RoundParams
from privfl.secagg.crypto import (
    PURPOSE_MASK,
    PURPOSE_SHARES,
    KeyPair,
    agree,
    associated_data,
    load_private,
    private_bytes,
    seal,
    unseal,
)
from privfl.secagg.prg import SEED_BYTES, MaskExpander, low_bits_mask
from privfl.secagg.shamir import SHARE_BYTES, decode_element, encode_element, split

STATE_KEY = "secagg"
"""Context key of the client's :class:`SecAggClientState`."""


class Phase(str, Enum):
    """Where a client is in the current round."""

    IDLE = "idle"
    ADVERTISED = "advertised"  # sent its public keys
    SHARED = "shared"  # sent encrypted shares
    MASKED = "masked"  # sent its masked input
    UNMASKED = "unmasked"  # answered the unmask request


TRANSITIONS: dict[Phase, dict[str, Phase]] = {
    Phase.IDLE: {p.STAGE_SETUP: Phase.ADVERTISED},
    Phase.ADVERTISED: {p.STAGE_SETUP: Phase.ADVERTISED, p.STAGE_SHARE_KEYS: Phase.SHARED},
    Phase.SHARED: {p.STAGE_SETUP: Phase.ADVERTISED, p.STAGE_MASKED_INPUT: Phase.MASKED},
    Phase.MASKED: {p.STAGE_SETUP: Phase.ADVERTISED, p.STAGE_UNMASK: Phase.UNMASKED},
    # A repeated unmask request is answered only if identical to the first one.
    Phase.UNMASKED: {p.STAGE_SETUP: Phase.ADVERTISED, p.STAGE_UNMASK: Phase.UNMASKED},
}
"""Allowed (phase, incoming stage) -> next phase. A setup must also be for a newer round."""


def next_phase(phase: Phase, stage: str) -> Phase:
    """The phase after answering ``stage`` in ``phase``; :class:`ProtocolError` if not allowed."""
    allowed = TRANSITIONS[phase]
    if stage not in allowed:
        raise ProtocolError(f"stage {stage!r} is not allowed in phase {phase.value!r}")
    return allowed[stage]


@dataclass
class SecAggClientState:
    """One client's SecAgg+ state for the current round (secrets included; never checkpointed)."""

    phase: Phase = Phase.IDLE
    run_id: int = -1
    server_round: int = -1
    params: RoundParams | None = None
    neighbours: frozenset[int] = frozenset()
    enc_keys: KeyPair | None = field(default=None, repr=False)
    mask_keys: KeyPair | None = field(default=None, repr=False)
    peer_keys: dict[int, tuple[bytes, bytes]] = field(default_factory=dict, repr=False)
    share_keys: dict[int, bytes] = field(default_factory=dict, repr=False)
    self_mask_seed: bytes | None = field(default=None, repr=False)
    held_shares: dict[int, tuple[int, int]] = field(default_factory=dict, repr=False)
    partners: tuple[int, ...] = ()
    unmask_request: tuple[tuple[int, ...], tuple[int, ...]] | None = None
    unmask_reply: Message | None = field(default=None, repr=False)

    def abandon(self) -> None:
        """Forget the round's secrets; the round id stays so its messages cannot be replayed."""
        for f in fields(self):
            if f.name not in ("run_id", "server_round"):
                setattr(self, f.name, f.default_factory() if f.default is MISSING else f.default)  # type: ignore[misc]

    def state_dict(self) -> dict[str, Any]:
        """Only the last round id: secrets never reach a checkpoint."""
        return {"run_id": self.run_id, "server_round": self.server_round}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.abandon()
        self.run_id, self.server_round = int(state["run_id"]), int(state["server_round"])

    def secret_state_dict(self) -> dict[str, Any]:
        """Everything, secrets included (:class:`~privfl.core.context.SecretStateful`); stored only sealed."""

        def key(pair: KeyPair | None) -> bytes:
            return b"" if pair is None else private_bytes(pair.private)

        return {
            **self.state_dict(),
            "phase": self.phase.value,
            "params": {} if self.params is None else self.params.to_config(),
            "neighbours": sorted(self.neighbours),
            "enc_key": key(self.enc_keys),
            "mask_key": key(self.mask_keys),
            "peer_keys": {str(u): list(keys) for u, keys in self.peer_keys.items()},
            "share_keys": {str(u): k for u, k in self.share_keys.items()},
            "self_mask_seed": self.self_mask_seed or b"",
            # Shamir shares are field elements (< 2^256): as bytes, not as JSON numbers.
            "held_shares": {str(u): [encode_element(a), encode_element(b)] for u, (a, b) in self.held_shares.items()},
            "partners": list(self.partners),
            "unmask_request": None if self.unmask_request is None else [list(x) for x in self.unmask_request],
            "unmask_reply": b"" if self.unmask_reply is None else encode(self.unmask_reply),
        }

    def load_secret_state_dict(self, state: dict[str, Any]) -> None:
        self.load_state_dict(state)

        def pair(raw: bytes) -> KeyPair | None:
            return KeyPair(load_private(raw)) if raw else None

        self.phase = Phase(state["phase"])
        self.params = RoundParams.from_config(state["params"]) if state["params"] else None
        self.neighbours = frozenset(int(u) for u in state["neighbours"])
        self.enc_keys, self.mask_keys = pair(state["enc_key"]), pair(state["mask_key"])
        self.peer_keys = {int(u): (bytes(a), bytes(b)) for u, (a, b) in state["peer_keys"].items()}
        self.share_keys = {int(u): bytes(k) for u, k in state["share_keys"].items()}
        self.self_mask_seed = bytes(state["self_mask_seed"]) or None
        self.held_shares = {
            int(u): (decode_element(a), decode_element(b)) for u, (a, b) in state["held_shares"].items()
        }
        self.partners = tuple(int(u) for u in state["partners"])
        request = state["unmask_request"]
        self.unmask_request = None if request is None else (tuple(request[0]), tuple(request[1]))
        self.unmask_reply = decode(state["unmask_reply"]) if state["unmask_reply"] else None


class SecAggPlusClient:
    """The SecAgg+ client protocol for one node, as a pure function of state and message.

    Args:
        node_id: this client's node id.
        state: its state (kept across messages by the caller).
    """

    def __init__(self, node_id: int, state: SecAggClientState) -> None:
        self.node_id = node_id
        self.state = state

    def handle(self, message: Message, fit: Callable[[Message], Message]) -> Message:
        """Answer one SecAgg+ message; ``fit`` runs local training on a plain train message.

        Raises:
            ProtocolError: a stage out of order, a stale round, or a request that fails a
                safety check (:class:`ProtocolAbort`); the round is then abandoned.
            MessageError, DecryptionError: malformed content or shares that fail authentication.
        """
        st, md = self.state, message.metadata
        phase = next_phase(st.phase, md.stage)
        setup = md.stage == p.STAGE_SETUP
        if setup and md.run_id == st.run_id and md.server_round <= st.server_round:
            raise ProtocolError(
                f"client {self.node_id}: setup for round {md.server_round}, not newer than round {st.server_round}"
            )
        run_id, server_round = (md.run_id, md.server_round) if setup else (st.run_id, st.server_round)
        p.check_metadata(
            message, stage=md.stage, run_id=run_id, server_round=server_round, src=SERVER_NODE_ID, dst=self.node_id
        )
        if setup:  # a new round: whatever was left of the previous one is erased
            st.abandon()
            st.run_id, st.server_round = run_id, server_round
        try:
            reply = self._dispatch(message, fit)
        except Exception:
            st.abandon()
            raise
        st.phase = phase
        return reply

    def _dispatch(self, message: Message, fit: Callable[[Message], Message]) -> Message:
        stage = message.metadata.stage
        if stage == p.STAGE_SETUP:
            return self._setup(message)
        if stage == p.STAGE_SHARE_KEYS:
            return self._share_keys(message)
        if stage == p.STAGE_MASKED_INPUT:
            return self._masked_input(message, fit)
        return self._unmask(message)

    def _setup(self, message: Message) -> Message:
        p.check_names(message, [p.NODES], [f"secagg.{k}" for k in RoundParams.__dataclass_fields__])
        params = RoundParams.from_config(message.config)
        others = range(1, 2**63)
        neighbours = p.read_nodes(message.arrays, p.NODES, others)
        if self.node_id in neighbours or len(neighbours) != params.num_neighbours:
            raise MessageError(
                f"client {self.node_id}: neighbour list must hold {params.num_neighbours} other nodes, "
                f"got {len(neighbours)}"
            )
        st = self.state
        st.params, st.neighbours = params, frozenset(neighbours)
        st.enc_keys, st.mask_keys = KeyPair.generate(), KeyPair.generate()
        return message.reply(config={p.PK_ENC: st.enc_keys.public, p.PK_MASK: st.mask_keys.public})

    def _share_keys(self, message: Message) -> Message:
        st = self.state
        assert st.params is not None and st.enc_keys is not None and st.mask_keys is not None
        p.check_names(message, [p.NODES, p.PK_ENC, p.PK_MASK])
        nodes = p.read_nodes(message.arrays, p.NODES, st.neighbours)
        t = st.params.threshold
        if len(nodes) < t:
            raise ProtocolAbort(f"client {self.node_id}: only {len(nodes)} neighbours advertised keys, threshold {t}")
        pk_enc = p.read_rows(message.arrays, p.PK_ENC, len(nodes), 32)
        pk_mask = p.read_rows(message.arrays, p.PK_MASK, len(nodes), 32)
        all_keys = [*pk_enc, *pk_mask, st.enc_keys.public, st.mask_keys.public]
        if len(set(all_keys)) != len(all_keys):
            raise MessageError(f"client {self.node_id}: advertised public keys must all be distinct")
        # Bonawitz et al. CCS'17, Fig. 4 Round 1: share b_u and s_u^SK among the neighbours.
        st.self_mask_seed = os.urandom(SEED_BYTES)
        b_shares = split(st.self_mask_seed, nodes, t)
        sk_shares = split(private_bytes(st.mask_keys.private), nodes, t)
        ciphertexts = []
        for v, enc_v in zip(nodes, pk_enc, strict=True):
            key = st.share_keys[v] = self._agree(st.enc_keys, enc_v, v, PURPOSE_SHARES)
            bundle = encode_element(b_shares[v]) + encode_element(sk_shares[v])
            ad = associated_data(st.run_id, st.server_round, self.node_id, v)
            ciphertexts.append(seal(key, bundle, ad))
        st.peer_keys = {v: (e, m) for v, e, m in zip(nodes, pk_enc, pk_mask, strict=True)}
        arrays = {p.NODES: p.node_array(nodes), p.CIPHERTEXTS: p.byte_rows(ciphertexts, p.CIPHERTEXT_BYTES)}
        return message.reply(arrays=arrays)

    def _agree(self, keys: KeyPair, peer_public: bytes, peer: int, purpose: bytes) -> bytes:
        st = self.state
        return agree(
            keys.private,
            peer_public,
            purpose=purpose,
            run_id=st.run_id,
            server_round=st.server_round,
            a=self.node_id,
            b=peer,
        )

    def _masked_input(self, message: Message, fit: Callable[[Message], Message]) -> Message:
        st = self.state
        assert st.params is not None and st.enc_keys is not None and st.mask_keys is not None
        assert st.self_mask_seed is not None
        p.check_names(message, [p.NODES, p.CIPHERTEXTS])
        sources = p.read_nodes(message.arrays, p.NODES, st.peer_keys)
        t = st.params.threshold
        if len(sources) < t:
            raise ProtocolAbort(
                f"client {self.node_id}: shares from only {len(sources)} neighbours, threshold {t}; refusing to mask"
            )
        st.partners = sources
        blobs = p.read_rows(message.arrays, p.CIPHERTEXTS, len(sources), p.CIPHERTEXT_BYTES)
        for u, blob in zip(sources, blobs, strict=True):
            bundle = unseal(st.share_keys[u], blob, associated_data(st.run_id, st.server_round, u, self.node_id))
            st.held_shares[u] = (decode_element(bundle[:SHARE_BYTES]), decode_element(bundle[SHARE_BYTES:]))

        parameters = {k: v for k, v in message.arrays.items() if not k.startswith(p.PREFIX)}
        if not parameters or any(v.dtype.kind != "f" for v in parameters.values()):
            raise MessageError(f"client {self.node_id}: the masked-input request needs floating-point parameters")
        config = {k: v for k, v in message.config.items() if not k.startswith(p.PREFIX)}
        reply = fit(message.replace(arrays=parameters, config=config).with_stage(""))
        vector = self._encode(*self._update(parameters, reply))
        self._mask(vector, sources)
        st.self_mask_seed = st.enc_keys = st.mask_keys = None  # no longer needed: erase
        st.share_keys = {}
        return message.reply(arrays={p.MASKED: vector})

    def _update(self, parameters: dict[str, np.ndarray], reply: Message) -> tuple[np.ndarray, int]:
        """The flattened update (local - global, float64) and the client's weight."""
        params = self.state.params
        assert params is not None
        check_same_layout(parameters, reply.arrays, f"client {self.node_id} fit reply")
        num_examples = reply.metrics.get(NUM_EXAMPLES)
        if isinstance(num_examples, bool) or not isinstance(num_examples, int) or num_examples < 0:
            raise MessageError(f"client {self.node_id}: fit reply needs a non-negative int {NUM_EXAMPLES}")
        update = np.empty(sum(v.size for v in parameters.values()), dtype=np.float64)
        offset = 0
        for name, value in parameters.items():
            end = offset + value.size
            np.subtract(reply.arrays[name].ravel(), value.ravel(), out=update[offset:end], dtype=np.float64)
            offset = end
        if not np.all(np.isfinite(update)):
            raise MessageError(f"client {self.node_id}: fit produced non-finite parameters")
        weight = min(num_examples, params.max_weight) if params.weighted else 1
        return update, weight

    def _encode(self, update: np.ndarray, weight: int) -> np.ndarray:
        """The unmasked vector: Q(w / W * clip(u)) followed by the weight w (integers mod 2^m)."""
        params = self.state.params
        assert params is not None
        vector = np.empty(update.size + 1, dtype=params.dtype)
        params.quantizer.quantize(
            update, params.dtype, scale=weight / params.max_weight, overwrite=True, out=vector[:-1]
        )
        vector[-1] = weight
        return vector

    def _mask(self, vector: np.ndarray, partners: tuple[int, ...]) -> None:
        """Add PRG(b_u) and the signed pairwise masks to ``vector`` in place, mod 2^m."""
        st = self.state
        assert st.params is not None and st.self_mask_seed is not None and st.mask_keys is not None
        expander = MaskExpander(vector.size, vector.dtype)
        expander.add(vector, st.self_mask_seed)
        for v in partners:
            seed = self._agree(st.mask_keys, st.peer_keys[v][1], v, PURPOSE_MASK)
            # Bonawitz et al. CCS'17 section 3.2: u adds PRG(s_uv) if u < v and subtracts it if u > v.
            expander.add(vector, seed, 1 if self.node_id < v else -1)
        vector &= low_bits_mask(st.params.modulus_bits)

    def _unmask(self, message: Message) -> Message:
        st = self.state
        assert st.params is not None
        p.check_names(message, [p.SURVIVORS, p.DROPPED])
        survivors = p.read_nodes(message.arrays, p.SURVIVORS, st.partners)
        dropped = p.read_nodes(message.arrays, p.DROPPED, st.partners)
        request = (survivors, dropped)
        if st.phase is Phase.UNMASKED:
            if request != st.unmask_request or st.unmask_reply is None:
                raise ProtocolAbort(f"client {self.node_id}: a second, different unmask request in the same round")
            return st.unmask_reply
        if set(survivors) & set(dropped) or len(survivors) + len(dropped) != len(st.partners):
            raise ProtocolAbort(
                f"client {self.node_id}: survivors and dropouts must partition the {len(st.partners)} "
                "neighbours it masked with"
            )
        if len(survivors) < st.params.threshold:
            raise ProtocolAbort(
                f"client {self.node_id}: only {len(survivors)} surviving neighbours, threshold {st.params.threshold}"
            )
        # Bonawitz et al. CCS'17, Fig. 4 Round 4: b-shares of survivors, sk-shares of dropouts, never both.
        self_mask = [encode_element(st.held_shares[v][0]) for v in survivors]
        mask_key = [encode_element(st.held_shares[v][1]) for v in dropped]
        reply = message.reply(
            arrays={
                p.SURVIVORS: p.node_array(survivors),
                p.SELF_MASK_SHARES: p.byte_rows(self_mask, SHARE_BYTES),
                p.DROPPED: p.node_array(dropped),
                p.MASK_KEY_SHARES: p.byte_rows(mask_key, SHARE_BYTES),
            }
        )
        st.held_shares = {}  # erase the shares: the cached reply is all a retransmission needs
        st.unmask_request, st.unmask_reply = request, reply
        return reply


def secagg_mod(message: Message, context: Context, call_next: App) -> Message:
    """Client mod that takes part in SecAgg+ for every train message.

    Evaluate and query messages pass through. A train message that is not a SecAgg+
    stage is refused (:class:`ProtocolError`): answering it would send the update in
    the clear. At the masked-input stage the mod calls ``call_next`` with a plain
    train message holding the global model and sends back only the masked vector
    (no per-client metrics: they would leak what SecAgg+ hides).
    """
    if message.metadata.kind is not MessageKind.TRAIN:
        return call_next(message, context)
    if message.metadata.stage not in p.STAGES:
        raise ProtocolError(
            f"client {context.node_id}: refusing train stage {message.metadata.stage!r} without secure aggregation"
        )
    state = context.get_or_create(STATE_KEY, SecAggClientState)
    return SecAggPlusClient(context.node_id, state).handle(message, lambda m: call_next(m, context))
