"""The README setup with the SecAgg+ client floor paid in noise (m C) or in delta (bad-event slack), side by side.

CentralDp over semi-honest SecAgg+ (default parameters: floor m = 3), N = 1000 clients,
Poisson q = 0.1, 60 rounds, budget (epsilon 3, delta 1e-5), z calibrated for the budget as
in the README. Every round really runs SecAgg+ over the sampled clients, whose updates
are 0, so the released sum is the noise (plus SecAgg+ rounding): its measured std is
printed next to the configured one, with the ledger's epsilon and delta slack.
Training is left out (it does not change either number).

    .venv/bin/python benchmarks/dp_floor.py [--rounds 60] [--dim 2000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from privfl.accounting import PrivacyBudget, calibrate_noise_multiplier
from privfl.core.exchange import RoundSpec, SamplingInfo
from privfl.core.mods import compose
from privfl.dp import CentralDp
from privfl.secagg import SecAggConfig, SecAggMod, SecAggPlusAggregator
from privfl.server.transport import InProcessClients, drive

NUM_CLIENTS, SAMPLE_RATE = 1000, 0.1


def zero_update(message, context):
    del context
    return message.reply(arrays=dict(message.arrays), metrics={"num_examples": 1})


def run(mode: str, *, z: float, budget: PrivacyBudget, rounds: int, dim: int, seed: int) -> dict[str, float]:
    sampler = np.random.default_rng(seed)  # the benchmark's sampling; the DP noise is the CSPRNG's
    secagg = SecAggPlusAggregator(SecAggConfig(weighting="uniform", corruption=0.05), semi_honest=True)
    dp = CentralDp(secagg, noise_multiplier=z, clip_norm=1.0, budget=budget, floor_accounting=mode)
    clients = InProcessClients(compose(zero_update, [SecAggMod(semi_honest=True)]))
    params = {"w": np.zeros(dim)}
    noise, configured, sampled = [], [], []
    start = time.perf_counter()
    for r in range(1, rounds + 1):
        nodes = tuple(int(i) + 1 for i in np.flatnonzero(sampler.random(NUM_CLIENTS) < SAMPLE_RATE))
        spec = RoundSpec(0, r, nodes, params, {}, SamplingInfo(NUM_CLIENTS, SAMPLE_RATE, True))
        agg = drive(dp.aggregate(spec), clients.deliver)
        noise.append(agg.update_sum["w"])
        configured.append(agg.metrics["dp_noise_std"])
        sampled.append(len(nodes))
    clients.close()
    return {
        "noise std (configured)": float(np.mean(configured)),
        "noise std (measured)": float(np.std(np.concatenate(noise))),
        "epsilon at delta 1e-5": dp.ledger.epsilon(budget.delta),
        "delta slack (total)": dp.ledger.delta_slack,
        "mean sampled clients": float(np.mean(sampled)),
        "seconds": time.perf_counter() - start,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--dim", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    budget = PrivacyBudget(epsilon=3.0, delta=1e-5)
    z = calibrate_noise_multiplier(epsilon=3.0, delta=1e-5, sampling_rate=SAMPLE_RATE, rounds=args.rounds)
    print(f"N={NUM_CLIENTS} q={SAMPLE_RATE} rounds={args.rounds} clip 1.0 z={z:.4f} dim={args.dim}")
    results = {
        mode: run(mode, z=z, budget=budget, rounds=args.rounds, dim=args.dim, seed=args.seed)
        for mode in ("sensitivity", "delta")
    }
    print(f"{'':26s}{'sensitivity (m C)':>20s}{'delta (slack)':>20s}{'ratio':>10s}")
    for key in results["delta"]:
        before, after = results["sensitivity"][key], results["delta"][key]
        ratio = f"{after / before:.3f}" if before else "-"
        print(f"{key:26s}{before:20.10g}{after:20.10g}{ratio:>10s}")


if __name__ == "__main__":
    main()
