"""CKKS key material and its roles.

Trust model (shared-key, honest-but-curious server):

- A **key holder** (one of the clients, or a separate party) generates the
  context with :meth:`CkksKeys.generate`. The secret context (secret key + public
  key) is distributed to every client out of band over authenticated, confidential
  channels; the server never sees it.
- **Clients** encrypt their pre-weighted updates and decrypt the aggregate; any
  client can therefore decrypt anything encrypted under the key.
- The **server** gets :meth:`CkksKeys.public`: parameters and public key only, no
  secret key and no Galois or relinearisation keys (addition needs none). It can
  add ciphertexts but not read them.

What breaks it: the server colluding with (or compromising) any single client or
the key holder reads every individual update. A client that sees another's
ciphertexts (e.g. by eavesdropping) reads them too. CKKS ciphertexts are not
authenticated: a malicious server can alter the aggregate undetectably, so this
protects confidentiality against a curious server only. Decrypted CKKS values
carry encryption noise in their low bits, and publishing exact decryptions can
leak the secret key (Li and Micciancio, EUROCRYPT 2021); every decryption privfl
returns is rounded to a grid above the error bound (:mod:`privfl.he.release`).
For no single key holder, use committee mode (:mod:`privfl.he.committee`).

Key fingerprint: :attr:`CkksKeys.key_id` hashes the public key, so every role
computes the same id from its own context. Messages carry it: a ciphertext made
under another key is rejected by id, since cryptographically it is
indistinguishable (it decrypts, under the wrong key, to noise-like garbage).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from privfl.errors import ConfigError
from privfl.he import _proto
from privfl.he.params import CkksParams

KEY_ID_BYTES = 16
"""Bytes of a key fingerprint."""

_CTX_PUBLIC, _CTX_PRIVATE = 2, 3  # TenSEALContextProto fields
_PUBLIC_KEY, _SECRET_KEY = 1, 1  # first field of TenSEALPublicProto / TenSEALPrivateProto


def _tenseal() -> Any:
    try:
        import tenseal
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ConfigError("CKKS aggregation needs TenSEAL: pip install 'privfl[he]'") from exc
    return tenseal


@dataclass(frozen=True)
class CkksKeys:
    """A serialised TenSEAL context for one role (key holder/client with the secret key, or server without).

    Attributes:
        params: the parameter set the context was made with.
        context: TenSEAL-serialised context (no Galois or relinearisation keys).
        key_id: fingerprint of the public key (SHA-256, truncated to 16 bytes).
        has_secret: whether ``context`` holds the secret key.
    """

    params: CkksParams
    context: bytes = field(repr=False)
    key_id: bytes = field(init=False)
    has_secret: bool = field(init=False)

    def __post_init__(self) -> None:
        if not isinstance(self.params, CkksParams) or not isinstance(self.context, bytes):
            raise ConfigError("CkksKeys needs a CkksParams and the serialised context as bytes")
        try:
            public = _proto.field_bytes(self.context, _CTX_PUBLIC)
            public_key = _proto.field_bytes(public, _PUBLIC_KEY) if public is not None else None
            private = _proto.field_bytes(self.context, _CTX_PRIVATE)
            secret_key = _proto.field_bytes(private, _SECRET_KEY) if private is not None else None
        except ValueError as exc:
            raise ConfigError(f"not a serialised TenSEAL context: {exc}") from None
        if not public_key:
            raise ConfigError("the TenSEAL context has no public key")
        digest = hashlib.sha256(b"privfl.he.key-id\x00" + public_key).digest()[:KEY_ID_BYTES]
        object.__setattr__(self, "key_id", digest)
        object.__setattr__(self, "has_secret", bool(secret_key))

    @classmethod
    def generate(cls, params: CkksParams) -> CkksKeys:
        """Fresh keys for ``params`` (the key holder's secret context)."""
        ts = _tenseal()
        ctx = ts.context(
            ts.SCHEME_TYPE.CKKS, params.poly_modulus_degree, coeff_mod_bit_sizes=list(params.coeff_mod_bit_sizes)
        )
        ctx.global_scale = params.scale
        return cls(params, ctx.serialize(save_secret_key=True, save_galois_keys=False, save_relin_keys=False))

    def public(self) -> CkksKeys:
        """The server's keys: the same context without the secret key."""
        ctx = self.load()
        data = ctx.serialize(save_public_key=True, save_secret_key=False, save_galois_keys=False, save_relin_keys=False)
        return CkksKeys(self.params, data)

    def secret_key_bytes(self) -> bytes:
        """The SEAL-serialised secret key (for seeded encryption); raises if this role has none."""
        if not self.has_secret:
            raise ConfigError("these keys hold no secret key (server role)")
        private = _proto.field_bytes(self.context, _CTX_PRIVATE)
        return _proto.field_bytes(private, _SECRET_KEY)  # type: ignore[arg-type, return-value]

    def load(self) -> Any:
        """A ``tenseal.Context`` for these keys, checked against :attr:`params`."""
        ts = _tenseal()
        try:
            ctx = ts.context_from(self.context)
            parms = ctx.seal_context().data.key_context_data().parms()
            n = parms.poly_modulus_degree()
            total = ctx.seal_context().data.key_context_data().total_coeff_modulus_bit_count()
            scale = ctx.global_scale
        except (ValueError, RuntimeError, TypeError) as exc:
            raise ConfigError(f"cannot load the TenSEAL context: {exc}") from None
        p = self.params
        if n != p.poly_modulus_degree or total != sum(p.coeff_mod_bit_sizes) or scale != p.scale:
            raise ConfigError(
                f"context (N={n}, {total} modulus bits, scale {scale}) does not match parameter set {p.name!r} "
                f"(N={p.poly_modulus_degree}, {sum(p.coeff_mod_bit_sizes)} bits, scale {p.scale})"
            )
        return ctx
