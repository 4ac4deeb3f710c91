"""SecAgg+ benchmark: privfl's SecAgg+ round vs its plain round vs Flower's SecAgg+, side by side.

For each (n clients, d parameters, dropout) case, privfl rounds run in three modes:
the plain aggregator; SecAgg+ in semi-honest mode (``SecAggPlusAggregator(...,
semi_honest=True)``, the protocol of the previous release: the baseline); and the
hardened SecAgg+ that resists an active server (``roster=...``: signed keys, session
binding, consistency round), with the same k and t. Each mode runs in a fresh
subprocess (so its peak RSS is its own), driven by
``InProcessClients`` / ``drive`` as the bundled loop drives a round; the median of
up to 5 rounds (within ~3 s) is kept. The client is synthetic: it returns the
global model plus one of four precomputed random float32 updates, so training costs
one vector add. Dropped clients (a fixed random 10%) fail where they would upload:
at the masked-input stage of SecAgg+ (after sharing keys, so the server must
reconstruct their pairwise masks), on the train task of the plain round. Each round
checks that the new model is the survivors' mean update.

Timing is by instrumentation:

* client: time inside the client app (mods included), median over clients that
  uploaded, and per SecAgg+ stage;
* codec: time in the transport minus client time (encode/decode on both sides);
* server: round time minus transport time (the exchange's own work, unmasking included);
* encode / mask / sign / verify / model digest: median time per client in each step,
  from the client's public ``profile`` hook (``SecAggMod(profile=...)``); masking is
  compared with raw AES-256-CTR keystream for the same number of bytes.

Flower's SecAgg+ (``SecAggPlusWorkflow`` + ``secaggplus_mod``, simulation runtime)
runs in its own virtualenv ``benchmarks/.flwr-venv``, created on first use, through
``benchmarks/_flower_secagg_job.py``; it gets the same n, d, neighbour count
(``num_shares`` = k + 1: Flower counts the client itself), threshold and dropped clients.

Usage: ``python benchmarks/secagg.py [--quick | --full | --cases N,D,...] [--no-flower] [--markdown]``
(``--quick`` is the issue-11 pair: n = 100, d = 1e5 and n = 500, d = 1e6.)
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from privfl.client import ClientApp, NumPyClient
from privfl.secagg import Federation, RoundParams, SecAggConfig, SecAggMod, SecAggPlusAggregator
from privfl.secagg.protocol import STAGE_MASKED_INPUT
from privfl.server import FailurePlan, FedAvg, InProcessClients, PlainAggregator, RoundSpec, SamplingInfo, drive

HERE = Path(__file__).resolve().parent
FLOWER_VENV = HERE / ".flwr-venv"
FLOWER_SPEC = "flwr[simulation]==1.41.*"
FLOWER_JOB = HERE / "_flower_secagg_job.py"
FLOWER_MAX_ND = 1e8
"""Flower is skipped when n * d exceeds this: its ``Grid.send_and_receive`` returns all n masked vectors at
once as int64 (n * d * 8 bytes: 4 GB at n = 500, d = 1e6), and such a round takes many minutes here."""

FULL = [(n, d) for n in (10, 50, 100, 500) for d in (10**4, 10**5, 10**6)]
QUICK = [(100, 10**5), (500, 10**6)]
DROPOUTS = (0.0, 0.1)
MODES = ("plain", "secagg", "hardened")
STEPS = ("encode", "mask", "sign", "verify", "model_digest")
RSS_CASE = (500, 10**6)
STAGES = ("setup", "share_keys", "masked_input", "consistency", "unmask")


def dropped_nodes(n: int, dropout: float) -> list[int]:
    """The same fixed random subset of node ids 1..n for privfl and Flower."""
    count = round(dropout * n)
    return sorted(int(v) + 1 for v in np.random.default_rng(n).choice(n, count, replace=False))


def round_params(n: int) -> RoundParams:
    """privfl's default SecAgg+ parameters (neighbours k, threshold t, word size) for n clients."""
    return SecAggConfig().round_params(n)


# ---------------------------------------------------------------- one privfl round (in a subprocess)


