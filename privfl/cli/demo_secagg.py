"""``privfl demo secagg``: one SecAgg+ round, what the server sees, who dropped, and the recovered sum.

By default the round resists an actively malicious server: an operator key signs a
roster of the clients' Ed25519 identities (and the corruption bound), every client
pins the operator key, signs its round keys, checks its neighbours' signatures and
the k/t floor, and reveals shares only after a consistency round. ``--semi-honest``
runs the protocol that trusts the server instead.

Each simulated client holds a random update of ``--dim`` values. To make the
check exact, updates lie on the quantisation grid (odd multiples of 2^-15 in
[-2, 2], 16-bit levels), so the integer sum the server unmasks can be compared
with the true integer sum bit for bit. Each client drops out with probability
``--dropout`` at a uniformly chosen stage. The server is the real SecAgg+
exchange and clients run the real client mod; every message crosses the wire codec.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import chisquare
from tqdm.auto import tqdm

from privfl.cli.options import PLOT_SUFFIXES, int_at_least, output_file, probability
from privfl.client.app import ClientApp
from privfl.client.numpy_client import NDArrays, NumPyClient
from privfl.core.exchange import RoundSpec, SamplingInfo
from privfl.core.extras import require_all
from privfl.core.message import Message
from privfl.errors import ConfigError, ProtocolAbort
from privfl.secagg import protocol as p
from privfl.secagg.client import SecAggMod
from privfl.secagg.config import SecAggConfig
from privfl.secagg.identity import Federation
from privfl.secagg.params import choose_parameters
from privfl.secagg.server import SecAggRoundResult, secagg_exchange
from privfl.server.failures import FailurePlan
from privfl.server.transport import InProcessClients, drive

BITS = 16
STEP_EXPONENT = 14
CLIP = (2**BITS - 1) / 2 * 2.0**-STEP_EXPONENT
"""Clip bound c with 2c / (2^16 - 1) = 2^-14 (about 2.0): grid values are exact in float64."""
CHI_SQUARE_BINS = 64


def add_demo_parser(demo_subparsers: Any) -> None:
    """Register ``privfl demo secagg``."""
    parser = demo_subparsers.add_parser(
        "secagg",
        help="one SecAgg+ round: the masked vector the server sees, dropouts, the exact recovered sum",
        description=__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--clients", type=int_at_least(3), default=20, help="number of clients n")
    parser.add_argument("--dim", type=int_at_least(1), default=10_000, help="values per client update d")
    parser.add_argument(
        "--dropout", type=probability, default=0.1, help="probability that a client drops during the round"
    )
    parser.add_argument(
        "--neighbours",
        type=int_at_least(1),
        default=None,
        help="neighbours k (default: the smallest secure k for n, --dropout and --corruption)",
    )
    parser.add_argument(
        "--threshold",
        type=int_at_least(1),
        default=None,
        help="threshold t (default: with k, as above; needs --neighbours)",
    )
    parser.add_argument(
        "--corruption", type=probability, default=0.05, help="fraction of clients the roster declares may collude"
    )
    parser.add_argument(
        "--semi-honest", action="store_true", help="trust the server to follow the protocol (no roster)"
    )
    parser.add_argument(
        "--histogram",
        type=output_file(*PLOT_SUFFIXES),
        default=None,
        help="save a histogram of one masked vector (.png, .svg or .pdf)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the simulated updates and dropouts (not of keys)")
    parser.set_defaults(func=run_secagg_demo)


class _GridClient(NumPyClient):
    """A client whose update is a fixed vector of grid values."""

    def __init__(self, update: np.ndarray) -> None:
        self.update = update

    def get_parameters(self, config: dict) -> NDArrays:
        return [np.zeros_like(self.update)]

    def fit(self, parameters: NDArrays, config: dict) -> tuple[NDArrays, int, dict]:
        return [parameters[0] + self.update], 1, {}

    def evaluate(self, parameters: NDArrays, config: dict) -> tuple[float, int, dict]:
        return 0.0, 1, {}


def _failure_plan(nodes: Sequence[int], dropout: float, rng: np.random.Generator) -> FailurePlan:
    """Each client drops with probability ``dropout``, at a stage chosen uniformly."""
    drops = [(1, str(rng.choice(p.STAGES)), u) for u in nodes if rng.random() < dropout]
    return FailurePlan.script(drops)


def _uniformity(vector: np.ndarray, modulus_bits: int) -> float:
    """Chi-square p-value of the top bits of ``vector`` against the uniform distribution on [0, 2^m)."""
    shift = max(modulus_bits - int(np.log2(CHI_SQUARE_BINS)), 0)
    bins = (vector.astype(np.uint64) >> np.uint64(shift)).astype(np.int64)
    return float(chisquare(np.bincount(bins, minlength=min(CHI_SQUARE_BINS, 2**modulus_bits))).pvalue)


def _save_histogram(masked: np.ndarray, plain: np.ndarray, modulus_bits: int, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    axes[0].hist(plain, bins=CHI_SQUARE_BINS, color="tab:orange")
    axes[0].set_title("client's quantised update (never sent)")
    axes[1].hist(masked, bins=CHI_SQUARE_BINS, range=(0, 2**modulus_bits), color="tab:blue")
    axes[1].set_title("what the server receives (masked)")
    for ax in axes:
        ax.set_xlabel("value")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run_secagg_demo(args: argparse.Namespace) -> int:
    """Run the demo; returns the process exit code (0: exact recovery, 1: round aborted or mismatch)."""
    if args.histogram is not None:
        require_all(("matplotlib",), "--histogram")
    if args.threshold is not None and args.neighbours is None:
        raise ConfigError("--threshold needs --neighbours too (t counts shares among the k neighbours)")
    k, t = args.neighbours, args.threshold
    if k is None:  # the smallest (k, t) secure for the roster and robust to this dropout rate
        chosen = choose_parameters(args.clients, dropout=args.dropout, corruption=args.corruption)
        k, t = chosen.num_neighbours, chosen.threshold
    config = SecAggConfig(
        coordinate_bound=CLIP,
        bits=BITS,
        weighting="uniform",
        corruption=args.corruption,
        num_neighbours=k,
        threshold=t,
    )
    params = config.round_params(args.clients)
    rng = np.random.default_rng(args.seed)  # simulated data and dropouts only; keys and masks use the OS CSPRNG
    nodes = tuple(range(1, args.clients + 1))
    # Update-like values (normal, sd 0.25) snapped to the grid: level j stands for (j - L/2) * 2^-14.
    levels = {
        u: np.clip(
            np.rint(rng.normal(0, 0.25, args.dim) * 2**STEP_EXPONENT + (2**BITS - 1) / 2 - 0.5), 0, 2**BITS - 1
        ).astype(np.int64)
        for u in nodes
    }
    updates = {u: (levels[u] - (2**BITS - 1) / 2) * 2.0**-STEP_EXPONENT for u in nodes}
    print(f"SecAgg+ demo: {args.clients} clients, d = {args.dim:,}, dropout probability {args.dropout}")
    print(
        f"  k = {params.num_neighbours} neighbours, threshold t = {params.threshold}, {BITS}-bit quantisation, "
        f"modulus 2^{params.modulus_bits} ({params.dtype} on the wire)"
    )

    federation = None if args.semi_honest else Federation.generate(nodes, config.corruption, int(config.security_bits))
    if federation is None:
        print("  trust: semi-honest (no roster): the server is trusted to follow the protocol")
        mod = SecAggMod(semi_honest=True)
    else:
        roster = federation.roster.roster
        print(
            f"  trust: active server. Roster of {len(roster.keys)} Ed25519 identities signed by operator key "
            f"{federation.operator.public.hex()[:16]}...; declared corruption {roster.corruption:g}, "
            f"security 2^-{roster.security_bits}"
        )
        print("  every client pins the operator key, checks k and t against that floor, and signs its round keys")
        mod = SecAggMod(trust=federation.trust)
    clients = InProcessClients(
        ClientApp(lambda u: _GridClient(updates[u]), mods=[mod]),
        failures=_failure_plan(nodes, args.dropout, rng),
    )
    seen: dict[int, np.ndarray] = {}
    tags: list[int] = []

    def deliver(outbox: Sequence[Message]) -> Iterator[Message]:
        stage = outbox[0].metadata.stage if outbox else ""
        with tqdm(total=len(outbox), desc=f"{stage:<20}", unit="msg", leave=True) as bar:
            for reply in clients.deliver(outbox):
                if stage == p.STAGE_MASKED_INPUT and not seen:
                    seen[reply.metadata.src_node] = reply.arrays[p.MASKED].copy()
                if stage == p.STAGE_CONSISTENCY:
                    tags.append(len(reply.arrays[p.NODES]))
                bar.update(1)
                yield reply

    spec = RoundSpec(
        run_id=0,
        server_round=1,
        nodes=nodes,
        parameters={"update": np.zeros(args.dim)},
        config={},
        sampling=SamplingInfo(args.clients, 1.0, False),
    )
    start = time.perf_counter()
    try:
        roster_file = None if federation is None else federation.roster
        result: SecAggRoundResult = drive(secagg_exchange(spec, config, roster_file), deliver)
    except ProtocolAbort as exc:
        print(f"round aborted (the sum cannot be unmasked safely): {exc}")
        return 1
    seconds = time.perf_counter() - start
    print(f"round finished in {seconds:.2f} s; {clients.traffic.bytes_up / args.clients / 1024:.1f} KiB up per client")

    print("dropouts:")
    for stage in p.STAGES:
        lost = result.dropped.get(stage, ())
        excluded = result.excluded.get(stage, ())
        note = f"; excluded after it for lack of live neighbours: {list(excluded)}" if excluded else ""
        print(f"  {stage:<22} {list(lost) if lost else '-'}{note}")

    if federation is not None:
        print(
            f"consistency round: the server sent the survivor set ({len(result.survivors)} clients) to every survivor; "
            f"each attested it to its surviving neighbours ({min(tags, default=0)}-{max(tags, default=0)} tags "
            f"each, HMAC under the pairwise key); each revealed shares only after t = {params.threshold} "
            "neighbours' tags on the same set verified"
        )
    for rejection in result.rejected:
        print(f"  rejected reply (treated as a dropout): node {rejection.node} at {rejection.stage}: {rejection.error}")

    node, masked = next(iter(seen.items()))
    m = params.modulus_bits
    plain = levels[node]
    print(f"what the server sees from client {node} ({masked.size:,} words mod 2^{m}):")
    print(
        f"  masked vector: mean {masked.mean():.4g} (uniform: {(2**m - 1) / 2:.4g}), "
        f"std {masked.std():.4g} (uniform: {2**m / np.sqrt(12):.4g}), min {masked.min()}, max {masked.max()}"
    )
    print(
        f"  chi-square uniformity p-value ({CHI_SQUARE_BINS} bins): masked {_uniformity(masked, m):.3f}, "
        f"the client's own quantised update {_uniformity(plain, m):.3g}"
    )
    if args.histogram is not None:
        print(f"  histogram written to {_save_histogram(masked, plain, m, args.histogram)}")

    survivors = result.survivors
    true_levels = sum(levels[u].astype(np.uint64) for u in survivors) & np.uint64(2**m - 1)
    exact = bool(np.array_equal(result.total[:-1], true_levels)) and int(result.total[-1]) == len(survivors)
    recovered = params.quantizer.dequantize_sum(result.total[:-1], len(survivors))
    true_sum = sum(updates[u] for u in survivors)
    print(f"recovered the sum of the {len(survivors)} surviving clients' updates:")
    print(f"  integer sum equals the true sum exactly: {exact}")
    print(f"  max |recovered - true| over {args.dim:,} values: {np.max(np.abs(recovered - true_sum)):.3g}")
    return 0 if exact else 1
