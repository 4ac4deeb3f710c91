"""Key agreement, key derivation and authenticated encryption for SecAgg+.

Each client holds two X25519 key pairs per round (Bonawitz et al. CCS'17, Round 0
"AdvertiseKeys"): one to agree on the AES-GCM keys that protect secret shares in
transit (and, against an active server, the keys of consistency tags), one to agree
on the seeds of pairwise masks. Shared secrets go through HKDF-SHA256 (RFC 5869)
with an ``info`` string that names the purpose, the run, the round, both node ids
and the session hash, so no derived key is ever reused across purposes, rounds,
pairs or views of a round. Every decryption failure raises the same :class:`DecryptionError`.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from privfl.errors import DecryptionError, MessageError

KEY_BYTES = 32
"""Size of X25519 keys, derived keys and seeds (bytes)."""
NONCE_BYTES = 12
"""AES-GCM nonce size (bytes); nonces are random, from os.urandom."""
TAG_BYTES = 16
"""AES-GCM tag size (bytes)."""

PURPOSE_SHARES = b"share-encryption"
PURPOSE_MASK = b"pairwise-mask"
PURPOSE_CONSISTENCY = b"consistency"
SESSION_BYTES = 32
"""Size of a session hash (bytes, SHA-256)."""
_LABEL = b"privfl/secagg+/v1/"


def public_bytes(public: X25519PublicKey) -> bytes:
    """The 32-byte raw encoding of an X25519 public key."""
    return public.public_bytes(Encoding.Raw, PublicFormat.Raw)


@dataclass(frozen=True)
class KeyPair:
    """An X25519 key pair generated from the OS CSPRNG."""

    private: X25519PrivateKey = field(repr=False)

    @classmethod
    def generate(cls, *, _entropy: Callable[[int], bytes] | None = None) -> KeyPair:
        """A fresh key pair; ``_entropy`` (tests only) supplies the 32 private-key bytes instead of the OS."""
        if _entropy is None:
            return cls(X25519PrivateKey.generate())
        # RFC 7748 section 5: any 32 bytes are a private key (X25519 clamps them).
        return cls(X25519PrivateKey.from_private_bytes(_entropy(KEY_BYTES)))

    @property
    def public(self) -> bytes:
        """The public key, raw (32 bytes)."""
        return public_bytes(self.private.public_key())


def load_public(data: bytes) -> X25519PublicKey:
    """Parse a raw 32-byte X25519 public key received from another party."""
    if not isinstance(data, bytes) or len(data) != KEY_BYTES:
        raise MessageError(f"an X25519 public key must be {KEY_BYTES} bytes")
    return X25519PublicKey.from_public_bytes(data)


def load_private(data: bytes) -> X25519PrivateKey:
    """Parse a raw 32-byte X25519 private key (e.g. one reconstructed from shares)."""
    if len(data) != KEY_BYTES:
        raise MessageError(f"an X25519 private key must be {KEY_BYTES} bytes")
    return X25519PrivateKey.from_private_bytes(data)


def exchange(private: X25519PrivateKey, peer_public: bytes) -> bytes:
    """The raw X25519 shared secret (RFC 7748) with a peer; feed it to :func:`derive`, never use it as a key.

    An all-zero output (a small-order peer key) is rejected by ``cryptography``.
    """
    try:
        return private.exchange(load_public(peer_public))
    except ValueError:
        raise MessageError("X25519 key agreement failed: invalid peer public key") from None


def derive(shared: bytes, *, purpose: bytes, run_id: int, server_round: int, a: int, b: int, session: bytes) -> bytes:
    """A 32-byte key for one purpose, pair and session from an X25519 shared secret.

    HKDF-SHA256 (RFC 5869) with info = label || purpose || run || round || min(a, b) ||
    max(a, b) || session: symmetric in the pair, distinct for every other context. The
    session hash (:mod:`privfl.secagg.session`) binds the key to the round's model,
    parameters and every signed key (Bonawitz et al. CCS'17, section 4; Pasquini et al.
    CCS'22 for the model), so a server showing two clients different views of the round
    leaves them with different keys.
    """
    if len(session) != SESSION_BYTES:
        raise MessageError(f"a session hash must be {SESSION_BYTES} bytes")
    lo, hi = sorted((a, b))
    info = _LABEL + purpose + struct.pack(">QQQQ", run_id, server_round, lo, hi) + session
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=info).derive(shared)


def agree(
    private: X25519PrivateKey,
    peer_public: bytes,
    *,
    purpose: bytes,
    run_id: int,
    server_round: int,
    a: int,
    b: int,
    session: bytes,
) -> bytes:
    """:func:`exchange` then :func:`derive`: the key nodes ``a`` and ``b`` share for one purpose in one session."""
    shared = exchange(private, peer_public)
    return derive(shared, purpose=purpose, run_id=run_id, server_round=server_round, a=a, b=b, session=session)


def associated_data(run_id: int, server_round: int, sender: int, receiver: int, session: bytes) -> bytes:
    """AES-GCM associated data binding a share bundle to its run, round, sender, receiver and session."""
    return _LABEL + struct.pack(">QQQQ", run_id, server_round, sender, receiver) + session


def tag(key: bytes, message: bytes) -> bytes:
    """HMAC-SHA256 of ``message`` under a 32-byte key (32 bytes)."""
    return hmac.new(key, message, hashlib.sha256).digest()


def tag_matches(key: bytes, message: bytes, received: bytes) -> bool:
    """Constant-time check of a :func:`tag`."""
    return hmac.compare_digest(tag(key, message), received)


def seal(key: bytes, plaintext: bytes, ad: bytes, *, _entropy: Callable[[int], bytes] = os.urandom) -> bytes:
    """AES-256-GCM encryption (NIST SP 800-38D): random nonce || ciphertext || tag.

    Each key seals one bundle per round, so random 96-bit nonces never repeat under a
    key. ``_entropy`` replaces the OS CSPRNG in tests only.
    """
    nonce = _entropy(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, ad)


def unseal(key: bytes, blob: bytes, ad: bytes) -> bytes:
    """Inverse of :func:`seal`. Any failure (length, tag, wrong key or ad) raises one :class:`DecryptionError`."""
    if len(blob) < NONCE_BYTES + TAG_BYTES:
        raise DecryptionError("decryption failed")
    try:
        return AESGCM(key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], ad)
    except InvalidTag:
        raise DecryptionError("decryption failed") from None


def clamp(key: bytes) -> bytes:
    """The canonical encoding of an X25519 private key: decodeScalar25519 (RFC 7748, section 5).

    Keys that differ only in the bits clamping clears are the same key; requiring the
    clamped form makes private key bytes and public keys correspond one to one (clamped
    scalars are multiples of 8 below 2^255, and two of them differ by less than 8 times
    the group order).
    """
    body = bytearray(key)
    body[0] &= 248
    body[31] = (body[31] & 127) | 64
    return bytes(body)


def private_bytes(private: X25519PrivateKey) -> bytes:
    """The canonical (:func:`clamp`) 32-byte encoding of an X25519 private key (shared for dropout recovery)."""
    return clamp(private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()))


def is_private_of(key: bytes, public: bytes) -> bool:
    """Whether ``key`` is the canonical encoding of the private key of the raw X25519 ``public`` key.

    A reconstructed key must be checked this way, not by its public key alone: a share
    holder that knows its Lagrange coefficient can shift the reconstruction by 2^248
    (a bit clamping clears), giving a different secret with the same public key, and a
    robust decoder would then take the honest holders for the liars.
    """
    return len(key) == KEY_BYTES and key == clamp(key) and public_bytes(load_private(key).public_key()) == public
