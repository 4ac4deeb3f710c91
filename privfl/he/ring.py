"""RNS polynomials of SEAL ciphertexts as numpy arrays, for what TenSEAL has no API for.

Committee keys, partial decryptions and the key-recovery audit need to read and
write the polynomials inside SEAL objects. TenSEAL's SEAL bindings
(``tenseal.sealapi``) save and load SEAL objects through files and read a
ciphertext word by word (``dyn_array().at``). Polynomials are written by
serialising them uncompressed in SEAL's ``Ciphertext::save_members`` layout (SEAL
4: parms id, NTT flag, size, N, prime count, scale, correction factor, then the data
array) and read from SEAL's own serialisation, whose zstd frames store random-
looking words as raw blocks (word by word where they do not). SEAL's C++ code does
every NTT and checks each loaded object against the encryption parameters
(``is_valid_for``).

A polynomial is a ``(k, N)`` uint64 array: row ``j`` holds the coefficients (or NTT
values) modulo the ``j``-th data prime, the residue-number-system layout SEAL uses
(Cheon, Han, Kim, Kim, Song, "A Full RNS Variant of Approximate Homomorphic
Encryption", SAC 2018).
"""

from __future__ import annotations

import functools
import os
import struct
import tempfile
import zlib
from typing import Any

import numpy as np

from privfl.errors import ConfigError
from privfl.he import _proto
from privfl.he.params import CkksParams

_BODY = struct.Struct("<4QBQQQdQ")
"""Ciphertext members: parms id, NTT flag, size, poly degree, prime count, scale, correction factor."""


def _sealapi() -> Any:
    from tenseal import sealapi

    return sealapi


