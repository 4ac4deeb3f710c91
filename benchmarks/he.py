"""CKKS aggregation: privfl's presets against the straightforward TenSEAL usage, side by side in one run.

Variants:
  privfl         fl-8192: N=8192, primes [60, 40], scale 2^40; the model is packed into
                 full ciphertexts, clients encrypt num_examples * parameters, the server
                 only adds, one client at a time (privfl.he.EncryptedSum).
  privfl-seeded  fl-8192-seeded: as above with seeded symmetric uploads.
  privfl-committee fl-8192-committee: N=8192, primes [60, 60, 60], scale 2^100; no
                 single key holder: a committee of 3 holds Shamir shares of the key,
                 clients encrypt under the joint public key, 2 members return smudged
                 partial decryptions (2^74, 40-bit statistical security), the server
                 combines them and rounds. "dec s" is the slower member's partial
                 decryption plus the combination (members work in parallel); the
                 note gives each part.
  straightforward N=8192, primes [60, 40, 40], scale 2^40, one ckks_vector per layer,
                 clients encrypt raw parameters, the server multiplies each by its weight
                 (costing a rescale, hence the extra prime) and adds, also one client at
                 a time.

For each model size d and client count n: client encryption time per client, upload
bytes per client (the encoded wire message) and its expansion over float32, server
aggregation time for n uploads (wire decoding, checks, deserialisation, additions;
measured in a fresh subprocess that reads uploads one at a time, with its peak RSS
above the baseline after loading the context), decryption time and the max error
of the decrypted weighted mean against the plaintext weighted mean.

Honest shortcuts, printed with the results: clients encrypt K distinct models
(K <= n) that the server cycles through n times (server cost does not depend on the
values; the error is computed against exactly what was aggregated), and where n
uploads would take too long the server time is extrapolated linearly from n=10.

Usage: python benchmarks/he.py [--quick] [--budget SECONDS]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psutil
import tenseal as ts

from privfl.core.message import Message, MessageKind, Metadata
from privfl.core.wire import decode, encode
from privfl.he import (
    FL_8192,
    FL_8192_COMMITTEE,
    FL_8192_SEEDED,
    CkksKeys,
    ClientCipher,
    Committee,
    CommitteeConfig,
    EncryptedSum,
    combine,
)
from privfl.he.codec import ciphertext_arrays, read_ciphertext_arrays

VARIANTS = ("privfl", "privfl-seeded", "privfl-committee", "straightforward")
PARAMS = {"privfl": FL_8192, "privfl-seeded": FL_8192_SEEDED, "privfl-committee": FL_8192_COMMITTEE}
STRAIGHT_PRIMES = [60, 40, 40]
MIB = 2**20


@contextlib.contextmanager
def quiet_stdout() -> Iterator[None]:
    """Silence TenSEAL's C++ warning about vectors larger than one ciphertext."""
    sys.stdout.flush()
    saved = os.dup(1)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 1)
        try:
            yield
        finally:
            os.dup2(saved, 1)
            os.close(saved)


def layer_sizes(d: int) -> list[int]:
    """A four-layer model of d values (two weight matrices, a head, a bias)."""
    first, second = round(0.7 * d), round(0.25 * d)
    return [first, second, d - first - second - 100, 100]


def upload_message(node: int, arrays: dict[str, np.ndarray], weight: int) -> bytes:
    md = Metadata(0, 1, node, 0, MessageKind.TRAIN)
    return encode(Message(md, arrays=arrays, metrics={"num_examples": weight}))


def straight_context() -> ts.Context:
    ctx = ts.context(ts.SCHEME_TYPE.CKKS, 8192, coeff_mod_bit_sizes=STRAIGHT_PRIMES)
    ctx.global_scale = 2.0**40
    return ctx


# ----------------------------------------------------------------------------- server subprocess


def reset_peak_rss() -> None:
    """Reset the kernel's peak-RSS mark of this process to its current RSS (Linux >= 4.0)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def peak_rss() -> int:
    """Peak RSS (bytes) of this process image: VmHWM, which unlike ru_maxrss excludes the parent before exec."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def server_worker(spec: dict) -> dict:
    """Aggregate n uploads read one at a time from files; time, peak RSS, and the serialised sum."""
    context = Path(spec["context"]).read_bytes()
    files = spec["files"]
    if spec["variant"] == "straightforward":
        pub = ts.context_from(context)
    else:
        keys = CkksKeys(PARAMS[spec["variant"]], context)
        total = EncryptedSum(keys, spec["d"])
    reset_peak_rss()
    baseline = psutil.Process().memory_info().rss
    seconds = cpu = 0.0
    sums: list = []
    for i in range(spec["n"]):
        data = Path(files[i % len(files)]).read_bytes()
        start, start_cpu = time.perf_counter(), time.process_time()
        message = decode(data)
        del data
        if spec["variant"] == "straightforward":
            weight = message.metrics["num_examples"]
            for j, name in enumerate(message.arrays):
                vector = ts.ckks_vector_from(pub, message.arrays[name].tobytes())
                vector *= weight
                if i == 0:
                    sums.append(vector)
                else:
                    sums[j] += vector
        else:
            total.add(read_ciphertext_arrays(message.arrays, keys.key_id, len(total.sizes)))
        seconds += time.perf_counter() - start
        cpu += time.process_time() - start_cpu
        del message
    result = [v.serialize() for v in sums] if sums else total.serialize()
    peak = peak_rss()
    Path(spec["out"]).write_bytes(
        encode(
            Message(
                Metadata(0, 1, 0, 1, MessageKind.TRAIN),
                arrays={str(i): np.frombuffer(b, dtype=np.uint8) for i, b in enumerate(result)},
            )
        )
    )
    return {"seconds": seconds, "cpu": cpu, "peak_above_baseline": peak - baseline, "baseline": baseline}


