"""Committee mode: no single key holder. A joint CKKS key whose secret exists only as Shamir shares.

Construction (RLWE multiparty HE, semi-honest parties):

- **Collective key generation** (Mouchet, Troncoso-Pastoriza, Bossuat, Hubaux,
  PETS 2021, ePrint 2020/304, Section 4.1, protocol CKG). A common random
  polynomial ``a`` is expanded from a public seed. Member ``j`` samples a ternary
  secret ``s_j`` and a Gaussian error ``e_j`` and publishes ``p_j = -a*s_j + e_j``;
  the joint public key is ``(sum p_j, a)``, a public key for ``s = sum s_j`` whose
  error is ``sum e_j``. Clients encrypt under it with TenSEAL unchanged.
- **Threshold sharing** (Mouchet, Bertrand, Hubaux, "An Efficient Threshold
  Access-Structure for RLWE-Based Multiparty Homomorphic Encryption", J. Cryptology
  2023, ePrint 2022/780, Section 5; Asharov et al., EUROCRYPT 2012, ePrint
  2011/613, Section 4): member ``j`` Shamir-shares ``s_j`` (every NTT value, modulo
  every prime) with a random polynomial of degree ``t - 1`` and sends member ``i``
  its evaluation at ``x = i``; member ``i``'s key share is the sum of what it
  received, a point on a degree ``t - 1`` polynomial whose value at 0 is ``s``. Any
  ``t`` shares determine ``s`` by Lagrange interpolation; fewer than ``t`` are
  uniformly distributed whatever ``s`` is (Shamir 1979). After dealing, ``s_j`` is
  erased.
- **Threshold decryption** (ePrint 2020/304, Section 4.3, CKeySwitch to the zero key,
  with Lagrange coefficients as in ePrint 2022/780): for a ciphertext ``(c0, c1)`` and
  a signer set ``T`` of at least ``t`` members, member ``i`` returns
  ``d_i = c1 * lambda_i^T * sk_i + E_i``, with ``E_i`` uniform on an interval of
  ``2**smudging_bits`` integers per coefficient. ``c0 + sum d_i = m + e + sum E_i``:
  the plaintext plus the encryption error plus the smudging.
- **Smudging** (Asharov et al. 2012, Lemma 2.1): if ``|e| <= B`` per coefficient,
  ``e + U`` with ``U`` uniform on ``W`` consecutive integers is within statistical
  distance ``B / W`` of ``U``; over the N coefficients of one ciphertext, ``N * B / W``.
  ``W = 2**(lambda + log2 N + log2 B)`` gives ``2**-lambda`` per decrypted
  ciphertext (lambda = 40 by default); one honest signer's smudging suffices.
  ``B`` bounds the error of a sum of up to ``max_clients`` fresh encryptions under
  the joint key (:func:`~privfl.he.release.error_std`, ten standard deviations).

Parameters (:func:`committee_budget` shows the arithmetic). For N = 8192,
``c = 3`` members and ``max_clients = 2**16``: a coefficient of one fresh
encryption's error has standard deviation ``3.2 * sqrt(1 + 4 * 8192 * 3 / 3) =
580``, ``2**20.5`` as a ten-sigma bound for the sum of ``2**16``, so the smudging
width is ``2**(40 + 13 + 21) = 2**74``. Summed over the signers it blurs a slot by
a standard deviation of ``2**74 * sqrt(c * N / 24) / scale = 2**79 / scale``. One
60-bit data prime at scale 2**40 (the shared-key presets) would leave a blur of
``2**39``: it does not fit. :data:`FL_8192_COMMITTEE` uses two 60-bit data primes
and a 60-bit special prime (180 bits, HE Standard bound 218 for N = 8192) at scale
``2**100``: the blur is ``2**-21``, the largest coefficient of a decrypted sum
``2**118`` (headroom ``2**18`` times the scale, plus error and smudging) below
``q / 2 = 2**119``, and a ciphertext is 16x the float32 size.

What this protects and what it assumes: no party holds the secret key; the
server (which combines partial decryptions) and up to ``t - 1`` members together
learn nothing beyond the released aggregate, and clients (who hold only the joint
public key) cannot read each other's uploads. The server must follow the protocol
when it asks for decryptions: members cannot tell the aggregate from any other
ciphertext, so a malicious server could have a single client's upload decrypted
(a defence would let members recompute the sum from the uploads). Clients are
assumed to encrypt honestly (no proof of a well-formed ciphertext is checked). The
key shares travel between members over channels the deployment must make
authenticated and confidential (here, in process). Losing more than ``c - t``
members loses the key.
"""

