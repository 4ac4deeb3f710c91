"""The SecAgg+ client: a sans-IO state machine behind a client mod.

The client follows Bonawitz et al. CCS'17 (Figure 4; Figure 5 for the active-server
variant), with Bell et al. CCS'20's neighbour sets in place of "all users", and
enforces the checks that keep a malicious server from learning an individual input:

* parameters: k and t must pass :func:`privfl.secagg.params.check_secure` for the
  announced n and the roster's corruption fraction (the server uses the same function);
* identities (active-server mode): the roster must carry the pinned operator's
  signature, and every neighbour's round keys its identity's signature over the
  round prefix (:mod:`privfl.secagg.session`);
* the neighbour graph is recomputed from the session hash, and a different list of
  neighbours is refused; the model must match the digest committed at setup;
* it masks only if at least t neighbours shared keys with it, and commits to its
  self-mask seed (a hash sent with its shares) so a wrong share of it is detected;
* consistency (active-server mode): it reveals shares only after t neighbours
  attested, with a tag under the pairwise key, the very survivor set it attested;
  it then reveals the self-mask share of each surviving partner and the mask-key
  share of each dropped one, never both, and never for a second set;
* any failed check abandons the round and erases its secrets.

Secrets live in a :class:`SecAggClientState` under the context key ``"secagg"``; only
the last round id reaches a checkpoint. :meth:`SecAggClientState.secret_state_dict`
gives the full state for a runtime that seals it (Flower's deployment runtime).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import MISSING, dataclass, field, fields
from enum import Enum
from typing import Any

import numpy as np

from privfl.core.context import Context
from privfl.core.message import SERVER_NODE_ID, Message, MessageKind, check_same_layout
from privfl.core.mods import App
from privfl.core.names import NUM_EXAMPLES
from privfl.dp.clipping import clip_to_round_config
from privfl.errors import AuthenticationError, ConfigError, MessageError, ProtocolAbort, ProtocolError
from privfl.secagg import protocol as p
from privfl.secagg import session as s
from privfl.secagg.config import RoundParams
from privfl.secagg.crypto import (
    PURPOSE_CONSISTENCY,
    PURPOSE_MASK,
    PURPOSE_SHARES,
    KeyPair,
    associated_data,
    derive,
    exchange,
    load_private,
    private_bytes,
    seal,
    tag,
    tag_matches,
    unseal,
)
from privfl.secagg.graph import neighbours_of
from privfl.secagg.identity import SIGNATURE_BYTES, ClientTrust, Roster, SignedRoster, verify
from privfl.secagg.params import check_secure
from privfl.secagg.prg import SEED_BYTES, MaskExpander, low_bits_mask
from privfl.secagg.shamir import SHARE_BYTES, encode_element, split

STATE_KEY = "secagg"
"""Context key of the client's :class:`SecAggClientState`."""
TAG_BYTES = 32


class Phase(str, Enum):
    """Where a client is in the current round."""

    IDLE = "idle"
    ADVERTISED = "advertised"  # sent its public keys
    SHARED = "shared"  # sent encrypted shares
    MASKED = "masked"  # sent its masked input
    CONFIRMED = "confirmed"  # attested the survivor set (active-server mode)
    UNMASKED = "unmasked"  # answered the unmask request


