"""SecAgg+ wire vocabulary shared by the client and server state machines.

Request/reply exchanges per round (Bonawitz et al. CCS'17, Figures 4 and 5; Bell et
al. CCS'20, Algorithm 2), named by ``Message.metadata.stage``:

========================  ====================================  ==================================
stage                     server sends                          client replies
========================  ====================================  ==================================
``secagg.setup``          parameters, selected nodes, model     two X25519 public keys, signed
                          digest, signed roster                 under the client's identity
``secagg.share_keys``     every advertisement digest, the       encrypted Shamir shares, a hash
                          client's neighbours' signed keys      commitment to the self-mask seed
``secagg.masked_input``   global model, shares for it           masked quantised update
``secagg.consistency``    the survivor set (active-server       a tag per neighbour on that set
                          mode only)
``secagg.unmask``         neighbours' tags (active-server       self-mask or mask-key shares
                          mode) or the survivor set
========================  ====================================  ==================================

Array and config names below all start with ``secagg.``, which model parameter names
therefore must not.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

import numpy as np

from privfl.core.message import Message, MessageKind
from privfl.errors import MessageError, ProtocolError
from privfl.secagg.crypto import KEY_BYTES, NONCE_BYTES, TAG_BYTES
from privfl.secagg.shamir import SHARE_BYTES

PREFIX = "secagg."
STAGE_SETUP = "secagg.setup"
STAGE_SHARE_KEYS = "secagg.share_keys"
STAGE_MASKED_INPUT = "secagg.masked_input"
STAGE_CONSISTENCY = "secagg.consistency"
STAGE_UNMASK = "secagg.unmask"
STAGES = (STAGE_SETUP, STAGE_SHARE_KEYS, STAGE_MASKED_INPUT, STAGE_CONSISTENCY, STAGE_UNMASK)

ACTIVE = "active-server"
"""Trust mode: the server may deviate arbitrarily (signed keys, consistency round)."""
SEMI_HONEST = "semi-honest"
"""Trust mode: the server follows the protocol (no identities, no consistency round)."""
TRUST_MODES = (ACTIVE, SEMI_HONEST)

NODES = "secagg.nodes"
PK_ENC = "secagg.pk_enc"
PK_MASK = "secagg.pk_mask"
CIPHERTEXTS = "secagg.ciphertexts"
MASKED = "secagg.masked"
SURVIVORS = "secagg.survivors"
DROPPED = "secagg.dropped"
SELF_MASK_SHARES = "secagg.self_mask_shares"
MASK_KEY_SHARES = "secagg.mask_key_shares"
TRUST = "secagg.trust"
MODEL_DIGEST = "secagg.model_digest"
ROSTER = "secagg.roster"
ROSTER_SIGNATURE = "secagg.roster_signature"
SIGNATURE = "secagg.signature"
DIGESTS = "secagg.digests"
PEERS = "secagg.peers"
SIGNATURES = "secagg.signatures"
TAGS = "secagg.tags"
SEED_COMMITMENT = "secagg.seed_commitment"

BUNDLE_BYTES = 2 * SHARE_BYTES
"""Plaintext of one share bundle: self-mask share || mask-key share (bytes)."""
CIPHERTEXT_BYTES = NONCE_BYTES + BUNDLE_BYTES + TAG_BYTES
"""One encrypted share bundle on the wire (bytes)."""


def check_metadata(message: Message, *, stage: str, run_id: int, server_round: int, src: int, dst: int) -> None:
    """Raise :class:`ProtocolError` unless the message is a train message of this run, round, stage and route."""
    md = message.metadata
    if md.kind is not MessageKind.TRAIN:
        raise ProtocolError(f"SecAgg+ messages are train messages, got kind {md.kind.value!r}")
    if md.stage != stage:
        raise ProtocolError(f"expected stage {stage!r}, got {md.stage!r}")
    if (md.run_id, md.server_round) != (run_id, server_round):
        raise ProtocolError(
            f"message for run {md.run_id} round {md.server_round}, expected run {run_id} round {server_round}"
        )
    if (md.src_node, md.dst_node) != (src, dst):
        raise ProtocolError(f"message from node {md.src_node} to {md.dst_node}, expected {src} to {dst}")


def check_names(message: Message, arrays: Collection[str], config: Collection[str] = ()) -> None:
    """Raise :class:`MessageError` unless the message's SecAgg+ arrays and config entries are exactly these."""
    got_arrays = {k for k in message.arrays if k.startswith(PREFIX)}
    got_config = {k for k in message.config if k.startswith(PREFIX)}
    if got_arrays != set(arrays) or got_config != set(config):
        raise MessageError(
            f"stage {message.metadata.stage!r} expects arrays {sorted(arrays)} and config {sorted(config)}, "
            f"got arrays {sorted(got_arrays)[:8]} and config {sorted(got_config)[:8]}"
        )


def node_array(nodes: Collection[int]) -> np.ndarray:
    """Node ids as an int64 array (how id lists travel)."""
    return np.fromiter(nodes, dtype=np.int64, count=len(nodes))


def read_nodes(arrays: Mapping[str, np.ndarray], key: str, allowed: Collection[int]) -> tuple[int, ...]:
    """A received id list: 1-D int64, distinct, each in ``allowed`` (else :class:`MessageError`)."""
    arr = arrays[key]
    if arr.dtype != np.int64 or arr.ndim != 1:
        raise MessageError(f"{key} must be a 1-D int64 array, got {arr.dtype} with shape {arr.shape}")
    nodes = tuple(arr.tolist())
    if len(set(nodes)) != len(nodes):
        raise MessageError(f"{key} lists a node more than once")
    if not isinstance(allowed, (set, frozenset, range, dict)):
        allowed = set(allowed)  # membership in O(1): the lists are O(n) long at every client
    unknown = [v for v in nodes if v not in allowed]
    if unknown:
        raise MessageError(f"{key} lists unexpected node id(s) {unknown[:8]}")
    return nodes


def read_rows(arrays: Mapping[str, np.ndarray], key: str, rows: int, width: int) -> list[bytes]:
    """A received byte table: uint8 of shape (rows, width), returned row by row."""
    arr = arrays[key]
    if arr.dtype != np.uint8 or arr.shape != (rows, width):
        raise MessageError(f"{key} must be uint8 of shape ({rows}, {width}), got {arr.dtype} {arr.shape}")
    return [arr[i].tobytes() for i in range(rows)]


def byte_rows(rows: list[bytes], width: int) -> np.ndarray:
    """Equal-length byte strings as a uint8 table of shape (len(rows), width)."""
    return np.frombuffer(b"".join(rows), dtype=np.uint8).reshape(len(rows), width)


def read_bytes(message: Message, key: str, size: int | None = KEY_BYTES) -> bytes:
    """A bytes config entry (exactly ``size`` bytes unless ``size`` is None)."""
    value = message.config[key]
    if not isinstance(value, bytes) or (size is not None and len(value) != size):
        raise MessageError(f"{key} must be {'' if size is None else size} bytes")
    return value
