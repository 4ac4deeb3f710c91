"""``privfl demo ddp``: one distributed-DP round on SecAgg+, and what the server learns from it.

Each simulated client holds a random update of ``--dim`` values (L2 norm about the clip norm).
The server plans the parameters for a target epsilon (noise shares sized for ``--min-clients``
survivors), runs the real SecAgg+ exchange, and every client runs the real distributed-DP client
mod: clip, rotate, scale, round, add its own noise share, mask. Clients drop out with probability
``--dropout`` at a random stage. The demo then compares what the server unmasked with the true
sum of the survivors' clipped updates, which no party ever computes.
"""

from __future__ import annotations

import argparse
import math
import time
from typing import Any

import numpy as np

from privfl.cli.demo_secagg import _GridClient
from privfl.cli.options import int_at_least, probability
from privfl.client.app import ClientApp
from privfl.core.exchange import RoundSpec, SamplingInfo
from privfl.ddp import DistributedDp, ddp_mod
from privfl.ddp.mechanism import clip_flat
from privfl.errors import ConfigError, ProtocolAbort
from privfl.secagg import protocol as p
from privfl.server.failures import FailurePlan
from privfl.server.transport import InProcessClients, drive


def add_demo_parser(demo_subparsers: Any) -> None:
    """Register ``privfl demo ddp``."""
    parser = demo_subparsers.add_parser(
        "ddp",
        help="one distributed-DP round on SecAgg+: noise added by the clients, what the server unmasks",
        description=__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--mechanism", choices=("ddg", "skellam"), default="ddg", help="noise distribution")
    parser.add_argument("--clients", type=int_at_least(2), default=100, help="clients in the round")
    parser.add_argument(
        "--min-clients", type=int_at_least(2), default=80, help="fewest survivors the noise is sized for"
    )
    parser.add_argument("--dim", type=int_at_least(1), default=1000, help="values per client update d")
    parser.add_argument("--bits", type=int_at_least(2), default=16, help="bits per coordinate (SecAgg+ modulus 2^bits)")
    parser.add_argument("--epsilon", type=float, default=3.0, help="target epsilon over all rounds")
    parser.add_argument("--delta", type=float, default=1e-5, help="target delta")
    parser.add_argument("--rounds", type=int_at_least(1), default=60, help="rounds the budget is planned for")
    parser.add_argument("--sample-rate", type=float, default=0.1, help="Poisson sampling rate q of the plan")
    parser.add_argument("--dropout", type=probability, default=0.1, help="probability that a client drops in the round")
    parser.add_argument("--seed", type=int, default=0, help="seed of the simulated updates and dropouts")
    parser.set_defaults(func=run_ddp_demo)


def run_ddp_demo(args: argparse.Namespace) -> int:
    """Run the demo; exit code 0 when the round completed or was refused as planned."""
    if args.min_clients > args.clients:
        raise ConfigError(f"--min-clients {args.min_clients} exceeds --clients {args.clients}")
    start = time.perf_counter()
    dp = DistributedDp.from_targets(
        mechanism=args.mechanism,
        dimension=args.dim,
        clip=1.0,
        bits=args.bits,
        epsilon=args.epsilon,
        delta=args.delta,
        rounds=args.rounds,
        sampling_rate=args.sample_rate,
        expected_clients=args.clients,
        min_clients=args.min_clients,
        enforce_budget=False,
        semi_honest=True,
    )
    params = dp.params
    noise_std = math.sqrt(params.local_variance) * params.gamma
    print(
        f"distributed DP ({args.mechanism}): {args.clients} clients, d = {args.dim:,} (padded {params.padded:,}), "
        f"{args.bits} bits per coordinate, planned in {time.perf_counter() - start:.1f} s for epsilon "
        f"{args.epsilon:g} at delta {args.delta:g} over {args.rounds} rounds at q = {args.sample_rate:g}"
    )
    print(
        f"  gamma = {params.gamma:.4g}; each client adds noise of std {noise_std:.4g} (model units); the shares of "
        f"{args.min_clients} survivors suffice for the target"
    )
    rng = np.random.default_rng(args.seed)  # simulated data and dropouts only; noise and keys use the CSPRNG
    nodes = tuple(range(1, args.clients + 1))
    updates = {u: rng.normal(size=args.dim) / math.sqrt(args.dim) for u in nodes}
    drops = [(1, str(rng.choice(p.STAGES)), u) for u in nodes if rng.random() < args.dropout]
    clients = InProcessClients(
        ClientApp(lambda u: _GridClient(updates[u]), mods=[ddp_mod(semi_honest=True)]),
        failures=FailurePlan.script(drops),
    )
    spec = RoundSpec(
        run_id=0,
        server_round=1,
        nodes=nodes,
        parameters={"update": np.zeros(args.dim)},
        config={},
        sampling=SamplingInfo(round(args.clients / args.sample_rate), args.sample_rate, True),
    )
    start = time.perf_counter()
    try:
        agg = drive(dp.aggregate(spec), clients.deliver)
    except ProtocolAbort as exc:
        print(f"round refused before anything was unmasked: {exc}")
        return 0
    seconds = time.perf_counter() - start
    survivors = [r.node_id for r in agg.results]
    print(
        f"round finished in {seconds:.2f} s: {len(survivors)} survivors, {len(agg.dropped)} dropped; "
        f"{clients.traffic.bytes_up / args.clients / 1024:.1f} KiB up per client (all stages)"
    )
    true = sum(clip_flat(updates[u], 1.0) for u in survivors)
    error = agg.update_sum["update"] - true
    expected = math.sqrt(len(survivors)) * noise_std
    print("what the server unmasked, against the true sum of the survivors' clipped updates (never formed):")
    print(f"  norm of the true sum {np.linalg.norm(true):.3g}; per-coordinate std of the true sum {true.std():.3g}")
    print(f"  error per coordinate: std {error.std():.4g}, the noise of {len(survivors)} shares {expected:.4g}")
    print(
        f"  epsilon after this round: {agg.metrics['dp_epsilon']:.4g} toward observers of the model "
        f"(q = {args.sample_rate:g}), {agg.metrics['ddp_epsilon_vs_server']:.4g} toward the server (no amplification)"
    )
    return 0
