"""CKKS parameter sets for encrypted aggregation, checked against the HE Standard.

A parameter set fixes the ring dimension N (``poly_modulus_degree``), the primes of
the coefficient modulus and the encoding scale. Security depends on N and on the
total bit count of the coefficient modulus (all primes, the special prime
included); the Homomorphic Encryption Standard (Albrecht et al., 2018, Table 1,
ternary secrets, classical 128-bit security) bounds that total per N.

Sizes and precision (Cheon, Kim, Kim, Song, "Homomorphic Encryption for
Arithmetic of Approximate Numbers", ASIACRYPT 2017): a fresh ciphertext carries
every prime except the last (the special prime used only for key switching), so
its size grows with the number of data primes, not with N. Aggregation by client
pre-weighting needs additions only, so one data prime suffices: ``(60, 40)`` gives
ciphertexts of about 8x the float32 size. A value encoded at scale ``2**s`` under
a ``q``-bit data modulus must satisfy ``|x| <= 2**(q - s - 2)`` (the headroom): SEAL's
CKKS encoder refuses a coefficient of more than ``q - 2`` bits (``CKKSEncoder::encode``
requires its bit count plus a sign bit to stay below ``q``), and every coefficient of
the encoding is at most ``max |x|`` times the scale. A sum below the same bound is also
far from wrapping modulo ``q`` (which happens at ``2**(q - s - 1)``). A value decrypts
with an absolute error of roughly ``2**(14 - s)`` (public-key encryption, N = 8192,
measured); :mod:`privfl.he.release` bounds it and rounds every released value above it.
"""

from __future__ import annotations

from dataclasses import dataclass

from privfl.errors import ConfigError

HE_STANDARD_MAX_BITS: dict[int, int] = {1024: 27, 2048: 54, 4096: 109, 8192: 218, 16384: 438, 32768: 881}
"""Largest total coefficient-modulus bits for 128-bit classical security (HE Standard 2018, Table 1)."""

MAX_PRIME_BITS = 60
"""SEAL's largest supported prime size (bits)."""


@dataclass(frozen=True)
class CkksParams:
    """One CKKS parameter set.

    Attributes:
        name: label shown in errors, demos and benchmarks.
        poly_modulus_degree: ring dimension N (a power of two); a ciphertext holds N/2 values.
        coeff_mod_bit_sizes: bit sizes of the coefficient-modulus primes; the last is
            the special (key-switching) prime and is not carried by ciphertexts.
        scale_bits: values are encoded at scale ``2**scale_bits``.
        seeded: clients encrypt with the shared secret key and send seeded
            ciphertexts (the second polynomial replaced by a PRNG seed), halving the
            upload. Requires that clients hold the secret key (shared-key model).
    """

    name: str
    poly_modulus_degree: int
    coeff_mod_bit_sizes: tuple[int, ...]
    scale_bits: int
    seeded: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "coeff_mod_bit_sizes", tuple(int(b) for b in self.coeff_mod_bit_sizes))
        n, bits = self.poly_modulus_degree, self.coeff_mod_bit_sizes
        if n not in HE_STANDARD_MAX_BITS:
            raise ConfigError(f"poly_modulus_degree must be one of {sorted(HE_STANDARD_MAX_BITS)}, got {n}")
        if len(bits) < 2 or any(not 20 <= b <= MAX_PRIME_BITS for b in bits):
            raise ConfigError(
                f"coeff_mod_bit_sizes must hold at least two primes of 20..{MAX_PRIME_BITS} bits, got {list(bits)}"
            )
        if sum(bits) > HE_STANDARD_MAX_BITS[n]:
            raise ConfigError(
                f"parameter set {self.name!r} is below 128-bit security: N={n} allows at most "
                f"{HE_STANDARD_MAX_BITS[n]} coefficient-modulus bits (HE Standard), got {sum(bits)} = "
                f"{' + '.join(map(str, bits))}"
            )
        if not 20 <= self.scale_bits < self.data_modulus_bits - 2:
            raise ConfigError(
                f"scale_bits must be in [20, {self.data_modulus_bits - 2}) for data modulus bits "
                f"{self.data_modulus_bits}, got {self.scale_bits}"
            )

    @property
    def slots(self) -> int:
        """Values per ciphertext (N/2)."""
        return self.poly_modulus_degree // 2

    @property
    def data_modulus_bits(self) -> int:
        """Bits of the modulus a fresh ciphertext carries (all primes but the special one)."""
        return sum(self.coeff_mod_bit_sizes[:-1])

    @property
    def scale(self) -> float:
        """The encoding scale ``2**scale_bits``."""
        return float(2**self.scale_bits)

    @property
    def headroom(self) -> float:
        """Largest magnitude a value may have to encode, and that an encrypted sum may reach.

        ``2**(q - s - 2)``: the encoder's ceiling (see the module docstring), one bit below
        the ``2**(q - s - 1)`` at which a sum would wrap modulo q.
        """
        return float(2 ** (self.data_modulus_bits - self.scale_bits - 2))

    @property
    def max_ciphertext_bytes(self) -> int:
        """Upper bound on one serialised ciphertext: two polynomials of N 64-bit words per data prime.

        Plus generous room for the SEAL and protobuf headers (bytes).
        """
        return 2 * self.poly_modulus_degree * len(self.coeff_mod_bit_sizes[:-1]) * 8 + 1024


FL_8192 = CkksParams("fl-8192", 8192, (60, 40), 40)
"""Default: one 60-bit data prime, scale 2**40; clients pre-weight, the server only adds (~8x float32)."""

FL_8192_SEEDED = CkksParams("fl-8192-seeded", 8192, (60, 40), 40, seeded=True)
"""As :data:`FL_8192` with seeded symmetric uploads (~4x float32); clients must hold the secret key."""

FL_4096 = CkksParams("fl-4096", 4096, (60, 40), 40)
"""Smaller ring (2048 values per ciphertext), same bytes per value; for small models."""

FL_8192_COMMITTEE = CkksParams("fl-8192-committee", 8192, (60, 60, 60), 100)
"""Committee mode: two 60-bit data primes at scale 2**100, room for 2**74 smudging (~16x float32).

See :mod:`privfl.he.committee` for the arithmetic; 180 modulus bits, within the HE Standard's 218 for N = 8192.
"""

PRESETS: dict[str, CkksParams] = {p.name: p for p in (FL_8192, FL_8192_SEEDED, FL_4096, FL_8192_COMMITTEE)}
"""Named presets."""


def preset(name: str) -> CkksParams:
    """The preset called ``name``; raises :class:`ConfigError` listing the known names."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown CKKS preset {name!r}; known: {', '.join(PRESETS)}") from None