from __future__ import annotations

import hashlib
import math
import os
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from privfl.core.context import Context
from privfl.core.message import Message
from privfl.core.mods import App
from privfl.errors import ConfigError, MessageError
from privfl.he import _proto
from privfl.he.codec import CT_PREFIX, read_ciphertext_arrays
from privfl.he.keys import _CTX_PUBLIC, _PUBLIC_KEY, CkksKeys
from privfl.he.packing import chunk_count, chunk_sizes
from privfl.he.params import FL_8192_COMMITTEE, CkksParams
from privfl.he.release import SIGMA, TAIL_SIGMAS, error_std, grid_step, round_release
from privfl.he.ring import Ring, ring

MAX_BLUR_BITS = -10
"""The summed smudging may blur a slot by a standard deviation of at most ``2**MAX_BLUR_BITS``."""

_GAUSS_BOUND = int(6 * SIGMA)  # SEAL clips its normal at 6 sigma (util/clipnormal.h)


@dataclass(frozen=True)
class CommitteeConfig:
    """A committee of key holders and the sizes that make its decryptions safe.

    Attributes:
        params: CKKS parameters (:data:`FL_8192_COMMITTEE`); must fit the smudging.
        members: number of key holders c (2 to 64).
        threshold: members needed to decrypt t (``2 <= t <= c``); t = c is N-of-N.
        statistical_security: bits lambda of statistical distance per decrypted ciphertext.
        max_clients: most fresh ciphertexts in one decrypted sum (sets the error bound).
    """

    params: CkksParams = FL_8192_COMMITTEE
    members: int = 3
    threshold: int = 2
    statistical_security: int = 40
    max_clients: int = 2**16
    smudging_bits: int = field(init=False)

    def __post_init__(self) -> None:
        for name in ("members", "threshold", "statistical_security", "max_clients"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive int, got {value!r}")
        if not 2 <= self.members <= 64:
            raise ConfigError(f"members must be 2..64, got {self.members}")
        if not 2 <= self.threshold <= self.members:
            raise ConfigError(
                f"threshold must be in 2..{self.members} (with 1, every member alone holds the key), "
                f"got {self.threshold}"
            )
        if self.statistical_security < 40:
            raise ConfigError(f"statistical_security must be at least 40 bits, got {self.statistical_security}")
        if self.params.seeded:
            raise ConfigError("committee mode needs public-key encryption; seeded uploads need the secret key")
        budget = committee_budget(self.params, self.members, self.statistical_security, self.max_clients)
        object.__setattr__(self, "smudging_bits", budget["smudging_bits"])
        if not 64 < self.smudging_bits <= 128:
            raise ConfigError(f"smudging of 2**{self.smudging_bits} is outside the sampler's 65..128 bits")
        if budget["blur_bits"] > MAX_BLUR_BITS:
            raise ConfigError(
                f"smudging of 2**{budget['smudging_bits']} does not fit parameter set {self.params.name!r}: "
                f"it would blur every value by 2**{budget['blur_bits']:.1f} (at most 2**{MAX_BLUR_BITS}); "
                f"use more data-modulus bits and a larger scale, e.g. {FL_8192_COMMITTEE.name}"
            )
        if budget["correctness_bits"] >= budget["modulus_bits"] - 1:
            raise ConfigError(f"the smudged sum would wrap modulo q for parameter set {self.params.name!r}")

    def release_step(self, summands: int) -> float:
        """The release grid of a decrypted sum of ``summands`` ciphertexts, every member's smudging included."""
        blur = 2.0 ** _blur_bits(self.params, self.members, self.smudging_bits)
        return grid_step(math.hypot(error_std(self.params, summands, self.members), blur))


def committee_budget(params: CkksParams, members: int, security: int, max_clients: int) -> dict[str, float]:
    """The smudging arithmetic (log2 of each quantity; see the module docstring).

    Keys: ``error_bits`` (ten-sigma bound on one coefficient of a sum of ``max_clients``
    fresh errors), ``smudging_bits`` (log2 of the smudging width),
    ``blur_bits`` (standard deviation of the summed smudging in a slot, value units),
    ``correctness_bits`` (largest coefficient of a decrypted sum), ``modulus_bits``.
    """
    n = params.poly_modulus_degree
    coeff_std = error_std(params, max_clients, members) * params.scale / math.sqrt(n / 2)
    error_bits = math.log2(TAIL_SIGMAS * coeff_std)
    smudging_bits = security + int(math.log2(n)) + math.ceil(error_bits)
    blur_bits = _blur_bits(params, members, smudging_bits)
    correctness_bits = math.log2(params.headroom * params.scale + 2**error_bits + members * 2**smudging_bits)
    return {
        "error_bits": error_bits,
        "smudging_bits": smudging_bits,
        "blur_bits": blur_bits,
        "correctness_bits": correctness_bits,
        "modulus_bits": sum(params.coeff_mod_bit_sizes[:-1]),
    }


def _blur_bits(params: CkksParams, signers: int, smudging_bits: int) -> float:
    """log2 of the standard deviation a slot gets from ``signers`` uniform smudgings of width ``2**smudging_bits``.

    A uniform width W has variance W**2 / 12 per coefficient; a slot's real part
    sums N coefficients with weights of mean square 1/2, over the scale.
    """
    return smudging_bits + 0.5 * math.log2(signers * params.poly_modulus_degree / 24) - params.scale_bits


# -- cryptographic samplers (os.urandom / secrets) ---------------------------------------------------


def _ternary(n: int) -> np.ndarray:
    """``n`` uniform values in {-1, 0, 1} (int64), by rejection from random bytes."""
    out = np.empty(0, dtype=np.int64)
    while out.size < n:
        raw = np.frombuffer(os.urandom(2 * n), dtype=np.uint8)
        out = np.concatenate([out, raw[raw < 255].astype(np.int64) % 3 - 1])
    return out[:n]


def _gaussian(n: int) -> np.ndarray:
    """``n`` samples of the rounded Gaussian of standard deviation SIGMA clipped at 6 sigma (int64), by CDT."""
    support = np.arange(-_GAUSS_BOUND, _GAUSS_BOUND + 1)
    weights = np.exp(-(support.astype(np.float64) ** 2) / (2 * SIGMA**2))
    cdf = np.cumsum(weights / weights.sum())
    uniform = np.frombuffer(os.urandom(8 * n), dtype=np.uint64) / 2.0**64
    return support[np.minimum(np.searchsorted(cdf, uniform, side="right"), support.size - 1)]


def _uniform_residues(r: Ring, bits: int) -> np.ndarray:
    """Residues of N integers uniform on ``[-2**(bits-1), 2**(bits-1))``, ``64 < bits <= 128``."""
    low = np.frombuffer(os.urandom(8 * r.n), dtype=np.uint64)
    high = np.frombuffer(os.urandom(8 * r.n), dtype=np.uint64) & np.uint64((1 << (bits - 64)) - 1)
    return r.from_wide(high, low, 1 << (bits - 1))


def _uniform_mod(r: Ring, rows: int, draw: Callable[[int], bytes] = os.urandom) -> np.ndarray:
    """``(rows, k, N)`` values uniform modulo each prime, by rejection from ``draw(bytes)``."""
    out = np.empty((rows, r.k, r.n), dtype=np.uint64)
    for j, q in enumerate(r.moduli):
        mask = np.uint64((1 << q.bit_length()) - 1)
        need = rows * r.n
        got = np.empty(0, dtype=np.uint64)
        while got.size < need:
            words = np.frombuffer(draw(8 * need), dtype=np.uint64) & mask
            got = np.concatenate([got, words[words < np.uint64(q)]])
        out[:, j] = got[:need].reshape(rows, r.n)
    return out


def common_random_polynomial(params: CkksParams, seed: bytes) -> np.ndarray:
    """The public polynomial ``a`` (NTT form, key level) expanded from ``seed`` with SHAKE-256."""
    if len(seed) < 16:
        raise ConfigError("the common random polynomial needs a seed of at least 16 bytes")
    xof = hashlib.shake_256(b"privfl.he.committee.crs\x00" + seed)
    state = {"offset": 0}

    def draw(count: int) -> bytes:
        start = state["offset"]
        state["offset"] += count
        return xof.digest(state["offset"])[start:]

    return _uniform_mod(ring(params, key_level=True), 1, draw)[0]


def lagrange_at_zero(index: int, signers: Sequence[int], moduli: Sequence[int]) -> list[int]:
    """``lambda_index = prod_{j != index} j / (j - index)`` modulo each prime (Shamir 1979)."""
    out = []
    for q in moduli:
        num = den = 1
        for j in signers:
            if j != index:
                num = num * j % q
                den = den * (j - index) % q
        out.append(num * pow(den, -1, q) % q)
    return out


# -- members -------------------------------------------------------------------------------------------


class CommitteeMember:
    """One key holder (member ``index`` of 1..c). Holds its secret state; never serialised.

    Steps: :meth:`public_key_share`, :meth:`deal`, :meth:`accept_shares`, then
    :meth:`partial_decrypt` for each decryption the server asks for.
    """

    def __init__(self, config: CommitteeConfig, index: int) -> None:
        if not 1 <= index <= config.members:
            raise ConfigError(f"member index must be in 1..{config.members}, got {index}")
        self.config = config
        self.index = index
        self._key = ring(config.params, key_level=True)
        self._data = ring(config.params)
        r = self._key
        self._secret: np.ndarray | None = r.to_ntt(r.from_signed(_ternary(r.n))[None])[0]
        self._share: np.ndarray | None = None

    def public_key_share(self, a: np.ndarray) -> np.ndarray:
        """``p_i = -a * s_i + e_i`` (NTT, key level): this member's part of the joint public key."""
        if self._secret is None:
            raise ConfigError("this member has already dealt its secret")
        r = self._key
        error = r.to_ntt(r.from_signed(_gaussian(r.n))[None])[0]
        return r.sub(error, r.mul(a, self._secret))

    def deal(self) -> dict[int, np.ndarray]:
        """Shamir shares of this member's secret for every member (itself included), then erase the secret.

        Each share must reach its member over an authenticated, confidential channel.
        """
        if self._secret is None:
            raise ConfigError("this member has already dealt its secret")
        r, c, t = self._key, self.config.members, self.config.threshold
        coefficients = _uniform_mod(r, t - 1)  # random polynomial of degree t - 1, constant term s_i
        shares = {}
        for x in range(1, c + 1):
            value = self._secret
            for power, coefficient in enumerate(coefficients, start=1):
                value = r.add(value, r.scalar_mul(coefficient, pow(x, power)))
            shares[x] = value
        self._secret = None
        return shares

    def accept_shares(self, shares: Mapping[int, np.ndarray]) -> None:
        """Sum the shares dealt to this member by every member (its key share ``sk_i``)."""
        if set(shares) != set(range(1, self.config.members + 1)):
            raise MessageError(f"need one share from each of the {self.config.members} members, got {sorted(shares)}")
        r = self._key
        total = np.zeros((r.k, r.n), dtype=np.uint64)
        for share in shares.values():
            if share.shape != (r.k, r.n) or share.dtype != np.uint64 or np.any(share >= r._q):
                raise MessageError("a key share is not a reduced (k, N) uint64 polynomial")
            total = r.add(total, share)
        self._share = total

    def partial_decrypt(self, ciphertexts: Sequence[bytes | np.ndarray], signers: Sequence[int]) -> list[np.ndarray]:
        """``d_i = c1 * lambda_i * sk_i + E_i`` (NTT, data level) for each serialised vector in ``ciphertexts``.

        Raises:
            MessageError: the signer set is invalid (this member not in it, fewer than t,
                unknown or repeated members) or a ciphertext is not a fresh-shaped one.
        """
        return self._partial_decrypt(ciphertexts, signers, self.config.smudging_bits)

    def _partial_decrypt(
        self, ciphertexts: Sequence[bytes | np.ndarray], signers: Sequence[int], smudging_bits: int
    ) -> list[np.ndarray]:
        """:meth:`partial_decrypt` with a chosen smudging width (0: none, the weakened variant tests attack)."""
        if self._share is None:
            raise ConfigError("this member holds no key share yet")
        c, t = self.config.members, self.config.threshold
        if len(set(signers)) != len(signers) or not set(signers) <= set(range(1, c + 1)):
            raise MessageError(f"signers must be distinct members of 1..{c}, got {list(signers)}")
        if self.index not in signers or len(signers) < t:
            raise MessageError(f"member {self.index} signs only in a set of at least {t} that includes it")
        r = self._data
        lam = np.array([[v] for v in lagrange_at_zero(self.index, signers, r.moduli)], dtype=np.uint64)
        key = r.mul(self._share[: r.k], lam)
        out = []
        for blob in ciphertexts:
            c1 = _read_fresh(self.config.params, blob)[1]
            product = r.mul(c1, key)
            if smudging_bits:
                product = r.add(product, r.to_ntt(_uniform_residues(r, smudging_bits)[None])[0])
            out.append(product)
        return out


def _read_fresh(params: CkksParams, blob: bytes | np.ndarray) -> np.ndarray:
    """The ``(2, k, N)`` polynomials of a serialised vector with the shape of a fresh ciphertext."""
    data = blob if isinstance(blob, bytes) else np.ascontiguousarray(blob, dtype=np.uint8).tobytes()
    if len(data) > params.max_ciphertext_bytes:
        raise MessageError(f"ciphertext of {len(data)} bytes exceeds the {params.max_ciphertext_bytes}-byte bound")
    r = ring(params)
    try:
        _sizes, cts, scale = _proto.read_ckks_vector_proto(data)
        if len(cts) != 1 or scale != params.scale:
            raise ValueError("expected one ciphertext at the parameter set's scale")
        _proto.check_seal_header(cts[0])
        ct = r.load(cts[0])
        if ct.scale != params.scale or not ct.is_ntt_form() or ct.size() != 2:
            raise ValueError("SEAL ciphertext is not a fresh ciphertext (scale, form or size)")
        return r.read(ct)
    except (ValueError, RuntimeError, TypeError, ConfigError) as exc:
        raise MessageError(f"invalid ciphertext: {exc}") from None


# -- the joint key and the combination -------------------------------------------------------------------


def joint_public_keys(params: CkksParams, a: np.ndarray, shares: Sequence[np.ndarray]) -> CkksKeys:
    """Public keys (a TenSEAL context without secret) for the joint key ``(sum p_j, a)``."""
    r = ring(params, key_level=True)
    p0 = np.zeros((r.k, r.n), dtype=np.uint64)
    for share in shares:
        p0 = r.add(p0, share)
    public_key = r.ciphertext_bytes(np.stack([p0, a]), ntt=True, scale=1.0, parms_id=r.key_parms_id)
    template = CkksKeys.generate(params).public()  # parameters and framing; its own key is replaced
    public = _proto.field_bytes(template.context, _CTX_PUBLIC)
    context = _proto.replace_field(
        template.context,
        _CTX_PUBLIC,
        _proto.replace_field(public, _PUBLIC_KEY, public_key),  # type: ignore[arg-type]
    )
    return CkksKeys(params, context)


def combine(
    config: CommitteeConfig,
    ciphertexts: Sequence[bytes | np.ndarray],
    partials: Mapping[int, Sequence[np.ndarray]],
    num_values: int,
    summands: int,
) -> np.ndarray:
    """The released sum: ``c0 + sum_i d_i`` decoded and rounded to the committee's release grid.

    Args:
        ciphertexts: the serialised aggregate, one vector per chunk.
        partials: per signer, its partial decryptions (one per chunk).
        num_values: values in the aggregate.
        summands: fresh ciphertexts in the aggregate (sets the grid).

    Raises:
        MessageError: too few signers, malformed partial decryptions, or a result beyond
            the headroom (a wrapped sum or a ciphertext under another key in it).
    """
    params = config.params
    if len(partials) < config.threshold:
        raise MessageError(f"need partial decryptions from {config.threshold} members, got {len(partials)}")
    count = chunk_count(num_values, params.slots)
    if len(ciphertexts) != count:
        raise MessageError(f"expected {count} ciphertexts for {num_values} values, got {len(ciphertexts)}")
    r = ring(params)
    out = np.empty(num_values, dtype=np.float64)
    start = 0
    for chunk, (blob, size) in enumerate(zip(ciphertexts, chunk_sizes(num_values, params.slots), strict=True)):
        total = _read_fresh(params, blob)[0]
        for signer, parts in partials.items():
            if len(parts) != count:
                raise MessageError(f"member {signer} sent {len(parts)} partial decryptions, expected {count}")
            part = parts[chunk]
            if part.shape != (r.k, r.n) or part.dtype != np.uint64 or np.any(part >= r._q):
                raise MessageError(f"member {signer}: partial decryption {chunk} is not a reduced (k, N) polynomial")
            total = r.add(total, part)
        out[start : start + size] = r.decode(total, params.scale, size)
        start += size
    if not np.all(np.abs(out) <= params.headroom):
        raise MessageError(
            f"the decrypted sum exceeds the headroom {params.headroom:g}: it wrapped modulo q, a ciphertext "
            "under another key was added, or the signers' shares do not match the key"
        )
    return round_release(out, config.release_step(summands))


@dataclass
class Committee:
    """The c members of an in-process committee (the bundled loop and tests run them in one process).

    Attributes:
        config: the committee's configuration.
        members: member ``i`` at position ``i - 1``.
        keys: the joint public keys clients encrypt under.
    """

    config: CommitteeConfig
    members: list[CommitteeMember]
    keys: CkksKeys

    @classmethod
    def generate(cls, config: CommitteeConfig, seed: bytes | None = None) -> Committee:
        """Run key generation among ``config.members`` fresh members (``seed``: the public CRS seed)."""
        members = [CommitteeMember(config, i) for i in range(1, config.members + 1)]
        a = common_random_polynomial(config.params, seed if seed is not None else secrets.token_bytes(32))
        keys = joint_public_keys(config.params, a, [m.public_key_share(a) for m in members])
        dealt = [m.deal() for m in members]
        for m in members:
            m.accept_shares({j + 1: shares[m.index] for j, shares in enumerate(dealt)})
        return cls(config, members, keys)


# -- messages ----------------------------------------------------------------------------------------------

DECRYPT_STAGE = "he.decrypt"
"""Stage of the server's request to committee members for partial decryptions."""

SIGNERS = "he.signers"
"""Array (int64) of the member indices asked to sign a decryption."""

PARTIAL_PREFIX = "he.pd."
"""Names of the partial decryptions in a member's reply (uint64 ``(k, N)`` arrays, one per ciphertext)."""

MAX_DECRYPT_CIPHERTEXTS = 2**16
"""Most ciphertexts a member decrypts in one request (2**28 values for N = 8192)."""


def partial_arrays(partials: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    """A member's reply content."""
    return {f"{PARTIAL_PREFIX}{i:06d}": p for i, p in enumerate(partials)}


def read_partials(arrays: Mapping[str, np.ndarray], count: int) -> list[np.ndarray]:
    """The ``count`` partial decryptions in a member's reply (shapes are checked by :func:`combine`)."""
    expected = {f"{PARTIAL_PREFIX}{i:06d}" for i in range(count)}
    if set(arrays) != expected:
        raise MessageError(f"a partial decryption reply must hold exactly {count} arrays named {PARTIAL_PREFIX}*")
    return [arrays[f"{PARTIAL_PREFIX}{i:06d}"] for i in range(count)]


@dataclass(frozen=True)
class CommitteeMemberMod:
    """Client mod of a committee member's node: answers :data:`DECRYPT_STAGE` requests, passes the rest on.

    Put it first (outermost). The request carries the aggregate's ciphertexts (with
    key id and digest, :mod:`privfl.he.codec`) and the signer set; the reply carries
    this member's smudged partial decryptions.
    """

    member: CommitteeMember
    key_id: bytes

    def __call__(self, message: Message, context: Context, call_next: App) -> Message:
        if message.metadata.stage != DECRYPT_STAGE:
            return call_next(message, context)
        signers = message.arrays.get(SIGNERS)
        if signers is None or signers.dtype != np.int64 or signers.ndim != 1 or signers.size > 64:
            raise MessageError(f"a decryption request needs {SIGNERS} as a 1-d int64 array of at most 64 members")
        present = sum(1 for name in message.arrays if name.startswith(CT_PREFIX))
        if not 1 <= present <= MAX_DECRYPT_CIPHERTEXTS:
            raise MessageError(f"a decryption request holds 1..{MAX_DECRYPT_CIPHERTEXTS} ciphertexts, got {present}")
        cts = read_ciphertext_arrays(message.arrays, self.key_id, present, extra=(SIGNERS,))
        partials = self.member.partial_decrypt(cts, [int(s) for s in signers])
        return message.reply(arrays=partial_arrays(partials))
