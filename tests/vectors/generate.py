"""Generate privfl's known-answer vectors for the SecAgg+ primitives (tests/vectors/*.json).

Run once, from the repository root: ``python tests/vectors/generate.py``. The committed
JSON files are the reference; ``test_vectors.py`` checks privfl against them byte for
byte and checks that this script still writes exactly these files.

Expected values are computed here without privfl wherever the construction is short
enough to restate: X25519 outputs against RFC 7748's published vectors, HKDF-SHA256 by
RFC 5869 from ``hmac``, AES-256-CTR and AES-GCM from ``cryptography``'s primitives, and
Shamir shares by evaluating the polynomial. The quantiser's outputs come from privfl
itself (a regression vector: any change to its rounding shows up byte for byte).

Randomness is a recorded tape (``entropy``, hex) drawn from SHAKE-256 of a label and fed
to privfl's private ``_entropy`` injection points, which must consume all of it.
All byte strings are lowercase hex; integers are decimal; array words are little-endian.
The transcript of a whole SecAgg+ round has its own generator, ``secagg_round.py``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import struct
import sys
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

HERE = Path(__file__).resolve().parent
SHAMIR_PRIME = (1 << 521) - 1  # the Mersenne prime of privfl.secagg.shamir
SHARE_BYTES = 66

# RFC 7748 section 5.2, first test vector (scalar, input u-coordinate, output u-coordinate).
RFC7748_SCALAR_MULT = [
    (
        "a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
        "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
        "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552",
    ),
]
# RFC 7748 section 6.1: Alice's and Bob's key pairs and their shared secret K.
RFC7748_DH = {
    "alice_private": "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
    "alice_public": "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a",
    "bob_private": "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb",
    "bob_public": "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f",
    "shared": "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742",
}
HKDF_LABEL = (
    b"privfl/secagg+/v1/"  # privfl.secagg.crypto: info = label || purpose || run || round || lo || hi || session
)


def tape(label: str, size: int) -> bytes:
    """``size`` deterministic bytes standing in for the OS CSPRNG."""
    return hashlib.shake_256(b"privfl test vectors/" + label.encode()).digest(size)


def hkdf_sha256(ikm: bytes, info: bytes, length: int = 32) -> bytes:
    """RFC 5869 with an absent salt (a HashLen string of zeros, section 2.2)."""
    prk = hmac.new(bytes(32), ikm, hashlib.sha256).digest()  # extract
    okm, block = b"", b""
    for counter in range(1, -(-length // 32) + 1):  # expand: T(i) = HMAC(PRK, T(i-1) || info || i)
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        okm += block
    return okm[:length]


def x25519(private_hex: str, public_hex: str) -> bytes:
    private = X25519PrivateKey.from_private_bytes(bytes.fromhex(private_hex))
    return private.exchange(X25519PublicKey.from_public_bytes(bytes.fromhex(public_hex)))


def public_of(private_hex: str) -> str:
    private = X25519PrivateKey.from_private_bytes(bytes.fromhex(private_hex))
    return private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


def key_agreement() -> dict[str, Any]:
    for scalar, u, out in RFC7748_SCALAR_MULT:
        assert x25519(scalar, u).hex() == out, "the X25519 primitive disagrees with RFC 7748 section 5.2"
    dh = RFC7748_DH
    assert public_of(dh["alice_private"]) == dh["alice_public"] and public_of(dh["bob_private"]) == dh["bob_public"]
    assert x25519(dh["alice_private"], dh["bob_public"]).hex() == dh["shared"]
    derived = []
    for i, (purpose, run_id, server_round, a, b) in enumerate(
        [
            (b"share-encryption", 0, 1, 1, 2),
            (b"pairwise-mask", 7, 3, 5, 2),
            (b"pairwise-mask", 2**63 - 1, 2**32, 2**40, 1),
        ]
    ):
        session = tape(f"session {i}", 32)  # the round's session hash (privfl.secagg.session)
        lo, hi = sorted((a, b))
        info = HKDF_LABEL + purpose + struct.pack(">QQQQ", run_id, server_round, lo, hi) + session
        key = hkdf_sha256(bytes.fromhex(dh["shared"]), info)
        context = {"run_id": run_id, "server_round": server_round, "a": a, "b": b, "session": session.hex()}
        derived.append({"purpose": purpose.hex(), **context, "key": key.hex()})
    keypairs = [{"entropy": tape(f"keypair {i}", 32).hex()} for i in range(2)]
    for pair in keypairs:
        pair["public"] = public_of(pair["entropy"])
    return {
        "source": "RFC 7748 sections 5.2 and 6.1; HKDF-SHA256 by RFC 5869 (salt absent)",
        "scalar_mult": [{"scalar": s, "u": u, "output": o} for s, u, o in RFC7748_SCALAR_MULT],
        "diffie_hellman": dh,
        "derived": derived,
        "keypairs": keypairs,
    }


def aes_ctr_keystream(seed: bytes, num_bytes: int) -> bytes:
    """AES-256-CTR from an all-zero counter block (privfl.secagg.prg), here from the primitive."""
    return Cipher(algorithms.AES(seed), modes.CTR(bytes(16))).encryptor().update(bytes(num_bytes))


def masks() -> dict[str, Any]:
    cases = []
    for i, (dtype, count) in enumerate([("<u4", 5), ("<u8", 3), ("<u4", 70), ("<u8", 0)]):
        seed = tape(f"mask seed {i}", 32)
        words = np.frombuffer(aes_ctr_keystream(seed, count * np.dtype(dtype).itemsize), dtype=dtype)
        acc = np.frombuffer(tape(f"mask accumulator {i}", count * np.dtype(dtype).itemsize), dtype=dtype)
        cases.append(
            {
                "seed": seed.hex(),
                "dtype": dtype,
                "count": count,
                "words": words.tobytes().hex(),
                "accumulator": acc.tobytes().hex(),
                "plus": (acc + words).tobytes().hex(),  # unsigned wraparound: arithmetic mod 2^32 or 2^64
                "minus": (acc - words).tobytes().hex(),
            }
        )
    return {"source": "AES-256-CTR (NIST SP 800-38A), all-zero initial counter block", "cases": cases}


def field_element(entropy: bytes) -> tuple[int, bytes]:
    """The next coefficient from ``entropy`` by privfl's rule (66 bytes masked to 521 bits, p redrawn)."""
    while True:
        value = int.from_bytes(entropy[:SHARE_BYTES], "big") & SHAMIR_PRIME
        entropy = entropy[SHARE_BYTES:]
        if value < SHAMIR_PRIME:
            return value, entropy