def measure_round(mode: str, n: int, d: int, dropout: float) -> dict:
    """Measure privfl rounds (``mode`` "plain" or "secagg"): up to 5 within ~3 s, the median one is kept."""
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    pool = np.random.default_rng(0).uniform(-0.5, 0.5, (4, d)).astype(np.float32)

    class SyntheticClient(NumPyClient):
        def __init__(self, node: int) -> None:
            self.node = node

        def fit(self, parameters, config):
            return [parameters[0] + pool[self.node % 4]], 1, {}

    secure = mode != "plain"
    steps_sink = [lambda node, step, seconds: None]

    def profile(node: int, step: str, seconds: float) -> None:
        steps_sink[0](node, step, seconds)  # per round: seconds per (client, step), summed over calls

    config = SecAggConfig(weighting="uniform")
    if mode == "hardened":
        federation = Federation.generate(range(1, n + 1), config.corruption)  # same k, t as the baseline
        mod = SecAggMod(trust=federation.trust, profile=profile)
        aggregator = SecAggPlusAggregator(config, roster=federation.roster)
    elif mode == "secagg":
        mod = SecAggMod(semi_honest=True, profile=profile)
        aggregator = SecAggPlusAggregator(config, semi_honest=True)
    else:
        mod, aggregator = None, PlainAggregator("uniform")
    app = ClientApp(SyntheticClient, mods=[mod] if mod else [])
    dropped = dropped_nodes(n, dropout)
    upload_stage = STAGE_MASKED_INPUT if secure else "train"
    spec = RoundSpec(
        run_id=1,
        server_round=1,
        nodes=tuple(range(1, n + 1)),
        parameters={"w": np.zeros(d, dtype=np.float32)},
        config={},
        sampling=SamplingInfo(n, 1.0, False),
    )
    survivors = [u for u in spec.nodes if u not in dropped]
    residues = np.bincount(np.asarray(survivors) % 4, minlength=4)
    expected = residues @ pool.astype(np.float64) / len(survivors)  # the survivors' mean update
    timers: dict[str, float] = {}
    client_time: dict[int, float] = {}
    stage_time: dict[str, list[float]] = {}  # stage -> client seconds per message

    def timed_app(message, context):
        t0 = time.perf_counter()
        try:
            return app(message, context)
        finally:
            elapsed = time.perf_counter() - t0
            timers["client"] += elapsed
            client_time[context.node_id] += elapsed
            stage_time.setdefault(message.metadata.stage or "train", []).append(elapsed)

    def one_round() -> dict:
        timers.update(client=0.0, transport=0.0)
        per_client: dict[tuple[int, str], float] = {}

        def profile_round(node: int, step: str, seconds: float) -> None:
            per_client[(node, step)] = per_client.get((node, step), 0.0) + seconds

        steps_sink[0] = profile_round
        client_time.update(dict.fromkeys(spec.nodes, 0.0))
        stage_time.clear()
        clients = InProcessClients(timed_app, failures=FailurePlan.script((1, upload_stage, u) for u in dropped))
        snapshots: list[tuple[str, int]] = []  # (stage, bytes up so far) when each stage starts

        def deliver(outbox):
            snapshots.append((outbox[0].metadata.stage or "train", clients.traffic.bytes_up))
            replies = clients.deliver(outbox)
            while True:
                t0 = time.perf_counter()
                reply = next(replies, None)
                timers["transport"] += time.perf_counter() - t0
                if reply is None:
                    return
                yield reply

        t0 = time.perf_counter()
        outcome = drive(FedAvg(aggregator=aggregator).fit_round(spec), deliver)
        total = time.perf_counter() - t0
        error = float(np.max(np.abs(outcome.parameters["w"] - expected)))
        if outcome.num_clients != len(survivors) or error > 1e-2:
            raise RuntimeError(f"{mode} round aggregated {outcome.num_clients} clients with max error {error}")
        snapshots.append(("end", clients.traffic.bytes_up))
        upload = {a[0]: b[1] - a[1] for a, b in itertools.pairwise(snapshots)}
        return {
            "total": total,
            "client": statistics.median(client_time[u] for u in survivors),
            "stages": {stage: statistics.median(times) for stage, times in stage_time.items()},
            "codec": timers["transport"] - timers["client"],
            "server": total - timers["transport"],
            "up": clients.traffic.bytes_up / n,
            "down": clients.traffic.bytes_down / n,
            "up_vector": upload[upload_stage] / len(survivors),
            "up_other": (clients.traffic.bytes_up - upload[upload_stage]) / n,
            **{
                step: statistics.median([v for (_, st), v in per_client.items() if st == step] or [0.0])
                for step in STEPS
            },
            "error": error,
        }

    runs = [one_round()]
    while len(runs) < 5 and sum(r["total"] for r in runs) < 3.0:
        runs.append(one_round())
    result = sorted(runs, key=lambda r: r["total"])[len(runs) // 2]

    # Raw AES-256-CTR keystream, written in place (the fastest use of the library), for the
    # bytes one client's masks take: k + 1 masks of d + 1 words.
    params = round_params(n)
    zeros = bytes((d + 1) * params.dtype.itemsize)
    out = bytearray(len(zeros) + 16)

    def keystream() -> float:
        t0 = time.perf_counter()
        for _ in range(params.num_neighbours + 1):
            Cipher(algorithms.AES(os.urandom(32)), modes.CTR(bytes(16))).encryptor().update_into(zeros, out)
        return time.perf_counter() - t0

    result.update(
        runs=len(runs),
        keystream=statistics.median(keystream() for _ in range(5)),
        rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        rss_before_mb=rss_before / 1024,
    )
    return result


def run_privfl(mode: str, n: int, d: int, dropout: float, timeout: float) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--one", f"{mode},{n},{d},{dropout}"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"error_text": f"timeout after {timeout:.0f} s"}
    if proc.returncode != 0:
        return {
            "error_text": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"
        }
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- Flower (its own virtualenv, a subprocess)


def ensure_flower() -> str:
    """Create ``benchmarks/.flwr-venv`` with Flower if missing; return the installed version."""
    python = FLOWER_VENV / "bin" / "python"
    if not python.exists():
        print(f"installing {FLOWER_SPEC} into {FLOWER_VENV} ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(FLOWER_VENV)], check=True)
        constraints = HERE.parent / "constraints.txt"
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "-c", str(constraints), FLOWER_SPEC],
            check=True,
        )
    out = subprocess.run(
        [str(python), "-c", "import flwr; print(flwr.__version__)"], capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


def run_flower(n: int, d: int, dropout: float, timeout: float) -> dict:
    params = round_params(n)
    if n * d > FLOWER_MAX_ND:
        return {"skipped": f"n*d > {FLOWER_MAX_ND:.0e}: Flower holds all n int64 vectors ({n * d * 8 / 1e9:.0f} GB)"}
    env = {**os.environ, "PRIVFL_BENCH_DROPPED": ",".join(str(u - 1) for u in dropped_nodes(n, dropout))}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = [str(FLOWER_VENV / "bin" / "python"), str(FLOWER_JOB), str(n), str(d), str(params.num_neighbours + 1)]
        cmd += [str(params.threshold), str(out)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, check=False)
        except subprocess.TimeoutExpired:
            return {"skipped": f"timeout after {timeout:.0f} s"}
        if not out.exists() or proc.returncode != 0:
            return {"skipped": f"Flower run failed (exit {proc.returncode}): {proc.stderr.strip()[-300:]}"}
        result = json.loads(out.read_text())
    expected = n - len(dropped_nodes(n, dropout))
    if result["secagg_s"] is None or result["secagg_counts"][0] != expected:
        return {"skipped": f"Flower SecAgg+ round did not aggregate {expected} clients: {result}"}
    return result


# ---------------------------------------------------------------- report


def fmt_bytes(b: float) -> str:
    return f"{b / 1e6:.2f} MB" if b >= 1e6 else f"{b / 1e3:.1f} KB"


LEGEND = f"""\
Seconds per round: privfl, median of up to 5 rounds (within ~3 s); Flower, one round after a warm-up round.
semi s = SecAgg+ in semi-honest mode (the previous protocol, the baseline); hard s = SecAgg+ hardened against an
active server (same k, t); hard/semi = their ratio; x plain = hardened / plain round; client s = time in the
client app per uploading client (median, hardened), all stages; server s = the hardened server exchange's own
work; codec s = encoding and decoding on both sides; up/down per selected client (hardened), all stages;
vec/f32 = masked-vector message / float32 update (4 d bytes); RSS = peak resident memory of the hardened
round's process (server + in-process clients); flwr x = Flower SecAgg+ / plain; flwr/hard = Flower SecAgg+
round / privfl hardened round. Flower is skipped where n * d > {FLOWER_MAX_ND:.0e}: its server receives all n
masked vectors at once as int64, and such a round takes many minutes here."""
CLIENT_LEGEND = """\
privfl hardened SecAgg+ client, ms per client (medians, from SecAggMod's profile hook): stages (masked_input
includes the synthetic fit); encode = clip, scale, stochastic rounding; mask = k key agreements and k + 1
mask expansions; keystream = raw AES-256-CTR (cryptography, in place) over the same (k + 1)(d + 1) words;
sign = Ed25519 signature of the round keys; verify = roster (cached per process) and k neighbours'
signatures; digest = SHA-256 of the received model; semi mask = the semi-honest client's mask step."""


def render(head: list[str], body: list[list[str]], markdown: bool) -> str:
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        return "\n".join(lines + ["| " + " | ".join(cells) + " |" for cells in body])
    widths = [max(len(x) for x in col) for col in zip(head, *body, strict=True)]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(cells, widths, strict=True)) for cells in [head, *body])


