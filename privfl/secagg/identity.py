"""Long-term identities for SecAgg+ against an active server: Ed25519 keys and a signed roster.

Bonawitz et al. CCS'17 (ePrint 2017/281, section 4 and Figure 5) make the protocol
secure against an actively malicious server with a PKI: every client has a
long-term signing key, signs its round keys, and checks its neighbours' signatures.
Here the PKI is a :class:`Roster` (node id -> Ed25519 public key, plus the security
settings the operator fixes) signed by an operator key that every client pins.
The server only relays the signed roster; it cannot add, drop or swap a key, nor
lower the declared corruption fraction or the security level.

File formats (no pickle): private keys are unencrypted PKCS#8 PEM; public keys and
signatures are lowercase hex; a signed roster is a JSON object
``{"format": "privfl-roster/v1", "roster": <canonical roster>, "signature": <hex>}``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)

from privfl.errors import AuthenticationError, ConfigError, MessageError

PUBLIC_KEY_BYTES = 32
"""Size of a raw Ed25519 public key (bytes)."""
SIGNATURE_BYTES = 64
"""Size of an Ed25519 signature (bytes)."""
ROSTER_FORMAT = "privfl-roster/v1"
_ROSTER_LABEL = b"privfl/roster/v1\x00"
MAX_ROSTER_NODES = 1 << 20


@dataclass(frozen=True)
class IdentityKey:
    """A long-term Ed25519 signing key (a node's identity, or the operator's roster key)."""

    private: Ed25519PrivateKey = field(repr=False)

    @classmethod
    def generate(cls) -> IdentityKey:
        """A fresh key from the OS CSPRNG."""
        return cls(Ed25519PrivateKey.generate())

    @cached_property
    def public(self) -> bytes:
        """The raw 32-byte public key."""
        return self.private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    def sign(self, message: bytes) -> bytes:
        """An Ed25519 signature (RFC 8032) of ``message`` (64 bytes)."""
        return self.private.sign(message)

    def to_pem(self) -> bytes:
        """The private key as unencrypted PKCS#8 PEM (keep the file readable by its owner only)."""
        return self.private.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())

    @classmethod
    def from_pem(cls, data: bytes) -> IdentityKey:
        """Parse a PKCS#8 PEM Ed25519 private key (:class:`ConfigError` for anything else)."""
        try:
            key = load_pem_private_key(data, password=None)
        except (ValueError, TypeError):
            raise ConfigError("not an unencrypted PKCS#8 PEM private key") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise ConfigError("the PEM file holds a key that is not Ed25519")
        return cls(key)

    @classmethod
    def load(cls, path: str | Path) -> IdentityKey:
        return cls.from_pem(Path(path).read_bytes())


def verify(public: bytes, signature: bytes, message: bytes, what: str) -> None:
    """Raise :class:`AuthenticationError` unless ``signature`` is ``public``'s Ed25519 signature of ``message``."""
    if not isinstance(signature, bytes) or len(signature) != SIGNATURE_BYTES:
        raise AuthenticationError(f"{what}: a signature must be {SIGNATURE_BYTES} bytes")
    try:
        _public_key(public).verify(signature, message)
    except (InvalidSignature, ValueError):
        raise AuthenticationError(f"{what}: invalid signature") from None


@lru_cache(maxsize=1 << 14)
def _public_key(public: bytes) -> Ed25519PublicKey:
    """A parsed identity key; roster keys recur every round, so each is parsed once per process."""
    return Ed25519PublicKey.from_public_bytes(public)


def read_public_key(text: str, what: str = "public key") -> bytes:
    """A raw Ed25519 public key from its hex form (:class:`ConfigError` if malformed)."""
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        raise ConfigError(f"{what} must be hex") from None
    if len(key) != PUBLIC_KEY_BYTES:
        raise ConfigError(f"{what} must be {PUBLIC_KEY_BYTES} bytes, got {len(key)}")
    return key


@dataclass(frozen=True)
class Roster:
    """Who may take part in SecAgg+ rounds, and the security settings the operator fixes.

    Attributes:
        keys: node id -> that node's Ed25519 identity public key (32 bytes).
        corruption: declared bound on the fraction of a round's clients that may collude
            with the server, in [0, 1). Clients derive their floor on k and t from it.
        security_bits: the round's failure probability must stay below 2^-security_bits.
    """

    keys: Mapping[int, bytes]
    corruption: float
    security_bits: int = 40

    def __post_init__(self) -> None:
        if not 1 <= len(self.keys) <= MAX_ROSTER_NODES:
            raise ConfigError(f"a roster lists 1 to {MAX_ROSTER_NODES} nodes, got {len(self.keys)}")
        for node, key in self.keys.items():
            if isinstance(node, bool) or not isinstance(node, int) or not 1 <= node < 2**63:
                raise ConfigError(f"roster node ids must be ints in [1, 2^63), got {node!r}")
            if not isinstance(key, bytes) or len(key) != PUBLIC_KEY_BYTES:
                raise ConfigError(f"node {node}: an identity key must be {PUBLIC_KEY_BYTES} bytes")
        if len(set(self.keys.values())) != len(self.keys):
            raise ConfigError("two roster nodes share an identity key")
        corruption = self.corruption
        if isinstance(corruption, bool) or not isinstance(corruption, (int, float)) or not 0 <= corruption < 1:
            raise ConfigError(f"corruption must be a fraction in [0, 1), got {corruption!r}")
        bits = self.security_bits
        if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 256:
            raise ConfigError(f"security_bits must be an int in [1, 256], got {bits!r}")

    def to_json(self) -> dict[str, Any]:
        return {
            "corruption": float(self.corruption),
            "security_bits": self.security_bits,
            "keys": {str(node): self.keys[node].hex() for node in sorted(self.keys)},
        }

    def canonical(self) -> bytes:
        """The bytes the operator signs: sorted-key, compact JSON (UTF-8)."""
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: Any) -> Roster:
        if not isinstance(data, dict) or set(data) != {"corruption", "security_bits", "keys"}:
            raise ConfigError("a roster is an object with exactly corruption, security_bits and keys")
        keys = data["keys"]
        if not isinstance(keys, dict):
            raise ConfigError("roster keys must map node ids to hex public keys")
        parsed = {}
        for node, key in keys.items():
            if not isinstance(node, str) or not node.isdigit() or not isinstance(key, str):
                raise ConfigError("roster keys must map decimal node ids to hex public keys")
            parsed[int(node)] = read_public_key(key, f"node {node}'s identity key")
        return cls(parsed, data["corruption"], data["security_bits"])

    def sign(self, operator: IdentityKey) -> SignedRoster:
        """This roster signed by the operator (the key clients pin)."""
        body = self.canonical()
        return SignedRoster(body, operator.sign(_ROSTER_LABEL + body))


