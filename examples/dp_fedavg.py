"""DP-FedAvg on digits with client-level central DP at three budgets, and a privacy-utility plot.

Run: ``python examples/dp_fedavg.py [--out runs/dp_fedavg.png] [--seeds 5]``

Digits has only 1,347 training images, so to make client-level DP meaningful the example
simulates a cross-device population: the training set is split IID into 1,000 clients of
one or two images each (:class:`privfl.tasks.digits.DigitsPopulation`). Each round, clients are
Poisson-sampled with q = 0.1 (about 100 per round); the server clips every update to L2
norm C = 1, adds N(0, (zC)^2) to the sum and divides by the expected 100 clients
(McMahan et al. 2018). For each target epsilon (1, 3, 8 at delta 1e-5 over 60 rounds) the
noise multiplier z is calibrated with the RDP accountant, the run is given that budget,
and the epsilon actually spent is read back from the run's ledger. A clipped, noiseless
run is the non-private reference. Accuracies are on the held-out test split, averaged over
seeds (the noise itself always comes from the CSPRNG, so reruns differ slightly).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from privfl.accounting import PrivacyBudget, calibrate_noise_multiplier
from privfl.client.app import ClientApp
from privfl.core.plain import PlainAggregator
from privfl.dp import CentralDp, ClipEachUpdate
from privfl.server.history import History
from privfl.server.sampling import PoissonSampler
from privfl.server.simulation import run_simulation
from privfl.server.strategy import FedAvg
from privfl.tasks.digits import DigitsPopulation, initial_parameters

CLIENTS, RATE, ROUNDS, CLIP, DELTA = 1000, 0.1, 60, 1.0, 1e-5
TARGETS = (1.0, 3.0, 8.0)


def train(aggregator, seed: int) -> History:
    population = DigitsPopulation(num_clients=CLIENTS, seed=0)
    result = run_simulation(
        ClientApp(population),
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
        raise RuntimeError(f"run stopped early: {result.stopped}")
    return result.history


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/dp_fedavg.png"))
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()

    print(f"{CLIENTS} clients, q={RATE}, {ROUNDS} rounds, clip {CLIP}, delta {DELTA:g}")
    print(f"{'target eps':>10} {'z':>7} {'spent eps':>10} {'accuracy (mean +- std over seeds)':>36}")
    rows = []
    curves: dict[str, list[History]] = {}
    for target in (*TARGETS, None):
        accuracies, spent, z = [], float("inf"), 0.0
        label = "no DP (clipped)" if target is None else f"epsilon {target:g}"
        for seed in range(args.seeds):
            if target is None:
                history = train(PlainAggregator(weighting="uniform", transform=ClipEachUpdate(CLIP)), seed)
            else:
                z = calibrate_noise_multiplier(epsilon=target, delta=DELTA, sampling_rate=RATE, rounds=ROUNDS)
                dp = CentralDp.with_server_clipping(
                    noise_multiplier=z, clip_norm=CLIP, budget=PrivacyBudget(target, DELTA), delta=DELTA
                )
                history = train(dp, seed)
                spent = dp.ledger.epsilon(DELTA)
                assert len(dp.ledger.entries) == ROUNDS
            accuracies.append(history.last("centralized", "accuracy"))
            curves.setdefault(label, []).append(history)
        mean, std = float(np.mean(accuracies)), float(np.std(accuracies))
        rows.append((target, z, spent, mean, std))
        shown = "-" if target is None else f"{target:g}"
        print(f"{shown:>10} {z:7.3f} {spent:10.4f} {mean:29.4f} +- {std:.4f}", flush=True)
    plot(rows, curves, args.out)
    print(f"plot written to {args.out}")


def plot(rows, curves: dict[str, list[History]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    private = [r for r in rows if r[0] is not None]
    left.errorbar([r[2] for r in private], [r[3] for r in private], yerr=[r[4] for r in private], marker="o", capsize=3)
    baseline = next(r for r in rows if r[0] is None)
    left.axhline(baseline[3], color="grey", linestyle="--", label="no DP (clipped)")
    left.set_xscale("log")
    left.set_xticks([r[2] for r in private], [f"{r[2]:.3g}" for r in private])
    left.minorticks_off()
    left.set_xlabel(f"epsilon spent (delta={DELTA:g}, {ROUNDS} rounds)")
    left.set_ylabel("final test accuracy")
    left.set_title("Privacy-utility trade-off")
    left.legend()
    for label, histories in curves.items():
        acc = np.mean([[a for _, a in h.series("centralized", "accuracy")] for h in histories], axis=0)
        right.plot(np.arange(1, len(acc) + 1), acc, label=label)
    right.set_xlabel("round")
    right.set_ylabel("test accuracy (mean over seeds)")
    right.set_ylim(0, 1)
    right.legend()
    for ax in (left, right):
        ax.grid(alpha=0.3)
    fig.suptitle(f"DP-FedAvg on digits, {CLIENTS} simulated clients, q={RATE}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
