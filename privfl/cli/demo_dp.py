"""``privfl demo dp``: DP-FedAvg on digits with client-level central DP, epsilon spent per round.

Digits has 1,347 training images, too few clients for client-level DP to be cheap, so the
demo simulates a cross-device population: the training set is shuffled and split into many
small IID shards (one to a few images each), one per client
(:class:`~privfl.tasks.digits.DigitsPopulation`).
Clients are Poisson-sampled with rate q; each update is clipped on the server to L2 norm C;
the sum gets N(0, (zC)^2) noise and is divided by the expected qN clients (McMahan et al. 2018).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from privfl.cli.options import PLOT_SUFFIXES, int_at_least, output_file, positive_float, probability
from privfl.core.extras import require_all


def add_demo_parser(demo_subparsers: argparse._SubParsersAction) -> None:
    """Register ``privfl demo dp``."""
    parser = demo_subparsers.add_parser(
        "dp",
        help="DP-FedAvg on digits with client-level central DP (epsilon per round)",
        description="DP-FedAvg on digits over a simulated population of small IID clients: Poisson client "
        "sampling, server-side clipping, Gaussian noise on the sum, RDP accounting. Prints the epsilon "
        "spent after every round and the final test accuracy.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    noise = parser.add_mutually_exclusive_group()
    noise.add_argument("--epsilon", type=positive_float, default=3.0, help="target epsilon; z is calibrated to it")
    noise.add_argument("--noise-multiplier", type=positive_float, default=None, help="noise multiplier z (no budget)")
    parser.add_argument("--delta", type=float, default=1e-5, help="delta of the (epsilon, delta) guarantee")
    parser.add_argument("--clients", type=int_at_least(1), default=1000, help="simulated population size N")
    parser.add_argument("--sample-rate", type=probability, default=0.1, help="Poisson client sampling rate q")
    parser.add_argument("--rounds", type=int_at_least(1), default=60, help="training rounds")
    parser.add_argument("--clip", type=positive_float, default=1.0, help="L2 clip norm C of each client update")
    parser.add_argument("--server-lr", type=positive_float, default=1.0, help="server learning rate")
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the data split, local training and client sampling; the DP noise is always fresh "
        "CSPRNG noise, so results vary from run to run",
    )
    parser.add_argument(
        "--plot", type=output_file(*PLOT_SUFFIXES), default=Path("runs/demo_dp_accuracy.png"), help="accuracy plot"
    )
    parser.add_argument("--quiet", action="store_true", help="no per-round lines")
    parser.set_defaults(func=run_dp_demo)


def run_dp_demo(args: argparse.Namespace) -> int:
    from privfl.cli.demo import DEMO_EXTRAS

    require_all(DEMO_EXTRAS, "privfl demo dp")
    from privfl.accounting import PrivacyBudget, calibrate_noise_multiplier
    from privfl.cli.demo import save_accuracy_plot
    from privfl.client.app import ClientApp
    from privfl.dp.central import CentralDp
    from privfl.server.history import RoundRecord
    from privfl.server.sampling import PoissonSampler
    from privfl.server.simulation import run_simulation
    from privfl.server.strategy import FedAvg
    from privfl.tasks.digits import DigitsPopulation, initial_parameters

    population = DigitsPopulation(num_clients=args.clients, seed=args.seed)
    budget = None
    z = args.noise_multiplier
    if z is None:
        budget = PrivacyBudget(args.epsilon, args.delta)
        z = calibrate_noise_multiplier(
            epsilon=args.epsilon, delta=args.delta, sampling_rate=args.sample_rate, rounds=args.rounds
        )
    dp = CentralDp.with_server_clipping(noise_multiplier=z, clip_norm=args.clip, budget=budget, delta=args.delta)
    target = f"target epsilon {args.epsilon:g}" if budget is not None else "no budget"
    print(
        f"DP-FedAvg on digits: {args.clients} simulated clients, q={args.sample_rate:g} "
        f"(~{args.clients * args.sample_rate:.0f} per round), {args.rounds} rounds, clip C={args.clip:g}, "
        f"noise multiplier z={z:.4f}, delta={args.delta:g} ({target})"
    )
    print(f"seed {args.seed} fixes the data, training and sampling; the DP noise is fresh CSPRNG noise (results vary)")

    def print_round(record: RoundRecord) -> None:
        print(
            f"round {record.server_round:3d}  accuracy {record.centralized.get('accuracy', float('nan')):.4f}  "
            f"clients {record.num_clients:3d}  epsilon {record.fit.get('dp_epsilon', float('nan')):.4f}",
            flush=True,
        )

    start = time.perf_counter()
    result = run_simulation(
        ClientApp(population),
        num_clients=args.clients,
        num_rounds=args.rounds,
        initial_parameters=initial_parameters(),
        strategy=FedAvg(aggregator=dp, server_lr=args.server_lr, min_clients=0),
        sampler=PoissonSampler(args.sample_rate),
        centralized_evaluate=population.evaluate,
        seed=args.seed,
        progress=False,
        callbacks=() if args.quiet else (print_round,),
    )
    final = result.history.last("centralized", "accuracy")
    plot = save_accuracy_plot({f"DP, z={z:.2f}": result.history}, args.plot, "DP-FedAvg on digits")
    print(
        f"final test accuracy {final:.4f} after {len(result.history.rounds)} rounds in "
        f"{time.perf_counter() - start:.1f} s; epsilon spent {dp.ledger.epsilon(args.delta):.4f} at "
        f"delta {args.delta:g} ({len(dp.ledger.entries)} ledger entries)"
    )
    if result.stopped:
        print(f"stopped early: {result.stopped}")
    print(f"plot written to {plot}")
    return 0
