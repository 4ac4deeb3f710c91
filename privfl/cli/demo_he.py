"""``privfl demo he``: CKKS aggregation stage by stage, with sizes, timings and the error of the result.

Each simulated client draws a random float32 update of ``--dim`` values and an
example count, encrypts ``count * update`` and uploads it; the server folds each
upload into an encrypted running sum without being able to read it; the key
holder decrypts the sum and divides by the total count. The decrypted average is
compared with the plaintext example-weighted average (FedAvg).

With ``--committee C`` no single party holds the key: C key holders generate a
joint public key, each keeps a Shamir share of the secret, and any ``--threshold``
of them return smudged partial decryptions that the server combines into the
rounded sum.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from privfl.cli.options import int_at_least
from privfl.core.extras import require_all
from privfl.core.message import Message, MessageKind, Metadata
from privfl.core.wire import encode
from privfl.errors import ConfigError
from privfl.he.cipher import ClientCipher, EncryptedSum
from privfl.he.codec import ciphertext_arrays, read_ciphertext_arrays
from privfl.he.committee import Committee, CommitteeConfig, combine
from privfl.he.keys import CkksKeys
from privfl.he.packing import chunk_sizes
from privfl.he.params import PRESETS, preset
from privfl.he.release import release_step


def add_demo_parser(demo_subparsers: Any) -> None:
    """Register ``privfl demo he``."""
    parser = demo_subparsers.add_parser(
        "he",
        help="CKKS homomorphic aggregation: sizes, timings and error, stage by stage",
        description=__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--clients", type=int_at_least(1), default=10, help="number of clients")
    parser.add_argument("--dim", type=int_at_least(1), default=100_000, help="values per client update")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="fl-8192", help="CKKS parameter preset")
    parser.add_argument("--seed", type=int, default=0, help="seed of the simulated updates (not of the keys)")
    parser.add_argument(
        "--committee", type=int_at_least(0), default=0, help="key holders in committee mode (0: one shared key)"
    )
    parser.add_argument(
        "--threshold", type=int_at_least(0), default=0, help="members needed to decrypt (0: a majority)"
    )
    parser.set_defaults(func=run_he_demo)


def _mib(num_bytes: float) -> str:
    return f"{num_bytes / 2**20:.2f} MiB"


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def _upload(node: int, arrays: dict[str, np.ndarray]) -> int:
    """Encoded wire size (bytes) of a reply carrying ``arrays``."""
    return len(encode(Message(Metadata(0, 1, node, 0, MessageKind.TRAIN), arrays=arrays, metrics={"num_examples": 1})))


def _committee_decrypt(committee: Committee, cts: list[bytes], args: argparse.Namespace) -> np.ndarray:
    signers = tuple(range(1, committee.config.threshold + 1))
    partials = {}
    for i in signers:
        partials[i], seconds = _timed(lambda i=i: committee.members[i - 1].partial_decrypt(cts, signers))
        size = sum(p.nbytes for p in partials[i])
        print(f"      member {i}: smudged partial decryption in {seconds:.2f} s ({_mib(size)})")
    result, seconds = _timed(lambda: combine(committee.config, cts, partials, args.dim, summands=args.clients))
    print(f"[4/4] members {list(signers)} of {committee.config.members} decrypted; server combined in {seconds:.2f} s")
    return result


def run_he_demo(args: argparse.Namespace) -> int:
    """Run the demo; returns the process exit code."""
    require_all(("tenseal",), "privfl demo he")
    committee = None
    if args.committee:
        threshold = args.threshold or args.committee // 2 + 1
        committee = Committee.generate(CommitteeConfig(members=args.committee, threshold=threshold))
        params = committee.config.params
    else:
        params = preset(args.preset)
    rng = np.random.default_rng(args.seed)  # simulated data only; key material comes from SEAL's CSPRNG
    print(f"CKKS aggregation demo: {args.clients} clients, {args.dim:,} values each, preset {params.name}")
    print(
        f"  N={params.poly_modulus_degree}, primes {list(params.coeff_mod_bit_sizes)} bits, "
        f"scale 2^{params.scale_bits}, "
        f"{params.slots} values per ciphertext, {len(chunk_sizes(args.dim, params.slots))} ciphertexts per update"
        + (", seeded symmetric uploads" if params.seeded else "")
    )

    if committee is None:
        keys, seconds = _timed(lambda: CkksKeys.generate(params))
        server_keys = keys.public()
        print(f"[1/4] key holder: keys generated in {seconds:.2f} s (key id {keys.key_id.hex()})")
        print(
            f"      secret context for clients {_mib(len(keys.context))}, "
            f"public context for the server {_mib(len(server_keys.context))}"
        )
    else:
        keys = server_keys = committee.keys
        cfg = committee.config
        print(
            f"[1/4] committee of {cfg.members} generated a joint public key (key id {keys.key_id.hex()}); "
            f"any {cfg.threshold} can decrypt; the secret exists only as Shamir shares"
        )
        print(
            f"      smudging 2^{cfg.smudging_bits} per coefficient ({cfg.statistical_security}-bit statistical "
            f"security), public context {_mib(len(keys.context))}"
        )

    cipher = ClientCipher(keys)
    total = EncryptedSum(server_keys, args.dim)
    count = len(total.sizes)
    plain_sum = np.zeros(args.dim, dtype=np.float64)
    weight = 0
    encrypt_s = aggregate_s = 0.0
    plain_wire = cipher_wire = 0
    print("[2/4] clients encrypt, [3/4] server adds (streaming, one client at a time)")
    for node in range(1, args.clients + 1):
        update = rng.normal(0.0, 0.1, args.dim).astype(np.float32)
        examples = int(rng.integers(50, 500))
        plain_sum += examples * update.astype(np.float64)
        weight += examples
        cts, seconds = _timed(lambda u=update, n=examples: cipher.encrypt(n * u.astype(np.float64)))
        encrypt_s += seconds
        arrays = ciphertext_arrays(keys.key_id, cts)
        plain_wire += _upload(node, {"update": update})
        upload = _upload(node, arrays)
        cipher_wire += upload
        _, seconds = _timed(lambda a=arrays: total.add(read_ciphertext_arrays(a, server_keys.key_id, count)))
        aggregate_s += seconds
        print(
            f"      client {node:4d}/{args.clients}: {examples:3d} examples, uploaded {_mib(upload)}",
            flush=True,
        )

    if committee is None:
        result, seconds = _timed(lambda: cipher.decrypt(total.serialize(), args.dim, summands=args.clients) / weight)
        print(f"[4/4] key holder decrypts the sum and divides by the total weight {weight} in {seconds:.2f} s")
        step = release_step(params, args.clients)
    else:
        result, seconds = _timed(lambda: _committee_decrypt(committee, total.serialize(), args) / weight)
        step = committee.config.release_step(args.clients)
    print(f"      released values are rounded to multiples of {step:.3g} (Li and Micciancio 2021)")
    error = float(np.max(np.abs(result - plain_sum / weight)))

    print("\nsizes per client upload (encoded messages):")
    print(f"  plaintext float32  {_mib(plain_wire / args.clients)}")
    print(f"  ciphertexts        {_mib(cipher_wire / args.clients)}  ({cipher_wire / plain_wire:.2f}x)")
    print("timings:")
    print(f"  encryption         {encrypt_s / args.clients:.3f} s per client")
    print(f"  server aggregation {aggregate_s:.3f} s total, {aggregate_s / args.clients:.3f} s per client")
    print(f"  decryption         {seconds:.3f} s")
    print(f"max |decrypted average - plaintext FedAvg| = {error:.3e}")
    try:
        server_keys.secret_key_bytes()
    except ConfigError as exc:
        print(f"the server's keys cannot decrypt: {exc}")
    if committee is not None:
        print("no party holds the secret key; fewer than the threshold of members learn nothing from their shares")
    return 0
