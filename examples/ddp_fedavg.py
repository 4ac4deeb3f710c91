"""Distributed DP on digits: central DP, the distributed discrete Gaussian and Skellam at one epsilon.

Run: ``python examples/ddp_fedavg.py [--bits 12 14 16 18] [--out runs/ddp_fedavg.png]``

The population of :mod:`examples.dp_fedavg` (1,000 IID clients of digits, Poisson sampling
q = 0.1, 60 rounds, L2 clip 1, epsilon 3 at delta 1e-5). Central DP: the server clips and adds
N(0, (zC)^2) to the exact sum it sees. Distributed DP: each client clips, rotates, scales,
rounds, adds its own discrete noise share and masks with SecAgg+ mod 2^bits; the server
unmasks a sum that is already noisy (:class:`privfl.ddp.DistributedDp`, noise shares sized
for 80 survivors of the expected 100, epsilon read back from the run's ledger). Accuracy is
the mean test accuracy of the last 5 rounds; the upload is the masked vector as sent (16-,
32- or 64-bit words), everything a client sends in a round (SecAgg+ keys and shares
included), and the vector as it would be packed at ``bits`` per coordinate, against float32.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from privfl.accounting import PrivacyBudget, calibrate_noise_multiplier
from privfl.client.app import ClientApp
from privfl.ddp import DistributedDp, ddp_mod
from privfl.dp import CentralDp
from privfl.secagg.prg import word_dtype
from privfl.server.history import History
from privfl.server.sampling import PoissonSampler
from privfl.server.simulation import run_simulation
from privfl.server.strategy import FedAvg
from privfl.tasks.digits import DigitsPopulation, initial_parameters

CLIENTS, RATE, ROUNDS, CLIP, DELTA, EPSILON, MIN_CLIENTS = 1000, 0.1, 60, 1.0, 1e-5, 3.0, 80
LAST = 5


def train(aggregator, mods, seed: int) -> History:
    population = DigitsPopulation(num_clients=CLIENTS, seed=0)
    result = run_simulation(
        ClientApp(population, mods=mods),
        num_clients=CLIENTS,
        num_rounds=ROUNDS,
        initial_parameters=initial_parameters(),
        strategy=FedAvg(aggregator=aggregator, min_clients=0),
        sampler=PoissonSampler(RATE),
        centralized_evaluate=population.evaluate,
        seed=seed,
        progress=False,
    )
    if result.stopped:
        raise SystemExit(f"run stopped early: {result.stopped}")
    return result.history


def final_accuracy(history: History) -> float:
    return float(np.mean([a for _, a in history.series("centralized", "accuracy")][-LAST:]))


def upload_per_client(history: History) -> float:
    """Bytes a participating client sends per round, all messages (SecAgg+ keys, shares and vector)."""
    return sum(r.bytes_up for r in history.rounds) / max(1, sum(r.num_clients for r in history.rounds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bits", type=int, nargs="+", default=[12, 14, 16, 18])
    parser.add_argument("--mechanisms", nargs="+", default=["ddg", "skellam"])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("runs/ddp_fedavg.png"))
    args = parser.parse_args()
    dim = sum(v.size for v in initial_parameters().values())
    budget = PrivacyBudget(EPSILON, DELTA)

    z = calibrate_noise_multiplier(epsilon=EPSILON, delta=DELTA, sampling_rate=RATE, rounds=ROUNDS)
    central = CentralDp.with_server_clipping(noise_multiplier=z, clip_norm=CLIP, budget=budget, delta=DELTA)
    start = time.perf_counter()
    history = train(central, [], args.seed)
    central_acc = final_accuracy(history)
    print(f"central DP upload per client per round: {upload_per_client(history):.0f} B (float32 model: {4 * dim} B)")
    print(
        f"central DP      z={z:.4f}  accuracy {central_acc:.4f}  epsilon {central.ledger.epsilon(DELTA):.3f}  "
        f"({time.perf_counter() - start:.0f} s)",
        flush=True,
    )

    print(
        "| mechanism | bits | accuracy | vs central | epsilon (ledger) | epsilon vs server | vector (all stages) | "
        "packed / float32 |"
    )
    print("|---|---|---|---|---|---|---|---|")
    results: dict[str, list[tuple[int, float]]] = {}
    for bits in args.bits:
        for mechanism in args.mechanisms:
            start = time.perf_counter()
            dp = DistributedDp.from_targets(
                mechanism=mechanism,
                dimension=dim,
                clip=CLIP,
                bits=bits,
                epsilon=EPSILON,
                delta=DELTA,
                rounds=ROUNDS,
                sampling_rate=RATE,
                expected_clients=int(CLIENTS * RATE),
                min_clients=MIN_CLIENTS,
                semi_honest=True,
            )
            history = train(dp, [ddp_mod(semi_honest=True)], args.seed)
            acc = final_accuracy(history)
            results.setdefault(mechanism, []).append((bits, acc))
            sent = dp.params.padded * word_dtype(bits).itemsize
            packed = dp.params.padded * bits / 8
            up = upload_per_client(history)
            print(
                f"| {mechanism} | {bits} | {acc:.4f} | {100 * (acc - central_acc):+.1f} pts | "
                f"{dp.ledger.epsilon(DELTA):.3f} | {dp.server_ledger.epsilon(DELTA):.1f} | {sent} B ({up:.0f} B) | "
                f"{packed / (4 * dim):.2f}x |  ({time.perf_counter() - start:.0f} s)",
                flush=True,
            )

            plot(results, central_acc, z, args.out)
    print(f"plot written to {args.out}")


def plot(results: dict[str, list[tuple[int, float]]], central_acc: float, z: float, out: Path) -> None:
    """Accuracy against bits per coordinate, central DP as a line (rewritten after every run)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.axhline(central_acc, color="black", linestyle="--", label=f"central DP (z={z:.2f})")
    for mechanism, points in results.items():
        points = sorted(points)
        ax.plot([b for b, _ in points], [a for _, a in points], marker="o", label=mechanism)
    ax.set_ylim(central_acc - 0.1, min(1.0, central_acc + 0.03))  # a narrow axis would magnify seed noise
    ax.set_xlabel("bits per coordinate")
    ax.set_ylabel(f"test accuracy (mean of last {LAST} rounds)")
    ax.set_title(f"digits, epsilon {EPSILON:g}, delta {DELTA:g}, {ROUNDS} rounds, q={RATE}")
    ax.grid(alpha=0.3)
    ax.legend()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