class Ring:
    """The ring ``Z_q[X]/(X^N + 1)`` of one parameter set, with SEAL doing the transforms.

    ``q`` is the data modulus (every prime but the special one: the level of fresh
    ciphertexts) or, with ``key_level``, the product of all primes (the level of
    public and secret keys). One instance per parameter set and level (:func:`ring`);
    not thread-safe (it reuses a private scratch file, in RAM where ``/dev/shm`` exists).
    """

    def __init__(self, params: CkksParams, key_level: bool = False) -> None:
        s = _sealapi()
        self.params = params
        n, bits = params.poly_modulus_degree, list(params.coeff_mod_bit_sizes)
        real = _seal_context(n, bits, s.SEC_LEVEL_TYPE.TC128)
        self.key_parms_id = tuple(real.key_parms_id())
        if key_level:
            # SEAL does arithmetic on ciphertexts only below the key level: work in a helper context
            # with one more prime, whose first data level has exactly the key-level primes.
            # It is never used to encrypt (hence no security level); the primes are checked equal.
            expected = [m.value() for m in real.key_context_data().parms().coeff_modulus()]
            spare = next(m for m in s.CoeffModulus.Create(n, [60] * (len(bits) + 1)) if m.value() not in expected)
            self.context = _seal_context(n, [*(s.Modulus(q) for q in expected), spare], s.SEC_LEVEL_TYPE.NONE)
        else:
            self.context = real
            expected = [m.value() for m in real.first_context_data().parms().coeff_modulus()]
        data = self.context.first_context_data()
        self.parms_id = tuple(self.context.first_parms_id())
        self.moduli = tuple(int(m.value()) for m in data.parms().coeff_modulus())
        if list(self.moduli) != expected:
            raise ConfigError(f"cannot build the key-level ring of {params.name!r}: SEAL chose other primes")
        self.n = params.poly_modulus_degree
        self.k = len(self.moduli)
        self._q = np.array(self.moduli, dtype=np.uint64)[:, None]
        self.evaluator = s.Evaluator(self.context)
        self.encoder = s.CKKSEncoder(self.context)
        ram = "/dev/shm"  # noqa: S108 - only the parent of a private mkdtemp directory
        self._dir = tempfile.TemporaryDirectory(prefix="privfl-ring-", dir=ram if os.path.isdir(ram) else None)
        self._path = os.path.join(self._dir.name, "obj")
        # Decrypting (c0, 0) with any key returns c0 as a plaintext: the route to SEAL's decoder.
        self._decryptor = s.Decryptor(self.context, s.KeyGenerator(self.context).secret_key())
        self._version = self._seal_version()

    def _seal_version(self) -> tuple[int, int]:
        s = _sealapi()
        probe = s.Ciphertext(self.context)
        probe.save(self._path)
        with open(self._path, "rb") as f:
            header = f.read(_proto.SEAL_HEADER.size)
        os.remove(self._path)
        _magic, _size, major, minor, *_ = _proto.SEAL_HEADER.unpack(header)
        return major, minor

    # -- arithmetic modulo q, row by row ---------------------------------------------------------

    def add(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """``a + b`` (each entry below its prime, primes below 2**62, so no uint64 overflow)."""
        out = a + b
        return np.where(out >= self._q, out - self._q, out)

    def neg(self, a: np.ndarray) -> np.ndarray:
        return np.where(a == 0, a, self._q - a)

    def sub(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return self.add(a, self.neg(b))

    def mul(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Entrywise ``a * b`` (a product of polynomials when both are in NTT form)."""
        out = np.empty(np.broadcast_shapes(a.shape, b.shape), dtype=np.uint64)
        for j, q in enumerate(self.moduli):
            out[j] = _mulmod(a[j], b[j], q)
        return out

    def scalar_mul(self, a: np.ndarray, c: int) -> np.ndarray:
        """``c * a`` for an integer ``c`` (reduced modulo each prime)."""
        return self.mul(a, np.array([[c % q] for q in self.moduli], dtype=np.uint64))

    def inverse(self, a: np.ndarray) -> np.ndarray:
        """Entrywise inverse modulo each prime (Fermat); raises if an entry is zero."""
        if np.any(a == 0):
            raise ConfigError("element is not invertible (a zero NTT value)")
        out = np.empty_like(a)
        for j, q in enumerate(self.moduli):
            out[j] = np.array([pow(int(x), q - 2, q) for x in a[j]], dtype=np.uint64)
        return out

    def from_signed(self, values: np.ndarray) -> np.ndarray:
        """Residues of int64 coefficients."""
        ints = np.asarray(values, dtype=np.int64)
        return np.stack([np.where(ints < 0, ints + q, ints).astype(np.uint64) for q in self.moduli])

    def from_wide(self, high: np.ndarray, low: np.ndarray, offset: int) -> np.ndarray:
        """Residues of the integers ``high * 2**64 + low - offset`` (``high``, ``low`` uint64)."""
        out = np.empty((self.k, low.size), dtype=np.uint64)
        for j, q in enumerate(self.moduli):
            qq = np.uint64(q)
            wide = _mulmod(high % qq, np.uint64(pow(2, 64, q)), q)
            out[j] = (wide + low % qq) % qq
            out[j] = (out[j] + np.uint64(q - offset % q)) % qq
        return out

    # -- SEAL objects ------------------------------------------------------------------------------

    def read(self, ciphertext: Any) -> np.ndarray:
        """The ``(size, k, N)`` polynomials of a SEAL ciphertext at this ring's level."""
        if tuple(ciphertext.parms_id()) != self.parms_id:
            raise ConfigError("ciphertext is not at this ring's level of the parameter set")
        count = ciphertext.size() * self.k * self.n
        body = _seal_body(self.save(ciphertext))
        start = _BODY.size + _proto.SEAL_HEADER.size + 8  # members, then the data array's header and length
        if body is not None and len(body) >= start + 8 * count:
            words = np.frombuffer(body, dtype="<u8", count=count, offset=start).astype(np.uint64)
        else:  # a compressed block we cannot unpack: read word by word through the bindings
            arr = ciphertext.dyn_array()
            words = np.fromiter((arr.at(i) for i in range(count)), dtype=np.uint64, count=count)
        return words.reshape(ciphertext.size(), self.k, self.n)

    def ciphertext(self, polys: np.ndarray, *, ntt: bool, scale: float) -> Any:
        """A SEAL ciphertext holding ``polys`` (shape ``(size, k, N)``), checked by SEAL on load."""
        polys = np.ascontiguousarray(polys, dtype=np.uint64)
        if polys.ndim != 3 or polys.shape[1:] != (self.k, self.n) or not 2 <= polys.shape[0] <= 3:
            raise ConfigError(f"expected (2 or 3, {self.k}, {self.n}) polynomials, got {polys.shape}")
        return self.load(self.ciphertext_bytes(polys, ntt=ntt, scale=scale, parms_id=self.parms_id))

    def ciphertext_bytes(self, polys: np.ndarray, *, ntt: bool, scale: float, parms_id: tuple[int, ...]) -> bytes:
        """SEAL's uncompressed serialisation of a ciphertext (or public key) holding ``polys`` at ``parms_id``."""
        polys = np.ascontiguousarray(polys, dtype=np.uint64)
        words = self._seal_object(struct.pack("<Q", polys.size) + polys.tobytes())
        body = _BODY.pack(*parms_id, int(ntt), polys.shape[0], self.n, self.k, scale, 1) + words
        return self._seal_object(body)

    def load(self, seal_bytes: bytes) -> Any:
        """A SEAL ciphertext from its serialisation (any compression); SEAL checks it against the parameters.

        Raises ``ValueError`` or ``RuntimeError`` (SEAL's) on invalid input; callers wrap them.
        """
        with open(self._path, "wb") as f:
            f.write(seal_bytes)
        try:
            out = _sealapi().Ciphertext()
            out.load(self.context, self._path)
        finally:
            os.remove(self._path)
        return out

    def load_secret_key(self, seal_bytes: bytes) -> np.ndarray:
        """The ``(k, N)`` NTT form, at the data level, of a SEAL-serialised secret key."""
        with open(self._path, "wb") as f:
            f.write(seal_bytes)
        try:
            key = _sealapi().SecretKey()
            key.load(self.context, self._path)
        finally:
            os.remove(self._path)
        arr = key.data().dyn_array()
        words = np.fromiter((arr.at(i) for i in range(arr.size())), dtype=np.uint64, count=arr.size())
        return words.reshape(-1, self.n)[: self.k]  # SEAL keeps keys at the key level: data primes first

    def save(self, ciphertext: Any) -> bytes:
        """SEAL's serialisation of ``ciphertext`` (SEAL's default compression)."""
        ciphertext.save(self._path)
        try:
            with open(self._path, "rb") as f:
                return f.read()
        finally:
            os.remove(self._path)

    def _seal_object(self, body: bytes) -> bytes:
        major, minor = self._version
        header = _proto.SEAL_HEADER.pack(_proto.SEAL_MAGIC, _proto.SEAL_HEADER.size, major, minor, 0, 0, 0)
        total = len(header) + len(body)
        return header[:-8] + struct.pack("<Q", total) + body

    def to_ntt(self, polys: np.ndarray) -> np.ndarray:
        """NTT form of ``(size, k, N)`` coefficient polynomials (SEAL's negacyclic NTT)."""
        ct = self.ciphertext(_pad(polys), ntt=False, scale=1.0)
        self.evaluator.transform_to_ntt_inplace(ct)
        return self.read(ct)[: polys.shape[0]]

    def decode(self, poly: np.ndarray, scale: float, count: int) -> np.ndarray:
        """The first ``count`` CKKS slot values (real parts) of a ``(k, N)`` NTT-form plaintext at ``scale``."""
        s = _sealapi()
        ct = self.ciphertext(np.stack([poly, np.zeros_like(poly)]), ntt=True, scale=scale)
        plain = s.Plaintext()
        self._decryptor.decrypt(ct, plain)
        return np.asarray(self.encoder.decode_double(plain)[:count], dtype=np.float64)

    def encode(self, values: np.ndarray, scale: float) -> np.ndarray:
        """The ``(k, N)`` NTT-form plaintext SEAL encodes ``values`` into at ``scale``."""
        s = _sealapi()
        plain = s.Plaintext()
        self.encoder.encode(np.asarray(values, dtype=np.float64).tolist(), scale, plain)
        arr = plain.dyn_array()
        words = np.fromiter((arr.at(i) for i in range(arr.size())), dtype=np.uint64, count=arr.size())
        return words.reshape(self.k, self.n)


_EXTENDED = np.finfo(np.longdouble).nmant >= 63
"""Whether long double has a 64-bit mantissa (x86's 80-bit format), enough to estimate a 120-bit quotient."""


def _mulmod(x: np.ndarray, y: np.ndarray | np.uint64, q: int) -> np.ndarray:
    """``x * y mod q`` entrywise for uint64 values below ``q < 2**61``.

    With an extended long double: the quotient ``floor(x * y / q)`` is estimated to
    within one (a 64-bit mantissa carries the 120-bit product to 2**-4 of a unit of
    ``q``), the remainder computed exactly modulo 2**64 and corrected by one ``q``.
    Otherwise exact Python integers.
    """
    x, y = np.broadcast_arrays(np.asarray(x, dtype=np.uint64), np.asarray(y, dtype=np.uint64))
    if not _EXTENDED:
        return (x.astype(object) * y.astype(object) % q).astype(np.uint64)
    qq = np.uint64(q)
    quotient = np.floor(x.astype(np.longdouble) * y.astype(np.longdouble) / np.longdouble(q)).astype(np.uint64)
    with np.errstate(over="ignore"):
        rem = (x * y - quotient * qq).view(np.int64)  # exact modulo 2**64; true value in (-q, 2q)
    rem = np.where(rem < 0, rem + np.int64(q), rem).view(np.uint64)
    return np.where(rem >= qq, rem - qq, rem)


def _seal_body(data: bytes) -> bytes | None:
    """The uncompressed body of a SEAL object, or None if it holds compressed zstd blocks.

    SEAL compresses with zstd (or zlib); for ciphertexts, whose words look random,
    zstd stores raw blocks, which this reads (RFC 8878, Section 3.1: frame header,
    then blocks of a 3-byte header and their bytes; raw = type 0, RLE = type 1).
    """
    mode = _proto.check_seal_header(data)
    body = data[_proto.SEAL_HEADER.size :]
    if mode == 0:
        return body
    if mode == 1:
        return zlib.decompress(body)
    if body[:4] != b"\x28\xb5\x2f\xfd" or len(body) < 6:
        return None
    descriptor = body[4]
    single = descriptor >> 5 & 1
    pos = 5 + (0 if single else 1) + (0, 1, 2, 4)[descriptor & 3] + ((1 if single else 0), 2, 4, 8)[descriptor >> 6]
    out = bytearray()
    while pos + 3 <= len(body):
        header = int.from_bytes(body[pos : pos + 3], "little")
        last, kind, size = header & 1, header >> 1 & 3, header >> 3
        pos += 3
        if kind == 0:
            out += body[pos : pos + size]
            pos += size
        elif kind == 1:
            out += body[pos : pos + 1] * size
            pos += 1
        else:
            return None
        if last:
            return bytes(out)
    return None


def _seal_context(n: int, moduli: list[Any], security: Any) -> Any:
    """A SEAL CKKS context for ring degree ``n`` and primes given by bit sizes (ints) or ``Modulus`` objects."""
    s = _sealapi()
    parms = s.EncryptionParameters(s.SCHEME_TYPE.CKKS)
    parms.set_poly_modulus_degree(n)
    is_bits = all(isinstance(m, int) for m in moduli)
    parms.set_coeff_modulus(s.CoeffModulus.Create(n, moduli) if is_bits else moduli)
    context = s.SEALContext(parms, True, security)
    if not context.parameters_set():
        raise ConfigError(f"SEAL refuses N={n} with these primes: {context.parameters_error_message()}")
    return context


def _pad(polys: np.ndarray) -> np.ndarray:
    """At least two polynomials (a SEAL ciphertext has two or three; SEAL refuses a zero last one)."""
    if polys.shape[0] >= 2:
        return polys
    return np.concatenate([polys, np.ones_like(polys)])


@functools.lru_cache(maxsize=8)
def ring(params: CkksParams, key_level: bool = False) -> Ring:
    """The shared :class:`Ring` of ``params`` at the data level (or the key level)."""
    return Ring(params, key_level)