def case_cells(r: dict) -> list[str]:
    return [str(r["n"]), f"1e{round(math.log10(r['d']))}", f"{r['dropout']:.0%}", str(r["k"])]


def completed(r: dict) -> bool:
    return all("total" in r[mode] for mode in MODES)


def round_table(rows: list[dict], markdown: bool) -> str:
    """Round times side by side: privfl plain, semi-honest and hardened SecAgg+, Flower plain and SecAgg+."""
    head = ["n", "d", "drop", "k", "plain s", "semi s", "hard s", "hard/semi", "x plain", "client s", "server s"]
    head += ["codec s", "up/client", "down/client", "vec/f32", "RSS MB", "flwr plain s", "flwr secagg s", "flwr x"]
    head += ["flwr/hard"]
    body = []
    for r in rows:
        p, semi, h, f = r["plain"], r["secagg"], r["hardened"], r["flower"]
        cells = case_cells(r)
        if not completed(r):
            cells += [x.get("error_text", f"{x.get('total', 0):.3f}") for x in (p, semi, h)] + [""] * 10
        else:
            cells += [f"{p['total']:.3f}", f"{semi['total']:.3f}", f"{h['total']:.3f}"]
            cells += [f"{h['total'] / semi['total']:.2f}", f"{h['total'] / p['total']:.1f}"]
            cells += [f"{h['client']:.4f}", f"{h['server']:.3f}", f"{h['codec']:.3f}"]
            cells += [fmt_bytes(h["up"]), fmt_bytes(h["down"]), f"{h['up_vector'] / (4 * r['d']):.3f}"]
            cells += [f"{h['rss_mb']:.0f}"]
        if "skipped" in f:
            cells += ["-", "-", "-", f"skipped: {f['skipped']}"]
        else:
            cells += [f"{f['plain_s']:.3f}", f"{f['secagg_s']:.3f}", f"{f['secagg_s'] / f['plain_s']:.1f}"]
            cells += [f"{f['secagg_s'] / h['total']:.1f}" if "total" in h else ""]
        body.append(cells)
    return render(head, body, markdown)


