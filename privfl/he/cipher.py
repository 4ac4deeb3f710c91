"""Encrypting, adding and decrypting packed vectors of CKKS ciphertexts.

:class:`ClientCipher` (secret-key roles) encrypts a float64 vector chunk by chunk
and decrypts a sum; :class:`EncryptedSum` (the server, public key only) adds one
client's ciphertexts at a time into a running sum, so its memory is one client's
ciphertexts plus the sum, whatever the number of clients.

Every ciphertext from another party is checked before TenSEAL parses it (size
bound, protobuf framing, value count, wrapper scale, SEAL header) and, once parsed,
before it touches a sum: the SEAL ciphertext's own scale, NTT form, size (two
polynomials), ring degree, prime count and level (parms id, a hash of the primes)
must be those of a fresh ciphertext of the parameter set. TenSEAL's errors while
parsing or adding are turned into :class:`~privfl.errors.MessageError`.

What no check can catch: a well-formed ciphertext under another secret key (with
the right key id attached) is indistinguishable from a valid one without the key.
The key holders' release check catches its effect instead: the decrypted sum is
noise of magnitude about ``q / scale``, far above the headroom, and
:meth:`ClientCipher.decrypt` refuses it with a MessageError.

Decryptions leave :class:`ClientCipher` rounded to the release grid of
:mod:`privfl.he.release` (Li and Micciancio 2021), never exact.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from typing import Any, Union

import numpy as np

from privfl.errors import ConfigError, MessageError
from privfl.he import _proto
from privfl.he.keys import CkksKeys, _tenseal
from privfl.he.packing import chunk_count, chunk_sizes
from privfl.he.params import CkksParams
from privfl.he.release import release_step, round_release

Blob = Union[bytes, np.ndarray]
"""A serialised ciphertext: bytes, or a 1-d uint8 array as it arrives in a message."""


def load_ciphertext(ctx: Any, params: CkksParams, blob: Blob, size: int) -> Any:
    """Parse one serialised ``CKKSVector`` of ``size`` values under ``ctx``; raise MessageError if invalid."""
    if len(blob) > params.max_ciphertext_bytes:
        raise MessageError(f"ciphertext of {len(blob)} bytes exceeds the {params.max_ciphertext_bytes}-byte bound")
    blob = blob if isinstance(blob, bytes) else np.ascontiguousarray(blob, dtype=np.uint8).tobytes()
    try:
        sizes, cts, scale = _proto.read_ckks_vector_proto(blob)
        if sizes != [size] or len(cts) != 1:
            raise ValueError(f"expected one ciphertext of {size} values, got sizes {sizes[:4]} and {len(cts)}")
        if scale != params.scale:
            raise ValueError(f"scale {scale} differs from the parameter set's {params.scale}")
        _proto.check_seal_header(cts[0])
        vector = _tenseal().ckks_vector_from(ctx, blob)
        inner = vector.ciphertext()
        if len(inner) != 1:
            raise ValueError(f"expected one SEAL ciphertext, got {len(inner)}")
        _check_fresh(ctx, params, inner[0])
    except (ValueError, RuntimeError, TypeError) as exc:
        raise MessageError(f"invalid ciphertext: {exc}") from None
    if vector.size() != size:
        raise MessageError(f"ciphertext holds {vector.size()} values, expected {size}")
    return vector


def _check_fresh(ctx: Any, params: CkksParams, ct: Any) -> None:
    """Raise ValueError unless the SEAL ciphertext ``ct`` has the shape of a fresh ciphertext of ``params``."""
    data = ctx.seal_context().data
    expected = {
        "scale": params.scale,
        "NTT form": True,
        "size (polynomials)": 2,
        "ring degree": params.poly_modulus_degree,
        "primes": len(params.coeff_mod_bit_sizes) - 1,
        "level (parms id)": list(data.first_parms_id()),
    }
    got = {
        "scale": ct.scale,
        "NTT form": ct.is_ntt_form(),
        "size (polynomials)": ct.size(),
        "ring degree": ct.poly_modulus_degree(),
        "primes": ct.coeff_modulus_size(),
        "level (parms id)": list(ct.parms_id()),
    }
    for name, want in expected.items():
        if got[name] != want:
            raise ValueError(f"SEAL ciphertext {name} is {got[name]}, expected {want}")


class ClientCipher:
    """Encryption, and with the shared secret key decryption (client and key-holder roles).

    With public keys (committee mode: the joint key) it encrypts only.
    One instance per node; not safe to share between threads (the seeded encryptor
    reuses one scratch file).

    Args:
        keys: keys holding the secret key, or public keys of a non-seeded preset.
    """

    def __init__(self, keys: CkksKeys) -> None:
        if not keys.has_secret and keys.params.seeded:
            raise ConfigError("seeded encryption needs keys holding the secret key, got public keys")
        self.keys = keys
        self.params = keys.params
        self._ctx = keys.load()
        self._seeded = _SeededEncryptor(keys) if keys.params.seeded else None

    @property
    def key_id(self) -> bytes:
        return self.keys.key_id

    def encrypt(self, flat: np.ndarray) -> list[bytes]:
        """Serialised ciphertexts of ``flat`` (float64), ``slots`` values each, the last one partial."""
        values = np.asarray(flat, dtype=np.float64)
        if values.ndim != 1 or values.size == 0:
            raise ConfigError(f"can only encrypt a non-empty 1-d vector, got shape {values.shape}")
        if not np.all(np.abs(values) <= self.params.headroom):
            raise ConfigError(f"values must stay within the headroom {self.params.headroom:g} in magnitude")
        slots = self.params.slots
        chunks = [values[i : i + slots] for i in range(0, values.size, slots)]
        if self._seeded is not None:
            return [self._seeded.encrypt(chunk) for chunk in chunks]
        ts = _tenseal()
        return [ts.ckks_vector(self._ctx, chunk.tolist()).serialize() for chunk in chunks]

    def decrypt(self, ciphertexts: Sequence[Blob], num_values: int, summands: int) -> np.ndarray:
        """The ``num_values`` values encrypted in ``ciphertexts``, rounded to the release grid.

        Args:
            ciphertexts: a sum of at most ``summands`` fresh ciphertexts per chunk.
            num_values: values encrypted.
            summands: upper bound on the ciphertexts summed (sets the grid, see
                :func:`~privfl.he.release.release_step`).

        Raises:
            MessageError: invalid ciphertexts, or a decryption beyond the headroom (a
                wrapped sum, or a ciphertext under another key somewhere in the sum).
        """
        exact = self._decrypt_exact(ciphertexts, num_values)
        if not np.all(np.abs(exact) <= self.params.headroom):
            raise MessageError(
                f"the decrypted sum exceeds the headroom {self.params.headroom:g}: it wrapped modulo q, or a "
                "ciphertext under another key was added to it; it cannot be used"
            )
        return round_release(exact, release_step(self.params, summands))

    def _decrypt_exact(self, ciphertexts: Sequence[Blob], num_values: int) -> np.ndarray:
        """The exact decryption: never to be released (it leaks the secret key, Li and Micciancio 2021)."""
        if not self.keys.has_secret:
            raise ConfigError("these keys hold no secret key: only the committee (or a key holder) can decrypt")
        expected = chunk_count(num_values, self.params.slots)
        if len(ciphertexts) != expected:
            raise MessageError(f"expected {expected} ciphertexts for {num_values} values, got {len(ciphertexts)}")
        sizes = chunk_sizes(num_values, self.params.slots)
        out = np.empty(num_values, dtype=np.float64)
        start = 0
        for blob, size in zip(ciphertexts, sizes, strict=True):
            out[start : start + size] = load_ciphertext(self._ctx, self.params, blob, size).decrypt()
            start += size
        return out


class _SeededEncryptor:
    """Symmetric encryption through TenSEAL's bundled SEAL bindings, saved in SEAL's seeded form.

    A symmetric CKKS ciphertext is ``(c0, c1) = (-a*s + m + e, a)`` with ``a``
    uniform; SEAL draws ``a`` from a PRNG with a fresh random seed and, when the
    ciphertext is saved straight from ``encrypt_symmetric``, writes the seed instead
    of ``c1`` (half the bytes). Loading expands the seed back, so a TenSEAL server
    reads and adds these ciphertexts like any other. Security is RLWE with the
    same secret; only holders of the secret key can encrypt this way.
    """

    def __init__(self, keys: CkksKeys) -> None:
        from tenseal import sealapi

        p = keys.params
        parms = sealapi.EncryptionParameters(sealapi.SCHEME_TYPE.CKKS)
        parms.set_poly_modulus_degree(p.poly_modulus_degree)
        parms.set_coeff_modulus(sealapi.CoeffModulus.Create(p.poly_modulus_degree, list(p.coeff_mod_bit_sizes)))
        self._context = sealapi.SEALContext(parms, True, sealapi.SEC_LEVEL_TYPE.TC128)
        self._encoder = sealapi.CKKSEncoder(self._context)
        self._scale = p.scale
        self._plain = sealapi.Plaintext()
        # The bindings read and write SEAL objects through files only: use a private (0700) directory,
        # RAM-backed where available so the secret key is never written to disk.
        ram = "/dev/shm"  # noqa: S108 - only the parent of a private mkdtemp directory
        self._dir = tempfile.TemporaryDirectory(prefix="privfl-he-", dir=ram if os.path.isdir(ram) else None)
        self._path = os.path.join(self._dir.name, "obj")
        fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(keys.secret_key_bytes())
        secret = sealapi.SecretKey()
        secret.load(self._context, self._path)
        os.remove(self._path)
        self._encryptor = sealapi.Encryptor(self._context, secret)

    def encrypt(self, chunk: np.ndarray) -> bytes:
        self._encoder.encode(chunk.tolist(), self._scale, self._plain)
        self._encryptor.encrypt_symmetric(self._plain).save(self._path)
        with open(self._path, "rb") as f:
            seal_bytes = f.read()
        return _proto.ckks_vector_proto(chunk.size, seal_bytes, self._scale)


class EncryptedSum:
    """A running sum of encrypted vectors, folded in one client at a time (server role).

    Args:
        keys: the server's keys (the public context suffices).
        num_values: length D of every vector.
    """

    def __init__(self, keys: CkksKeys, num_values: int) -> None:
        if num_values < 1:
            raise ConfigError(f"num_values must be positive, got {num_values}")
        self.params = keys.params
        self.sizes = chunk_sizes(num_values, self.params.slots)
        self.count = 0
        self._ctx = keys.load()
        self._sum: list[Any] | None = None

    def add(self, ciphertexts: Sequence[Blob]) -> None:
        """Add one client's ciphertexts; on an invalid one the sum is left as it was and MessageError raised.

        Every ciphertext is parsed and checked before the first is added; an error of
        TenSEAL's during the additions is rolled back too.
        """
        if len(ciphertexts) != len(self.sizes):
            raise MessageError(f"expected {len(self.sizes)} ciphertexts, got {len(ciphertexts)}")
        vectors = [load_ciphertext(self._ctx, self.params, b, s) for b, s in zip(ciphertexts, self.sizes, strict=True)]
        if self._sum is None:
            self._sum = vectors
            self.count = 1
            return
        added = 0
        try:
            for i, vector in enumerate(vectors):
                self._sum[i] += vector
                added += 1
        except (ValueError, RuntimeError, TypeError) as exc:
            # Addition mod q is exact: subtracting what was added restores the sum bit for bit.
            for j in range(added):
                self._sum[j] -= vectors[j]
            raise MessageError(f"ciphertext {added} could not be added: {exc}") from None
        self.count += 1

    def serialize(self) -> list[bytes]:
        """The serialised sum (one ciphertext per chunk)."""
        if self._sum is None:
            raise ConfigError("nothing has been added")
        return [v.serialize() for v in self._sum]