TRANSITIONS: dict[Phase, dict[str, Phase]] = {
    Phase.IDLE: {p.STAGE_SETUP: Phase.ADVERTISED},
    Phase.ADVERTISED: {p.STAGE_SETUP: Phase.ADVERTISED, p.STAGE_SHARE_KEYS: Phase.SHARED},
    Phase.SHARED: {p.STAGE_SETUP: Phase.ADVERTISED, p.STAGE_MASKED_INPUT: Phase.MASKED},
    Phase.MASKED: {
        p.STAGE_SETUP: Phase.ADVERTISED,
        p.STAGE_CONSISTENCY: Phase.CONFIRMED,
        p.STAGE_UNMASK: Phase.UNMASKED,
    },
    # A repeated consistency or unmask request is answered from the cached reply only.
    Phase.CONFIRMED: {
        p.STAGE_SETUP: Phase.ADVERTISED,
        p.STAGE_CONSISTENCY: Phase.CONFIRMED,
        p.STAGE_UNMASK: Phase.UNMASKED,
    },
    Phase.UNMASKED: {p.STAGE_SETUP: Phase.ADVERTISED, p.STAGE_UNMASK: Phase.UNMASKED},
}
"""Allowed (phase, incoming stage) -> next phase. A setup must also be for a newer round;
in active-server mode unmasking needs the consistency stage first, and semi-honest mode has none."""


def next_phase(phase: Phase, stage: str, trust: str) -> Phase:
    """The phase after answering ``stage`` in ``phase``; :class:`ProtocolError` if not allowed."""
    allowed = TRANSITIONS[phase]
    skips_consistency = trust == p.ACTIVE and phase is Phase.MASKED and stage == p.STAGE_UNMASK
    if stage not in allowed or skips_consistency or (trust == p.SEMI_HONEST and stage == p.STAGE_CONSISTENCY):
        raise ProtocolError(f"stage {stage!r} is not allowed in phase {phase.value!r} ({trust} mode)")
    return allowed[stage]


_SECRET_FIELDS = ("enc_private", "mask_private", "share_keys", "tag_keys", "self_mask_seed", "held_shares")


@dataclass
class SecAggClientState:
    """One client's SecAgg+ state for the current round (secrets included; never checkpointed in the clear)."""

    phase: Phase = Phase.IDLE
    run_id: int = -1
    server_round: int = -1
    params: RoundParams | None = None
    nodes: tuple[int, ...] = ()
    roster: Roster | None = field(default=None, repr=False)
    model: bytes = b""  # model digest committed at setup
    prefix: bytes = b""
    session: bytes = b""
    enc_private: bytes | None = field(default=None, repr=False)
    mask_private: bytes | None = field(default=None, repr=False)
    signature: bytes = field(default=b"", repr=False)
    public_keys: tuple[bytes, bytes] = ()  # this client's (encryption, mask) public keys
    peers: tuple[int, ...] = ()  # neighbours that advertised keys
    peer_keys: dict[int, tuple[bytes, bytes]] = field(default_factory=dict, repr=False)
    share_keys: dict[int, bytes] = field(default_factory=dict, repr=False)
    tag_keys: dict[int, bytes] = field(default_factory=dict, repr=False)
    self_mask_seed: bytes | None = field(default=None, repr=False)
    held_shares: dict[int, tuple[bytes, bytes]] = field(default_factory=dict, repr=False)
    partners: tuple[int, ...] = ()  # neighbours masked with
    survivors: tuple[int, ...] | None = None  # the survivor set this client accepted
    consistency_reply: dict[str, np.ndarray] | None = field(default=None, repr=False)
    unmask_reply: dict[str, np.ndarray] | None = field(default=None, repr=False)

    def abandon(self) -> None:
        """Forget the round's secrets; the round id stays so its messages cannot be replayed."""
        for f in fields(self):
            if f.name not in ("run_id", "server_round"):
                setattr(self, f.name, f.default_factory() if f.default is MISSING else f.default)  # type: ignore[misc]

    def state_dict(self) -> dict[str, Any]:
        """Only the last round id: secrets never reach a plain checkpoint."""
        return {"run_id": self.run_id, "server_round": self.server_round}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.abandon()
        self.run_id, self.server_round = int(state["run_id"]), int(state["server_round"])

    def secret_state_dict(self) -> dict[str, Any]:
        """The full round state, secrets included, as JSON values, bytes and arrays (seal before storing)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Phase):
                value = value.value
            elif isinstance(value, RoundParams):
                value = value.to_config()
            elif isinstance(value, Roster):
                value = value.to_json()
            elif isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, dict) and f.name not in ("consistency_reply", "unmask_reply"):
                value = {str(k): list(v) if isinstance(v, tuple) else v for k, v in value.items()}
            out[f.name] = value
        return out

    def load_secret_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`secret_state_dict` output (:class:`MessageError` if it is not one)."""
        names = {f.name for f in fields(self)}
        if not isinstance(state, dict) or set(state) != names:
            raise MessageError("not a SecAgg+ client secret state")
        try:
            self.phase = Phase(state["phase"])
            self.run_id, self.server_round = int(state["run_id"]), int(state["server_round"])
            self.params = None if state["params"] is None else RoundParams.from_config(state["params"])
            self.roster = None if state["roster"] is None else Roster.from_json(state["roster"])
            self.nodes = tuple(int(u) for u in state["nodes"])
            self.peers = tuple(int(u) for u in state["peers"])
            self.public_keys = tuple(state["public_keys"])  # type: ignore[assignment]
            self.partners = tuple(int(u) for u in state["partners"])
            self.survivors = None if state["survivors"] is None else tuple(int(u) for u in state["survivors"])
            for name in ("model", "prefix", "session", "signature", "enc_private", "mask_private", "self_mask_seed"):
                setattr(self, name, state[name])
            self.peer_keys = {int(k): (v[0], v[1]) for k, v in state["peer_keys"].items()}
            self.held_shares = {int(k): (v[0], v[1]) for k, v in state["held_shares"].items()}
            self.share_keys = {int(k): v for k, v in state["share_keys"].items()}
            self.tag_keys = {int(k): v for k, v in state["tag_keys"].items()}
            self.consistency_reply, self.unmask_reply = state["consistency_reply"], state["unmask_reply"]
        except (KeyError, TypeError, ValueError, ConfigError) as exc:
            self.abandon()
            raise MessageError(f"corrupt SecAgg+ client secret state: {exc}") from None


