"""``privfl budget --mechanism ddg|skellam``: the budget and parameters of distributed DP on SecAgg+.

With ``--epsilon`` the parameters are planned for the target (:func:`privfl.ddp.plan_ddp`): gamma,
each client's noise, the sum's spread and the modular-clipping probability. With ``--gamma`` and
``--local-variance`` the epsilon of given parameters is reported. All rounds are accounted with
``--clients`` noise shares in the sum (the stated minimum of survivors).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from privfl.accounting.checks import check_delta, integer
from privfl.ddp.params import DEFAULT_BETA, MECHANISMS, DdpParams, epsilon_of, plan_ddp
from privfl.errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``budget --mechanism ddg|skellam`` (it shares -q, -T and --delta)."""
    group = parser.add_argument_group("distributed DP (--mechanism ddg or skellam)")
    group.add_argument(
        "--mechanism",
        choices=("gaussian", *MECHANISMS),
        default="gaussian",
        help="gaussian: DP-FedAvg (default); ddg: distributed discrete Gaussian; skellam: distributed Skellam",
    )
    group.add_argument("--clients", type=int, metavar="N", help="noise shares in each round's sum (min survivors)")
    group.add_argument("--expected-clients", type=int, metavar="N", help="clients per round (default --clients)")
    group.add_argument("--dim", type=int, metavar="D", help="values in a client update")
    group.add_argument("--bits", type=int, metavar="B", help="bits per coordinate (the SecAgg+ modulus 2^B)")
    group.add_argument("--clip", type=float, default=1.0, metavar="C", help="L2 clip norm of an update")
    group.add_argument("--epsilon", type=float, metavar="E", help="target epsilon: plan gamma and the noise")
    group.add_argument("--gamma", type=float, metavar="G", help="granularity (with --local-variance)")
    group.add_argument("--local-variance", type=float, metavar="V", help="each client's noise, integer units")


def run(args: argparse.Namespace) -> int:
    """Report a plan (``--epsilon``) or the epsilon of given parameters."""
    required = {"--sample-rate": args.sample_rate, "--rounds": args.rounds, "--delta": args.delta}
    required |= {"--clients": args.clients, "--dim": args.dim, "--bits": args.bits}
    missing = [flag for flag, value in required.items() if value is None]
    if missing:
        raise ConfigError(f"--mechanism {args.mechanism} needs {', '.join(missing)}")
    if args.accountant not in (None, "rdp") or args.ledger is not None or args.plot is not None:
        raise ConfigError(f"--mechanism {args.mechanism} uses the rdp accountant and takes no --ledger or --plot")
    rounds, delta = integer(args.rounds, "rounds", 1), check_delta(args.delta)
    n = integer(args.clients, "clients", 1)
    expected = n if args.expected_clients is None else args.expected_clients
    out: dict[str, Any]
    if args.epsilon is not None:
        if args.gamma is not None or args.local_variance is not None:
            raise ConfigError("give either --epsilon (plan) or --gamma and --local-variance (report)")
        plan = plan_ddp(
            mechanism=args.mechanism,
            dimension=args.dim,
            clip=args.clip,
            bits=args.bits,
            epsilon=args.epsilon,
            delta=delta,
            rounds=rounds,
            sampling_rate=args.sample_rate,
            expected_clients=expected,
            min_clients=n,
        )
        params, epsilon = plan.params, plan.epsilon
        out = {"aggregate_std": plan.aggregate_std, "wrap_probability": plan.wrap_probability}
    else:
        if args.gamma is None or args.local_variance is None:
            raise ConfigError("give --epsilon to plan, or both --gamma and --local-variance")
        params = DdpParams(
            args.mechanism, args.dim, args.clip, args.gamma, args.local_variance, args.bits, DEFAULT_BETA
        )
        epsilon = epsilon_of(params, num_clients=n, sampling_rate=args.sample_rate, rounds=rounds, delta=delta)
        out = {}
    out |= {
        "epsilon": epsilon,
        "delta": delta,
        "gamma": params.gamma,
        "local_variance": params.local_variance,
        "local_std_model_units": params.local_variance**0.5 * params.gamma,
        "padded_dimension": params.padded,
        "l2_sensitivity": params.l2_bound,
    }
    if args.json:
        print(json.dumps(out))
        return 0
    lines = [
        f"epsilon = {epsilon:.6g} at delta = {delta:g} ({args.mechanism}, RDP)",
        f"  {rounds} rounds, sample rate {args.sample_rate:g}, {n} noise shares per sum, d = {args.dim} "
        f"(padded {params.padded}), {args.bits} bits, clip {args.clip:g}",
        f"  gamma = {params.gamma:.6g}; each client's noise: variance {params.local_variance:.6g} integer units "
        f"(std {out['local_std_model_units']:.4g} model units); sensitivity {params.l2_bound:.6g} integer units",
    ]
    if "wrap_probability" in out:
        lines.append(
            f"  sum's std {out['aggregate_std']:.4g} of the half range {2 ** (args.bits - 1)}; "
            f"P(any coordinate wraps in a round) <~ {out['wrap_probability']:.3g} (Gaussian-tail estimate)"
        )
    print("\n".join(lines))
    return 0
