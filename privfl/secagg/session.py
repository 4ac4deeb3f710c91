"""Session binding for SecAgg+: one hash of everything the parties must agree on in a round.

Bonawitz et al. CCS'17 (ePrint 2017/281, section 4, Figure 5) sign every round-1 key
under a long-term identity; Pasquini et al. CCS'22 ("Eluding secure aggregation via
model inconsistency") show that a server sending different models to different
clients isolates one client's update unless the model is bound to the round too.
Here every signature, every HKDF ``info`` and every AEAD associated data carries:

* the **round prefix** H(run, round, model digest, round parameters, the n selected
  nodes, the signed roster's digest), fixed by the setup message, which every
  advertisement signature covers; and
* the **session hash** H(prefix, every advertiser's id and advertisement digest),
  which also seeds the neighbour graph (:func:`privfl.secagg.graph.neighbour_graph`).

Two clients shown different models, parameters, node sets, rosters or key lists end
up with different session hashes, so their signatures, keys and consistency tags do
not match and the round aborts before any secret is revealed.
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Collection, Mapping, Sequence

import numpy as np

from privfl.core.message import Config
from privfl.errors import MessageError

_LABEL = b"privfl/secagg+/session/v1\x00"
DIGEST_BYTES = 32
"""Size of every digest here (SHA-256, bytes)."""


def _u64(value: int) -> bytes:
    return struct.pack(">Q", value)


def _field(data: bytes) -> bytes:
    """Length-prefixed bytes: concatenations of fields are unambiguous."""
    return _u64(len(data)) + data


def _config_bytes(config: Config) -> bytes:
    """An unambiguous encoding of config entries (sorted keys, typed values)."""
    out = [_u64(len(config))]
    for key in sorted(config):
        out.append(_field(key.encode()))
        values = config[key]
        items = values if isinstance(values, list) else [values]
        out.append(b"L" + _u64(len(items)) if isinstance(values, list) else b"S")
        for value in items:
            if isinstance(value, bool):
                out.append(b"b" + bytes([value]))
            elif isinstance(value, int):
                out.append(b"i" + _field(str(value).encode()))
            elif isinstance(value, float):
                if math.isnan(value):
                    raise MessageError(f"config entry {key!r} is NaN, which has no canonical form")
                out.append(b"f" + _field(value.hex().encode()))
            elif isinstance(value, str):
                out.append(b"s" + _field(value.encode()))
            elif isinstance(value, bytes):
                out.append(b"y" + _field(value))
            else:
                raise MessageError(f"config entry {key!r} has unsupported type {type(value).__name__}")
    return b"".join(out)


def model_digest(parameters: Mapping[str, np.ndarray], config: Config) -> bytes:
    """SHA-256 of the global model (names, dtypes, shapes, little-endian bytes) and the task config."""
    h = hashlib.sha256(_LABEL + b"model")
    h.update(_u64(len(parameters)))
    for name in sorted(parameters):
        array = np.asarray(parameters[name])
        h.update(_field(name.encode()) + _field(array.dtype.newbyteorder("<").str.encode()))
        h.update(_u64(array.ndim) + b"".join(_u64(s) for s in array.shape))
        data = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
        h.update(_u64(data.nbytes))
        h.update(memoryview(data).cast("B"))
    h.update(_config_bytes(config))
    return h.digest()


def round_prefix(
    *,
    run_id: int,
    server_round: int,
    model: bytes,
    params: Config,
    nodes: Sequence[int],
    roster: bytes,
) -> bytes:
    """H(run, round, model digest, round parameters, sorted selected nodes, roster digest or empty)."""
    h = hashlib.sha256(_LABEL + b"prefix")
    h.update(_u64(run_id) + _u64(server_round) + _field(model) + _field(_config_bytes(params)))
    h.update(_u64(len(nodes)) + b"".join(_u64(u) for u in sorted(nodes)))
    h.update(_field(roster))
    return h.digest()


def advertisement(prefix: bytes, node: int, pk_enc: bytes, pk_mask: bytes) -> bytes:
    """The bytes a client signs in round 1: both X25519 public keys, bound to its id and the round prefix."""
    return _LABEL + b"advertise" + prefix + _u64(node) + pk_enc + pk_mask


def advertisement_digest(node: int, pk_enc: bytes, pk_mask: bytes, signature: bytes) -> bytes:
    """H(node, both keys, signature or empty): how every client sees every other client's advertisement."""
    return hashlib.sha256(_LABEL + b"ad" + _u64(node) + pk_enc + pk_mask + _field(signature)).digest()


def session_hash(prefix: bytes, digests: Mapping[int, bytes]) -> bytes:
    """H(prefix, every advertiser's id and advertisement digest, by id): the round's session."""
    h = hashlib.sha256(_LABEL + b"session" + prefix + _u64(len(digests)))
    for node in sorted(digests):
        h.update(_u64(node) + digests[node])
    return h.digest()


def seed_commitment(session: bytes, node: int, seed: bytes) -> bytes:
    """H(session, node, self-mask seed): the owner's commitment to b_u, sent before any share of it.

    Bonawitz et al. CCS'17 (section 4, Figure 4) let the server reconstruct b_u from t of
    the shares that holders return, and a malicious holder can return a wrong one; the
    server checks every reconstructed seed against this commitment and decodes around
    the wrong shares (:func:`privfl.secagg.shamir.robust_combine`). A hash suffices: the
    seed is 32 bytes from the OS CSPRNG, so the digest hides it (2^256 guesses; the
    server never learns the seed of a client that drops before masking), and SHA-256's
    collision resistance binds the owner to one seed, so no other share set verifies.
    Session and node make every commitment single-use. Costs one hash per secret.
    """
    return hashlib.sha256(_LABEL + b"seed" + session + _u64(node) + seed).digest()


def survivor_digest(survivors: Collection[int]) -> bytes:
    """H(sorted survivor set): what consistency tags bind (computed once per client, not per tag)."""
    body = b"".join(_u64(u) for u in sorted(survivors))
    return hashlib.sha256(_LABEL + b"survivors" + _u64(len(survivors)) + body).digest()


def consistency_statement(session: bytes, sender: int, receiver: int, survivors: bytes) -> bytes:
    """What a client attests to a neighbour in the consistency round: the survivor set it was shown.

    Bonawitz et al. CCS'17, Figure 5, ConsistencyCheck: each client signs (round, U3); a
    client reveals shares only after t valid attestations on the same set. ``survivors``
    is :func:`survivor_digest` of the set. Sender and receiver are included so a tag
    cannot be reflected back to its author.
    """
    return _LABEL + b"consistency" + session + _u64(sender) + _u64(receiver) + survivors