IntegerEncoder = Callable[[np.ndarray, Message, RoundParams], np.ndarray]
"""Turns a client's flat float64 update into the integer vector it masks, in place of the quantiser.

Called with the update, the masked-input request (run, round, model and round config) and
the round's SecAgg+ parameters; returns words of ``params.dtype`` below 2^m, of the length
the server expects (e.g. :func:`privfl.ddp.client.ddp_encoder`).
"""


class SecAggPlusClient:
    """The SecAgg+ client protocol for one node, as a pure function of state and message.

    Args:
        node_id: this client's node id.
        state: its state (kept across messages by the caller).
        trust: the pinned operator key and identities (active-server mode); ``None``
            for semi-honest mode.
        rosters: a cache of rosters already verified under ``trust`` (shared by the
            clients of one process; optional).
        profile: called with (node, step, seconds) for the timed steps "verify" (roster
            and neighbours' signatures), "sign", "model_digest", "encode" (clip, scale,
            quantise) and "mask" (key agreements and mask expansion); for benchmarks.
        encoder: replaces the default quantiser (and weight coordinate) if given.
        _entropy: the source of every random byte of the client's rounds (key pairs,
            self-mask seed, Shamir coefficients, AES-GCM nonces, quantiser coins): the
            OS CSPRNG; tests only replace it (known-answer transcripts).
    """

    def __init__(
        self,
        node_id: int,
        state: SecAggClientState,
        trust: ClientTrust | None,
        rosters: dict[bytes, Roster] | None = None,
        profile: Callable[[int, str, float], None] | None = None,
        encoder: IntegerEncoder | None = None,
        *,
        _entropy: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.node_id = node_id
        self.state = state
        self.trust = trust
        self.mode = p.SEMI_HONEST if trust is None else p.ACTIVE
        self.rosters = {} if rosters is None else rosters
        self.profile = profile
        self.encoder = encoder
        self._entropy = _entropy

    @contextmanager
    def _timed(self, step: str) -> Iterator[None]:
        if self.profile is None:
            yield
            return
        start = time.perf_counter()
        try:
            yield
        finally:
            self.profile(self.node_id, step, time.perf_counter() - start)

    def handle(self, message: Message, fit: Callable[[Message], Message]) -> Message:
        """Answer one SecAgg+ message; ``fit`` runs local training on a plain train message.

        Raises:
            ProtocolError: a stage out of order, a stale round, or a request that fails a
                safety check (:class:`ProtocolAbort`, :class:`AuthenticationError`); the
                round is then abandoned.
            MessageError, DecryptionError: malformed content or shares that fail authentication.
        """
        st, md = self.state, message.metadata
        phase = next_phase(st.phase, md.stage, self.mode)
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
        if stage == p.STAGE_CONSISTENCY:
            return self._consistency(message)
        return self._unmask(message)

    # --- round 0: AdvertiseKeys --------------------------------------------------------------

    def _setup(self, message: Message) -> Message:
        st = self.state
        mode = message.config.get(p.TRUST)
        if mode != self.mode:
            raise ProtocolAbort(
                f"client {self.node_id} runs SecAgg+ in {self.mode} mode; the server asked for {mode!r}"
            )
        extra = [p.TRUST, p.MODEL_DIGEST] + ([p.ROSTER, p.ROSTER_SIGNATURE] if self.trust else [])
        p.check_names(message, [p.NODES], [f"secagg.{k}" for k in RoundParams.__dataclass_fields__] + extra)
        params = RoundParams.from_config(message.config)
        nodes = p.read_nodes(message.arrays, p.NODES, range(1, 2**63))
        if self.node_id not in nodes or len(nodes) != params.num_nodes or list(nodes) != sorted(nodes):
            raise MessageError(
                f"client {self.node_id}: the node list must hold the {params.num_nodes} selected nodes, "
                "sorted, this one included"
            )
        roster_digest = b""
        if self.trust is not None:
            signed = SignedRoster(p.read_bytes(message, p.ROSTER, None), p.read_bytes(message, p.ROSTER_SIGNATURE, 64))
            with self._timed("verify"):
                st.roster = self._verified_roster(signed)
            roster_digest = signed.digest
            unknown = [u for u in nodes if u not in st.roster.keys]
            if unknown:
                raise AuthenticationError(f"client {self.node_id}: node(s) {unknown[:8]} are not on the roster")
            try:  # the floor on k and t, from n and the operator's corruption bound (same function as the server)
                check_secure(
                    params.num_nodes,
                    params.num_neighbours,
                    params.threshold,
                    corruption=st.roster.corruption,
                    security_bits=st.roster.security_bits,
                )
            except ConfigError as exc:
                raise ProtocolAbort(f"client {self.node_id}: refusing insecure parameters: {exc}") from None
        st.params, st.nodes = params, nodes
        st.model = p.read_bytes(message, p.MODEL_DIGEST, s.DIGEST_BYTES)
        st.prefix = s.round_prefix(
            run_id=st.run_id,
            server_round=st.server_round,
            model=st.model,
            params=params.to_config(),
            nodes=nodes,
            roster=roster_digest,
        )
        enc, mask = KeyPair.generate(_entropy=self._entropy), KeyPair.generate(_entropy=self._entropy)
        st.enc_private, st.mask_private = private_bytes(enc.private), private_bytes(mask.private)
        st.public_keys = (enc.public, mask.public)
        config = {p.PK_ENC: enc.public, p.PK_MASK: mask.public}
        if self.trust is not None:  # Bonawitz et al. CCS'17, Figure 5, round 0: sign both public keys
            ad = s.advertisement(st.prefix, self.node_id, enc.public, mask.public)
            with self._timed("sign"):
                st.signature = config[p.SIGNATURE] = self.trust.identity(self.node_id).sign(ad)
        return message.reply(config=config)

    def _verified_roster(self, signed: SignedRoster) -> Roster:
        assert self.trust is not None
        roster = self.rosters.get(signed.digest)
        if roster is None:
            roster = self.rosters[signed.digest] = signed.verify(self.trust.operator_key)
        return roster

    # --- round 1: ShareKeys ------------------------------------------------------------------

    def _share_keys(self, message: Message) -> Message:
        st = self.state
        assert st.params is not None and st.enc_private is not None and st.mask_private is not None
        signed = self.trust is not None
        p.check_names(message, [p.NODES, p.DIGESTS, p.PEERS, p.PK_ENC, p.PK_MASK] + ([p.SIGNATURES] if signed else []))
        advertisers = p.read_nodes(message.arrays, p.NODES, st.nodes)
        digests = dict(zip(advertisers, p.read_rows(message.arrays, p.DIGESTS, len(advertisers), 32), strict=True))
        own_keys = st.public_keys
        if digests.get(self.node_id) != s.advertisement_digest(self.node_id, *own_keys, st.signature):
            raise AuthenticationError(f"client {self.node_id}: the server altered or left out its advertisement")
        st.session = s.session_hash(st.prefix, digests)
        peers = self._peers(message, set(digests))
        t = st.params.threshold
        if len(peers) < t:
            raise ProtocolAbort(f"client {self.node_id}: only {len(peers)} neighbours advertised keys, threshold {t}")
        pk_enc = p.read_rows(message.arrays, p.PK_ENC, len(peers), 32)
        pk_mask = p.read_rows(message.arrays, p.PK_MASK, len(peers), 32)
        sigs = p.read_rows(message.arrays, p.SIGNATURES, len(peers), SIGNATURE_BYTES) if signed else [b""] * len(peers)
        all_keys = [*pk_enc, *pk_mask, *own_keys]
        if len(set(all_keys)) != len(all_keys):
            raise MessageError(f"client {self.node_id}: advertised public keys must all be distinct")
        for v, enc_v, mask_v, sig_v in zip(peers, pk_enc, pk_mask, sigs, strict=True):
            if s.advertisement_digest(v, enc_v, mask_v, sig_v) != digests[v]:
                raise AuthenticationError(f"client {self.node_id}: node {v}'s keys do not match their digest")
            if signed:  # key substitution: only the roster identity of v can have signed v's keys
                assert st.roster is not None
                ad = s.advertisement(st.prefix, v, enc_v, mask_v)
                with self._timed("verify"):
                    verify(st.roster.keys[v], sig_v, ad, f"client {self.node_id}: node {v}'s advertisement")
        # Bonawitz et al. CCS'17, Fig. 4 Round 1: share b_u and s_u^SK among the neighbours.
        st.self_mask_seed = self._entropy(SEED_BYTES)
        b_shares = split(st.self_mask_seed, peers, t, _entropy=self._entropy)
        sk_shares = split(st.mask_private, peers, t, _entropy=self._entropy)
        enc_private = load_private(st.enc_private)
        ciphertexts = []
        for v, enc_v in zip(peers, pk_enc, strict=True):
            shared = exchange(enc_private, enc_v)
            st.share_keys[v] = self._derive(shared, v, PURPOSE_SHARES)
            if signed:
                st.tag_keys[v] = self._derive(shared, v, PURPOSE_CONSISTENCY)
            bundle = encode_element(b_shares[v]) + encode_element(sk_shares[v])
            ad = associated_data(st.run_id, st.server_round, self.node_id, v, st.session)
            ciphertexts.append(seal(st.share_keys[v], bundle, ad, _entropy=self._entropy))
        st.peers = peers
        st.peer_keys = {v: (e, m) for v, e, m in zip(peers, pk_enc, pk_mask, strict=True)}
        arrays = {p.NODES: p.node_array(peers), p.CIPHERTEXTS: p.byte_rows(ciphertexts, p.CIPHERTEXT_BYTES)}
        # The server checks the reconstructed b_u against this (privfl.secagg.session.seed_commitment).
        commitment = s.seed_commitment(st.session, self.node_id, st.self_mask_seed)
        return message.reply(arrays=arrays, config={p.SEED_COMMITMENT: commitment})

    def _peers(self, message: Message, advertisers: set[int]) -> tuple[int, ...]:
        """This client's neighbours that advertised keys, as the session hash gives them (Bell et al. CCS'20 graph).

        The server's list must be exactly this one: a server cannot choose neighbours.
        """
        st = self.state
        assert st.params is not None
        neighbours = neighbours_of(self.node_id, st.nodes, st.params.num_neighbours, st.session)
        expected = tuple(v for v in neighbours if v in advertisers)
        peers = p.read_nodes(message.arrays, p.PEERS, advertisers)
        if peers != expected:
            raise AuthenticationError(
                f"client {self.node_id}: the server's neighbour list differs from the one the session hash gives"
            )
        return peers

    def _check_model(self, parameters: dict[str, np.ndarray], config: dict[str, Any]) -> None:
        """Pasquini et al. CCS'22: the model must be the one bound into the session at setup."""
        if s.model_digest(parameters, config) != self.state.model:
            raise AuthenticationError(f"client {self.node_id}: the model differs from the one committed at setup")

    def _derive(self, shared: bytes, peer: int, purpose: bytes) -> bytes:
        st = self.state
        return derive(
            shared,
            purpose=purpose,
            run_id=st.run_id,
            server_round=st.server_round,
            a=self.node_id,
            b=peer,
            session=st.session,
        )

    # --- round 2: MaskedInputCollection ------------------------------------------------------

    def _masked_input(self, message: Message, fit: Callable[[Message], Message]) -> Message:
        st = self.state
        assert st.params is not None and st.self_mask_seed is not None
        p.check_names(message, [p.NODES, p.CIPHERTEXTS])
        parameters = {k: v for k, v in message.arrays.items() if not k.startswith(p.PREFIX)}
        config = {k: v for k, v in message.config.items() if not k.startswith(p.PREFIX)}
        with self._timed("model_digest"):
            self._check_model(parameters, config)
        sources = p.read_nodes(message.arrays, p.NODES, st.peer_keys)
        t = st.params.threshold
        if len(sources) < t:
            raise ProtocolAbort(
                f"client {self.node_id}: shares from only {len(sources)} neighbours, threshold {t}; refusing to mask"
            )
        blobs = p.read_rows(message.arrays, p.CIPHERTEXTS, len(sources), p.CIPHERTEXT_BYTES)
        for u, blob in zip(sources, blobs, strict=True):
            ad = associated_data(st.run_id, st.server_round, u, self.node_id, st.session)
            bundle = unseal(st.share_keys[u], blob, ad)
            st.held_shares[u] = (bundle[:SHARE_BYTES], bundle[SHARE_BYTES:])
        st.partners = sources
        if not parameters or any(v.dtype.kind != "f" for v in parameters.values()):
            raise MessageError(f"client {self.node_id}: the masked-input request needs floating-point parameters")
        reply = fit(message.replace(arrays=parameters, config=config).with_stage(""))
        reply = clip_to_round_config(config, parameters, reply)  # the server's DP clip norm, if any
        with self._timed("encode"):
            update, weight = self._update(parameters, reply)
            vector = self._encode(update, weight) if self.encoder is None else self._custom(update, message)
        with self._timed("mask"):
            self._mask(vector, sources)
        st.self_mask_seed = st.enc_private = st.mask_private = None  # no longer needed: erase
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
            update,
            params.dtype,
            scale=weight / params.max_weight,
            overwrite=True,
            out=vector[:-1],
            _entropy=self._entropy,
        )
        vector[-1] = weight
        return vector

    def _custom(self, update: np.ndarray, message: Message) -> np.ndarray:
        """The encoder's vector, checked to be words of the round's dtype below 2^m."""
        params = self.state.params
        assert params is not None and self.encoder is not None
        vector = np.array(self.encoder(update, message, params), copy=True)
        if vector.dtype != params.dtype or vector.ndim != 1:
            raise ProtocolError(f"client {self.node_id}: the encoder must return a 1-D {params.dtype} vector")
        if vector.size and int(vector.max()) > int(low_bits_mask(params.modulus_bits)):
            raise ProtocolError(f"client {self.node_id}: encoded values must be below 2^{params.modulus_bits}")
        return vector

    def _mask(self, vector: np.ndarray, partners: tuple[int, ...]) -> None:
        """Add PRG(b_u) and the signed pairwise masks to ``vector`` in place, mod 2^m."""
        st = self.state
        assert st.params is not None and st.self_mask_seed is not None and st.mask_private is not None
        expander = MaskExpander(vector.size, vector.dtype)
        expander.add(vector, st.self_mask_seed)
        mask_private = load_private(st.mask_private)
        for v in partners:
            seed = self._derive(exchange(mask_private, st.peer_keys[v][1]), v, PURPOSE_MASK)
            # Bonawitz et al. CCS'17 section 3.2: u adds PRG(s_uv) if u < v and subtracts it if u > v.
            expander.add(vector, seed, 1 if self.node_id < v else -1)
        vector &= low_bits_mask(st.params.modulus_bits)

    # --- round 3: ConsistencyCheck (active-server mode) --------------------------------------

    def _read_survivors(self, message: Message) -> tuple[int, ...]:
        st = self.state
        survivors = p.read_nodes(message.arrays, p.SURVIVORS, st.nodes)
        if self.node_id not in survivors or list(survivors) != sorted(survivors):
            raise MessageError(f"client {self.node_id}: the survivor set must be sorted and include this client")
        if st.survivors is not None and survivors != st.survivors:
            raise ProtocolAbort(f"client {self.node_id}: a second, different survivor set in the same round")
        return survivors

    def _consistency(self, message: Message) -> Message:
        """Bonawitz et al. CCS'17, Figure 5, round 3: attest the survivor set to each surviving partner."""
        st = self.state
        assert st.params is not None
        p.check_names(message, [p.SURVIVORS])
        survivors = self._read_survivors(message)
        if st.consistency_reply is not None:
            return message.reply(arrays=st.consistency_reply)
        alive = [v for v in st.partners if v in set(survivors)]
        if len(alive) < st.params.threshold:
            raise ProtocolAbort(
                f"client {self.node_id}: only {len(alive)} surviving neighbours, threshold {st.params.threshold}"
            )
        digest = s.survivor_digest(survivors)
        tags = [tag(st.tag_keys[v], s.consistency_statement(st.session, self.node_id, v, digest)) for v in alive]
        st.survivors = survivors
        st.consistency_reply = {p.NODES: p.node_array(alive), p.TAGS: p.byte_rows(tags, TAG_BYTES)}
        return message.reply(arrays=st.consistency_reply)

    # --- round 4: Unmasking ------------------------------------------------------------------

    def _unmask(self, message: Message) -> Message:
        st = self.state
        assert st.params is not None
        t = st.params.threshold
        if self.trust is not None:
            assert st.survivors is not None
            p.check_names(message, [p.NODES, p.TAGS])
            if st.unmask_reply is not None:
                return message.reply(arrays=st.unmask_reply)
            survivors = st.survivors
            alive = set(survivors)
            senders = p.read_nodes(message.arrays, p.NODES, [v for v in st.partners if v in alive])
            tags = p.read_rows(message.arrays, p.TAGS, len(senders), TAG_BYTES)
            digest = s.survivor_digest(survivors)
            valid = sum(
                tag_matches(st.tag_keys[v], s.consistency_statement(st.session, v, self.node_id, digest), got)
                for v, got in zip(senders, tags, strict=True)
            )
            if valid < t:  # the split-view defence: t neighbours must have been shown the same set
                raise AuthenticationError(
                    f"client {self.node_id}: only {valid} neighbours attested the survivor set it was shown, "
                    f"threshold {t}; revealing nothing"
                )
        else:
            p.check_names(message, [p.SURVIVORS])
            survivors = self._read_survivors(message)
            if st.unmask_reply is not None:
                return message.reply(arrays=st.unmask_reply)
        alive = set(survivors)
        surviving = tuple(v for v in st.partners if v in alive)
        dropped = tuple(v for v in st.partners if v not in alive)
        if len(surviving) < t:
            raise ProtocolAbort(f"client {self.node_id}: only {len(surviving)} surviving neighbours, threshold {t}")
        # Bonawitz et al. CCS'17, Fig. 4 Round 4: b-shares of survivors, sk-shares of dropouts, never both.
        st.unmask_reply = {
            p.SURVIVORS: p.node_array(surviving),
            p.SELF_MASK_SHARES: p.byte_rows([st.held_shares[v][0] for v in surviving], SHARE_BYTES),
            p.DROPPED: p.node_array(dropped),
            p.MASK_KEY_SHARES: p.byte_rows([st.held_shares[v][1] for v in dropped], SHARE_BYTES),
        }
        st.survivors = survivors
        st.held_shares, st.tag_keys = {}, {}  # erase: the cached reply is all a retransmission needs
        return message.reply(arrays=st.unmask_reply)