def run_server(spec: dict) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--server-worker", json.dumps(spec)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"server worker failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- one configuration


class Bench:
    """Encrypts K clients for one (d, variant) and aggregates for each n."""

    def __init__(self, variant: str, d: int, k: int, workdir: Path, rng: np.random.Generator) -> None:
        self.variant, self.d, self.k, self.dir = variant, d, k, workdir
        self.sizes = layer_sizes(d)
        self.models = [rng.normal(0.0, 0.1, d).astype(np.float32) for _ in range(k)]
        self.weights = [int(w) for w in rng.integers(50, 500, k)]
        if variant == "straightforward":
            self.ctx = straight_context()
            server_ctx = self.ctx.serialize(save_secret_key=False, save_galois_keys=False, save_relin_keys=False)
        elif variant == "privfl-committee":
            self.committee = Committee.generate(CommitteeConfig(members=3, threshold=2))
            self.keys = self.committee.keys
            self.cipher = ClientCipher(self.keys)
            server_ctx = self.keys.context
        else:
            self.keys = CkksKeys.generate(PARAMS[variant])
            self.cipher = ClientCipher(self.keys)
            server_ctx = self.keys.public().context
        self.context_file = workdir / f"{variant}-{d}.ctx"
        self.context_file.write_bytes(server_ctx)
        self.files: list[str] = []
        encrypt_cpu = 0.0
        upload_bytes = 0
        for j, (model, weight) in enumerate(zip(self.models, self.weights, strict=True)):
            start = time.process_time()
            data = upload_message(j + 1, self.encrypt(model, weight), weight)
            encrypt_cpu += time.process_time() - start
            path = workdir / f"{variant}-{d}-{j}.msg"
            path.write_bytes(data)
            self.files.append(str(path))
            upload_bytes += len(data)
        self.encrypt_per_client = encrypt_cpu / k
        self.upload_per_client = upload_bytes / k

    def encrypt(self, model: np.ndarray, weight: int) -> dict[str, np.ndarray]:
        if self.variant == "straightforward":
            arrays = {}
            start = 0
            with quiet_stdout():
                for i, size in enumerate(self.sizes):
                    blob = ts.ckks_vector(self.ctx, model[start : start + size].tolist()).serialize()
                    arrays[f"layer{i}"] = np.frombuffer(blob, dtype=np.uint8)
                    start += size
            return arrays
        return ciphertext_arrays(self.keys.key_id, self.cipher.encrypt(weight * model.astype(np.float64)))

    def committee_decrypt(self, blobs: list[bytes], n: int) -> tuple[np.ndarray, float, str]:
        """(released sum, seconds with members in parallel, note) for the committee variant."""
        signers = (1, 2)
        partials, member_seconds = {}, []
        for i in signers:
            start = time.perf_counter()
            partials[i] = self.committee.members[i - 1].partial_decrypt(blobs, signers)
            member_seconds.append(time.perf_counter() - start)
        start = time.perf_counter()
        released = combine(self.committee.config, blobs, partials, self.d, summands=n)
        combine_seconds = time.perf_counter() - start
        note = f"members {member_seconds[0]:.1f}/{member_seconds[1]:.1f} s, combine {combine_seconds:.1f} s"
        return released, max(member_seconds) + combine_seconds, note

    def aggregate(self, n: int) -> tuple[dict, float, float, str]:
        """(server stats, decryption seconds, max error, note) for n uploads."""
        out = self.dir / f"{self.variant}-{self.d}-{n}.sum"
        spec = {
            "variant": self.variant,
            "d": self.d,
            "n": n,
            "files": self.files,
            "context": str(self.context_file),
            "out": str(out),
        }
        stats = run_server(spec)
        blobs = [a.tobytes() for a in decode(out.read_bytes()).arrays.values()]
        counts = np.bincount(np.arange(n) % self.k, minlength=self.k)
        total_weight = float(np.dot(counts, self.weights))
        expected = sum(c * w * m.astype(np.float64) for c, w, m in zip(counts, self.weights, self.models, strict=True))
        expected /= total_weight
        start = time.perf_counter()
        note = ""
        if self.variant == "straightforward":
            with quiet_stdout():
                parts = [np.array(ts.ckks_vector_from(self.ctx, b).decrypt()) for b in blobs]
            mean = np.concatenate(parts) / total_weight
        elif self.variant == "privfl-committee":
            released, seconds, note = self.committee_decrypt(blobs, n)
            mean = released / total_weight
        else:
            mean = self.cipher.decrypt(blobs, self.d, summands=n) / total_weight
        decrypt_seconds = time.perf_counter() - start if self.variant != "privfl-committee" else seconds
        out.unlink()
        return stats, decrypt_seconds, float(np.max(np.abs(mean - expected))), note


