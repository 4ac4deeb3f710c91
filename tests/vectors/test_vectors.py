"""Known-answer tests: privfl's SecAgg+ primitives against the committed vector files, byte for byte."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from privfl.errors import MessageError
from privfl.secagg import crypto, shamir
from privfl.secagg.prg import MaskExpander, uniform_words
from privfl.secagg.quantization import Quantizer

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("privfl_vectors_generate", HERE / "generate.py")
assert _spec is not None and _spec.loader is not None
generate = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(generate)


def load(name: str) -> dict:
    return json.loads((HERE / name).read_text())


class Tape:
    """Injected entropy: hands out a recorded byte string and checks it is used up exactly."""

    def __init__(self, hex_bytes: str) -> None:
        self.data = bytes.fromhex(hex_bytes)

    def __call__(self, n: int) -> bytes:
        assert n <= len(self.data), f"asked for {n} bytes, {len(self.data)} left on the tape"
        out, self.data = self.data[:n], self.data[n:]
        return out

    def assert_consumed(self) -> None:
        assert not self.data, f"{len(self.data)} bytes of the tape were not used"


@pytest.mark.parametrize("name", list(generate.VECTORS))
def test_the_generator_still_writes_the_committed_files(name: str) -> None:
    assert generate.render(generate.VECTORS[name]) == (HERE / name).read_text()


def test_keypair_generation_from_injected_entropy() -> None:
    vectors = load("x25519_hkdf.json")
    dh = vectors["diffie_hellman"]
    for private, public in [(dh["alice_private"], dh["alice_public"]), (dh["bob_private"], dh["bob_public"])]:
        tape = Tape(private)
        assert crypto.KeyPair.generate(_entropy=tape).public.hex() == public
        tape.assert_consumed()
    for pair in vectors["keypairs"]:
        assert crypto.KeyPair.generate(_entropy=Tape(pair["entropy"])).public.hex() == pair["public"]


def test_key_agreement_and_hkdf_derivation() -> None:
    vectors = load("x25519_hkdf.json")
    dh = vectors["diffie_hellman"]
    alice = X25519PrivateKey.from_private_bytes(bytes.fromhex(dh["alice_private"]))
    bob = X25519PrivateKey.from_private_bytes(bytes.fromhex(dh["bob_private"]))
    for case in vectors["derived"]:
        context = {k: case[k] for k in ("run_id", "server_round", "a", "b")} | {
            "session": bytes.fromhex(case["session"])
        }
        purpose = bytes.fromhex(case["purpose"])
        key = crypto.agree(alice, bytes.fromhex(dh["bob_public"]), purpose=purpose, **context)
        assert key.hex() == case["key"]
        # Symmetric in the pair: Bob derives the same key with the ids either way round.
        swapped = {**context, "a": case["b"], "b": case["a"]}
        assert crypto.agree(bob, bytes.fromhex(dh["alice_public"]), purpose=purpose, **swapped) == key
    # Changing any context field changes the key.
    case = vectors["derived"][0]
    base = {k: case[k] for k in ("run_id", "server_round", "a", "b")} | {"session": bytes.fromhex(case["session"])}
    for field in base:
        changed = {**base, field: bytes(32) if field == "session" else 99}
        other = crypto.agree(alice, bytes.fromhex(dh["bob_public"]), purpose=bytes.fromhex(case["purpose"]), **changed)
        assert other.hex() != case["key"]


def test_aes_gcm_sealing_with_an_injected_nonce() -> None:
    for case in load("aes_gcm.json")["cases"]:
        key, plaintext, ad = (bytes.fromhex(case[k]) for k in ("key", "plaintext", "ad"))
        tape = Tape(case["entropy"])
        sealed = crypto.seal(key, plaintext, ad, _entropy=tape)
        tape.assert_consumed()
        assert sealed.hex() == case["sealed"]
        assert crypto.unseal(key, sealed, ad) == plaintext


def test_aes_ctr_mask_expansion() -> None:
    for case in load("aes_ctr_masks.json")["cases"]:
        seed, dtype, count = bytes.fromhex(case["seed"]), np.dtype(case["dtype"]), case["count"]
        assert uniform_words(seed, count, dtype).tobytes().hex() == case["words"]
        expander = MaskExpander(count, dtype)
        assert expander.expand(seed).tobytes().hex() == case["words"]
        for sign, key in [(1, "plus"), (-1, "minus")]:
            acc = np.frombuffer(bytes.fromhex(case["accumulator"]), dtype=dtype).copy()
            expander.add(acc, seed, sign)
            assert acc.tobytes().hex() == case[key]


def test_shamir_split_and_combine() -> None:
    for case in load("shamir.json")["cases"]:
        secret, threshold = bytes.fromhex(case["secret"]), case["threshold"]
        tape = Tape(case["entropy"])
        shares = shamir.split(secret, case["xs"], threshold, _entropy=tape)
        tape.assert_consumed()
        expected = {x: bytes.fromhex(y) for x, y in case["shares"]}
        assert {x: shamir.encode_element(y) for x, y in shares.items()} == expected
        decoded = {x: shamir.decode_element(y) for x, y in expected.items()}
        items = list(decoded.items())
        for start in range(len(items) - threshold + 1):  # every window of `threshold` shares
            assert shamir.combine(dict(items[start : start + threshold]), threshold) == secret


def test_shamir_combine_refuses_shares_of_two_secrets() -> None:
    first, second = load("shamir.json")["cases"][:2]
    mixed = {1: shamir.decode_element(bytes.fromhex(first["shares"][0][1]))}
    mixed[4] = shamir.decode_element(bytes.fromhex(second["shares"][0][1]))
    with pytest.raises(MessageError):
        shamir.combine(mixed, 2)


def test_shamir_redraws_the_one_out_of_range_value() -> None:
    # 66 bytes of 0xff mask to p itself, which is not a field element: the next 66 bytes are used.
    tape = Tape("ff" * 66 + "00" * 65 + "07")
    assert shamir.random_element(_entropy=tape) == 7
    tape.assert_consumed()


def test_quantizer_outputs() -> None:
    for case in load("quantizer.json")["cases"]:
        values = np.frombuffer(bytes.fromhex(case["values"]), dtype="<f8")
        tape = Tape(case["entropy"])
        quantizer = Quantizer(case["clip"], case["bits"])
        out = quantizer.quantize(values, np.dtype(case["dtype"]), scale=case["scale"], _entropy=tape)
        tape.assert_consumed()
        assert out.astype(case["dtype"]).tobytes().hex() == case["quantized"]
        assert values.flags.writeable is False  # read-only input (as decoded from the wire) is never written