@dataclass(frozen=True)
class SecAggMod:
    """Client mod that takes part in SecAgg+ for every train message.

    Choose the trust model explicitly: ``SecAggMod(trust=federation_trust)`` protects
    against an actively malicious server (signed keys from a roster the operator
    signed, consistency round); ``SecAggMod(semi_honest=True)`` trusts the server to
    follow the protocol and needs no keys. ``profile`` (optional) receives per-step
    timings, see :class:`SecAggPlusClient`.

    A train message that is not a SecAgg+ stage is refused (:class:`ProtocolError`):
    answering it would send the update in the clear. At the masked-input stage the mod
    calls ``call_next`` with a plain train message holding the global model and sends
    back only the masked vector (no per-client metrics). Replies to evaluate and query
    messages may carry metrics but never arrays: a model returned there would bypass
    the protocol. ``encoder`` replaces the quantiser (e.g. the distributed-DP encoder).
    """

    trust: ClientTrust | None = None
    semi_honest: bool = False
    encoder: IntegerEncoder | None = None
    profile: Callable[[int, str, float], None] | None = field(default=None, repr=False)
    _rosters: dict[bytes, Roster] = field(default_factory=dict, repr=False, compare=False)
    _client: type[SecAggPlusClient] = field(default=SecAggPlusClient, repr=False)  # audits plant weakened clients
    _entropy: Callable[[int], bytes] = field(default=os.urandom, repr=False)  # tests only: known-answer transcripts

    def __post_init__(self) -> None:
        if (self.trust is None) != self.semi_honest:
            raise ConfigError(
                "choose the SecAgg+ trust model: SecAggMod(trust=ClientTrust(...)) against an active server, "
                "or SecAggMod(semi_honest=True) to trust the server to follow the protocol"
            )

    def __call__(self, message: Message, context: Context, call_next: App) -> Message:
        if message.metadata.kind is not MessageKind.TRAIN:
            reply = call_next(message, context)
            if reply.arrays:
                raise ProtocolError(
                    f"client {context.node_id}: refusing to return arrays in a {message.metadata.kind.value} "
                    "reply while SecAgg+ protects this client's model"
                )
            return reply
        if message.metadata.stage not in p.STAGES:
            raise ProtocolError(
                f"client {context.node_id}: refusing train stage {message.metadata.stage!r} without secure aggregation"
            )
        state = context.get_or_create(STATE_KEY, SecAggClientState)
        client = self._client(
            context.node_id,
            state,
            self.trust,
            self._rosters,
            self.profile,
            encoder=self.encoder,
            _entropy=self._entropy,
        )
        return client.handle(message, lambda m: call_next(m, context))