def shamir() -> dict[str, Any]:
    cases = []
    for i, (xs, threshold) in enumerate([([1, 2, 3], 2), ([4, 9, 16, 25, 36], 3), ([7], 1), ([2**63 - 1, 5], 2)]):
        secret = tape(f"shamir secret {i}", 32)
        entropy = tape(f"shamir coefficients {i}", SHARE_BYTES * (threshold - 1))
        coefficients, rest = [int.from_bytes(secret, "big")], entropy
        for _ in range(threshold - 1):
            value, rest = field_element(rest)
            coefficients.append(value)
        shares = {x: sum(c * pow(x, k, SHAMIR_PRIME) for k, c in enumerate(coefficients)) % SHAMIR_PRIME for x in xs}
        cases.append(
            {
                "secret": secret.hex(),
                "xs": xs,
                "threshold": threshold,
                "entropy": entropy.hex(),
                "shares": [[x, y.to_bytes(SHARE_BYTES, "big").hex()] for x, y in shares.items()],
            }
        )
    return {"source": "Shamir 1979 over GF(2^521 - 1); coefficients lowest degree first", "cases": cases}


def quantizer() -> dict[str, Any]:
    from privfl.secagg.quantization import Quantizer  # privfl's own output: a regression vector

    cases = []
    for i, (clip, bits, scale, dtype) in enumerate(
        [(1.0, 8, 1.0, "<u4"), (0.5, 16, 0.25, "<u8"), (3.0, 1, 1.0, "<u4")]
    ):
        values = np.array([-2.0, -1.0, -0.3, 0.0, 1e-9, 0.2, 0.5, 0.999, 1.0, 7.5], dtype="<f8") * clip
        entropy = tape(f"quantiser coins {i}", 32)
        out = Quantizer(clip, bits).quantize(values, np.dtype(dtype), scale=scale, _entropy=lambda n, e=entropy: e[:n])
        cases.append(
            {
                "clip": clip,
                "bits": bits,
                "scale": scale,
                "dtype": dtype,
                "values": values.tobytes().hex(),
                "entropy": entropy.hex(),
                "quantized": out.astype(dtype).tobytes().hex(),
            }
        )
    return {"source": "privfl.secagg.quantization (stochastic rounding with AES-CTR coins)", "cases": cases}


def aead() -> dict[str, Any]:
    cases = []
    for i, (plaintext, ad) in enumerate([(b"share bundle", b"privfl/secagg+/v1/ad"), (b"", b""), (bytes(100), b"x")]):
        key, nonce = tape(f"aead key {i}", 32), tape(f"aead nonce {i}", 12)
        sealed = nonce + AESGCM(key).encrypt(nonce, plaintext, ad)
        cases.append(
            {
                "key": key.hex(),
                "plaintext": plaintext.hex(),
                "ad": ad.hex(),
                "entropy": nonce.hex(),
                "sealed": sealed.hex(),
            }
        )
    return {"source": "AES-256-GCM (NIST SP 800-38D); sealed = nonce || ciphertext || tag", "cases": cases}


VECTORS = {
    "x25519_hkdf.json": key_agreement,
    "aes_ctr_masks.json": masks,
    "shamir.json": shamir,
    "quantizer.json": quantizer,
    "aes_gcm.json": aead,
}


def render(build: Any) -> str:
    return json.dumps(build(), indent=1) + "\n"


def main() -> None:
    for name, build in VECTORS.items():
        (HERE / name).write_text(render(build))
        print(f"wrote {HERE / name}", file=sys.stderr)


if __name__ == "__main__":
    main()