@dataclass(frozen=True)
class SignedRoster:
    """A roster's canonical bytes and the operator's signature over them, as the server relays them."""

    body: bytes = field(repr=False)
    signature: bytes = field(repr=False)

    @cached_property
    def roster(self) -> Roster:
        """The roster, parsed (not verified: clients call :meth:`verify`)."""
        try:
            data = json.loads(self.body)
        except (ValueError, UnicodeDecodeError):
            raise MessageError("a roster must be UTF-8 JSON") from None
        try:
            roster = Roster.from_json(data)
        except ConfigError as exc:
            raise MessageError(f"invalid roster: {exc}") from None
        if roster.canonical() != self.body:
            raise MessageError("roster bytes are not in canonical form")
        return roster

    @cached_property
    def digest(self) -> bytes:
        """SHA-256 of the signed roster (bound into every round's session)."""
        return hashlib.sha256(_ROSTER_LABEL + self.body + self.signature).digest()

    def verify(self, operator_key: bytes) -> Roster:
        """The roster if the pinned operator key signed it, else :class:`AuthenticationError`."""
        verify(operator_key, self.signature, _ROSTER_LABEL + self.body, "roster")
        return self.roster

    def to_json(self) -> dict[str, Any]:
        return {"format": ROSTER_FORMAT, "roster": json.loads(self.body), "signature": self.signature.hex()}

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> SignedRoster:
        """Read a signed roster file (checked for form here, for its signature by :meth:`verify`)."""
        try:
            data = json.loads(Path(path).read_text())
        except ValueError:
            raise ConfigError(f"{path}: not JSON") from None
        if (
            not isinstance(data, dict)
            or data.get("format") != ROSTER_FORMAT
            or set(data)
            != {
                "format",
                "roster",
                "signature",
            }
        ):
            raise ConfigError(f"{path}: not a {ROSTER_FORMAT} file")
        roster = Roster.from_json(data["roster"])
        try:
            signature = bytes.fromhex(data["signature"])
        except (TypeError, ValueError):
            raise ConfigError(f"{path}: the signature must be hex") from None
        return cls(roster.canonical(), signature)


@dataclass(frozen=True)
class ClientTrust:
    """What an honest client pins to take part in SecAgg+ against an active server.

    Attributes:
        operator_key: the operator's Ed25519 public key; only rosters it signed are accepted.
        identities: node id -> that node's identity key (one entry on a real device; one
            per simulated client when many run in one process).
    """

    operator_key: bytes
    identities: Mapping[int, IdentityKey] = field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.operator_key, bytes) or len(self.operator_key) != PUBLIC_KEY_BYTES:
            raise ConfigError(f"operator_key must be a raw {PUBLIC_KEY_BYTES}-byte Ed25519 public key")
        if not all(isinstance(k, IdentityKey) for k in self.identities.values()):
            raise ConfigError("identities must map node ids to IdentityKey objects")

    def identity(self, node_id: int) -> IdentityKey:
        key = self.identities.get(node_id)
        if key is None:
            raise ConfigError(f"no identity key for node {node_id}")
        return key


@dataclass(frozen=True)
class Federation:
    """Operator, node keys and signed roster generated together: for simulations, tests and demos.

    A real deployment creates each key where it is used (``privfl keys``); this keeps
    every private key in one process and is meant for one machine only.
    """

    operator: IdentityKey = field(repr=False)
    nodes: Mapping[int, IdentityKey] = field(repr=False)
    roster: SignedRoster

    @classmethod
    def generate(
        cls, nodes: range | list[int] | tuple[int, ...], corruption: float, security_bits: int = 40
    ) -> Federation:
        operator = IdentityKey.generate()
        keys = {int(u): IdentityKey.generate() for u in nodes}
        roster = Roster({u: k.public for u, k in keys.items()}, corruption, security_bits).sign(operator)
        return cls(operator, keys, roster)

    @property
    def trust(self) -> ClientTrust:
        """What the clients pin: the operator key and their identities."""
        return ClientTrust(self.operator.public, self.nodes)