# ----------------------------------------------------------------------------- driver


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="d in {1e4, 1e5}, n = 10 only")
    parser.add_argument("--dims", type=int, nargs="+", help="model sizes d (default: 1e4 1e5 1e6 1.1e7)")
    parser.add_argument("--clients", type=int, nargs="+", help="client counts n (default: 10 100)")
    parser.add_argument(
        "--budget",
        type=float,
        default=150.0,
        help="largest predicted server time (s) run for real; beyond it n uploads are extrapolated",
    )
    parser.add_argument("--server-worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.server_worker:
        print(json.dumps(server_worker(json.loads(args.server_worker))))
        return 0

    dims = args.dims or ([10**4, 10**5] if args.quick else [10**4, 10**5, 10**6, 11 * 10**6])
    clients = sorted(args.clients or ([10] if args.quick else [10, 100]))
    if clients[0] != 10:
        parser.error("--clients must include 10 (larger n may be extrapolated from it)")
    rng = np.random.default_rng(0)
    print(
        f"CKKS aggregation benchmark ({'quick' if args.quick else 'full'}), TenSEAL {ts.__version__}, "
        f"{os.cpu_count()} CPUs, python {sys.version.split()[0]}"
    )
    header = (
        f"{'d':>9} {'n':>4} {'variant':<15} {'enc cpu':>8} {'MiB/cl':>8} {'x f32':>6} {'srv wall':>9} "
        f"{'srv cpu':>9} {'cpu/strt':>8} {'srv MiB':>8} {'dec s':>6} {'max err':>8}  note"
    )
    rows: list[str] = []
    notes: list[str] = []
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="privfl-he-bench-") as tmp:
        for d in dims:
            k = 2 if d > 2 * 10**6 else 10
            benches = {}
            for variant in VARIANTS:
                print(f"  d={d:,}: {variant}: encrypting {k} distinct clients ...", flush=True)
                benches[variant] = Bench(variant, d, k, Path(tmp), rng)
            results_n10: dict = {}
            for n in clients:
                results = {}
                for variant, bench in benches.items():
                    note = f"K={bench.k} distinct"
                    measured_n = n
                    if n > 10:
                        per_client = results_n10[variant][0]["seconds"] / 10
                        if per_client * n > args.budget:
                            measured_n, note = 10, note + f"; server time extrapolated from n=10 (x{n / 10:g})"
                    print(f"  d={d:,} n={n}: {variant}: server aggregates {measured_n} uploads ...", flush=True)
                    stats, dec, err, dec_note = bench.aggregate(measured_n)
                    note = f"{note}; {dec_note}" if dec_note else note
                    if measured_n != n:
                        stats = dict(
                            stats, seconds=stats["seconds"] * n / measured_n, cpu=stats["cpu"] * n / measured_n
                        )
                    results[variant] = (stats, dec, err, note)
                if n == 10:
                    results_n10 = dict(results)
                straight = results["straightforward"][0]["cpu"]
                for variant, (stats, dec, err, note) in results.items():
                    bench = benches[variant]
                    rows.append(
                        f"{d:>9.2g} {n:>4} {variant:<15} {bench.encrypt_per_client:>8.3f} "
                        f"{bench.upload_per_client / MIB:>8.2f} {bench.upload_per_client / (4 * d):>6.2f} "
                        f"{stats['seconds']:>9.2f} {stats['cpu']:>9.2f} {stats['cpu'] / straight:>8.2f} "
                        f"{stats['peak_above_baseline'] / MIB:>8.1f} {dec:>6.2f} {err:>8.1e}  {note}"
                    )
                print(header, *rows[-len(results) :], sep="\n", flush=True)
            for variant, bench in benches.items():
                if variant != "straightforward":
                    one = bench.upload_per_client
                    notes.append(
                        f"d={d:.2g} {variant}: one client's upload {one / MIB:.1f} MiB "
                        f"(the running sum is about the same size)"
                    )
    print("\n=== results ===")
    print(header, *rows, sep="\n")
    print("\ncolumns: enc cpu = client encryption CPU seconds per client (incl. wire encoding);")
    print("MiB/cl = encoded upload per client; x f32 = upload / (4 d);")
    print("srv wall / srv cpu = server aggregation of n uploads (decode, checks, deserialise, add), wall and CPU s;")
    print("cpu/strt = server CPU time / the straightforward usage's (CPU time is robust to other load on the host);")
    print("srv MiB = server peak RSS above its baseline after loading the context (aggregation + serialising the sum);")
    print("dec s = decryption of the sum (committee: slower member + combination);")
    print("max err = max |released weighted mean - plaintext weighted mean| (privfl rounds to its release grid).")
    print(f"host load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(*notes, sep="\n")
    print(f"total benchmark time {time.perf_counter() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