def client_table(rows: list[dict], markdown: bool) -> str:
    """Hardened SecAgg+ client time by stage and step, in ms per client; masking against the raw keystream."""
    head = ["n", "d", "drop", "k", *STAGES, "encode", "mask", "keystream", "mask/ks", "sign", "verify", "digest"]
    head += ["semi mask"]
    body = []
    for r in rows:
        h, semi = r["hardened"], r["secagg"]
        if "total" not in h or "total" not in semi:
            continue
        cells = case_cells(r) + [f"{1e3 * h['stages'].get(f'secagg.{st}', 0.0):.2f}" for st in STAGES]
        cells += [f"{1e3 * h[key]:.2f}" for key in ("encode", "mask", "keystream")]
        cells += [f"{h['mask'] / h['keystream']:.2f}"]
        cells += [f"{1e3 * h[key]:.3f}" for key in ("sign", "verify", "model_digest")]
        cells += [f"{1e3 * semi['mask']:.2f}"]
        body.append(cells)
    return render(head, body, markdown)


def targets(rows: list[dict]) -> list[str]:
    ok = [r for r in rows if completed(r)]
    lines = []

    def verdict(name: str, passed: bool | None, text: str) -> None:
        mark = "n/a " if passed is None else ("PASS" if passed else "FAIL")
        lines.append(f"({name}) {mark} {text}")

    ref = [r for r in ok if (r["n"], r["d"], r["dropout"]) == (100, 10**5, 0.1) and "secagg_s" in r["flower"]]
    if ref:
        x = ref[0]["flower"]["secagg_s"] / ref[0]["hardened"]["total"]
        verdict(
            "a",
            x >= 20,
            f"n=100 d=1e5 10% drop: Flower {ref[0]['flower']['secagg_s']:.2f} s / privfl hardened "
            f"{ref[0]['hardened']['total']:.3f} s = {x:.1f}x faster (target >= 20x)",
        )
    else:
        verdict("a", None, "case n=100 d=1e5 10% dropout with Flower not in this run")
    for n, d in QUICK:
        case = [r for r in ok if (r["n"], r["d"], r["dropout"]) == (n, d, 0.1)]
        if case:
            x = case[0]["hardened"]["total"] / case[0]["secagg"]["total"]
            verdict(
                "g",
                x <= 1.25,
                f"n={n} d={d:.0e} 10% drop: hardened {case[0]['hardened']['total']:.3f} s / semi-honest "
                f"{case[0]['secagg']['total']:.3f} s = {x:.2f}x (target <= 1.25x)",
            )
        else:
            verdict("g", None, f"case n={n} d={d:.0e} 10% dropout not in this run")
    if ok:
        worst = max(ok, key=lambda r: r["hardened"]["up_vector"] / (4 * r["d"]))
        x = worst["hardened"]["up_vector"] / (4 * worst["d"])
        other = max(r["hardened"]["up_other"] for r in ok)
        verdict(
            "c",
            x <= 1.1,
            f"masked-vector upload / float32 update: worst {x:.4f} at n={worst['n']} "
            f"d={worst['d']:.0e}; key, signature, share and tag messages up to {fmt_bytes(other)} per client "
            "(target <= 1.1x)",
        )
        costs = [
            f"n={r['n']} d={r['d']:.0e} drop={r['dropout']:.0%}: sign {1e3 * r['hardened']['sign']:.3f} ms, "
            f"verify {1e3 * r['hardened']['verify']:.3f} ms, model digest {1e3 * r['hardened']['model_digest']:.3f} ms"
            for r in ok
        ]
        verdict("h", None, "signature and verification cost per client: " + "; ".join(costs))
    rss = [r for r in ok if (r["n"], r["d"]) == RSS_CASE]
    if rss:
        r = max(rss, key=lambda r: r["hardened"]["rss_mb"])
        grown = r["hardened"]["rss_mb"] - r["hardened"]["rss_before_mb"]
        vector = r["d"] * 4 / 2**20
        verdict(
            "f",
            grown < 0.1 * r["n"] * vector,
            f"n=500 d=1e6 peak RSS of the hardened round's process {r['hardened']['rss_mb']:.0f} MB, {grown:.0f} MB "
            f"above its pre-round {r['hardened']['rss_before_mb']:.0f} MB = {grown / vector:.0f} float32 vectors "
            f"(plain round: {r['plain']['rss_mb']:.0f} MB); holding all n vectors would take "
            f"{r['n'] * vector:.0f} MB (target: growth < 10% of that)",
        )
    else:
        verdict("f", None, "case n=500 d=1e6 not in this run")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    pick = parser.add_mutually_exclusive_group()
    pick.add_argument("--quick", action="store_true", help="n,d in {(100,1e5), (500,1e6)} (default)")
    pick.add_argument("--full", action="store_true", help="n in {10,50,100,500} x d in {1e4,1e5,1e6}")
    pick.add_argument("--cases", help="comma-separated n,d pairs, e.g. 100,100000,500,1000000")
    pick.add_argument("--one", help=argparse.SUPPRESS)  # internal: mode,n,d,dropout -> JSON on stdout
    parser.add_argument("--no-flower", action="store_true", help="skip Flower's SecAgg+")
    parser.add_argument("--markdown", action="store_true", help="print the table as markdown")
    parser.add_argument("--timeout", type=float, default=600.0, help="per-round timeout in seconds")
    args = parser.parse_args()
    if args.one:
        mode, n, d, dropout = args.one.split(",")
        print(json.dumps(measure_round(mode, int(n), int(d), float(dropout))))
        return
    if args.cases:
        values = [int(float(v)) for v in args.cases.split(",")]
        if len(values) % 2:
            parser.error("--cases takes n,d pairs")
        cases = list(zip(values[::2], values[1::2], strict=True))
    else:
        cases = FULL if args.full else QUICK
    flower_version = None if args.no_flower else ensure_flower()
    started = time.perf_counter()
    rows = []
    for n, d in cases:
        for dropout in DROPOUTS:
            print(f"n={n} d={d:.0e} dropout={dropout:.0%} ...", file=sys.stderr, flush=True)
            row = {"n": n, "d": d, "dropout": dropout, "k": round_params(n).num_neighbours}
            for mode in MODES:
                row[mode] = run_privfl(mode, n, d, dropout, args.timeout)
            row["flower"] = {"skipped": "--no-flower"} if args.no_flower else run_flower(n, d, dropout, args.timeout)
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)  # partial results, should the run be cut short
    print(
        f"SecAgg+ round benchmark, {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores, "
        f"total {time.perf_counter() - started:.0f} s; privfl {version('privfl')} (in-process clients), "
        f"Flower {flower_version or '(not run)'} (simulation runtime, 1 actor)"
    )
    print(round_table(rows, args.markdown))
    print(LEGEND)
    print()
    print(client_table(rows, args.markdown))
    print(CLIENT_LEGEND)
    print()
    print("\n".join(targets(rows)))


if __name__ == "__main__":
    main()
