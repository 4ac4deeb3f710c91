"""``privfl budget`` and ``privfl calibrate``: epsilon of a DP-FedAvg run, a saved ledger's
spend, and the noise multiplier for a target (epsilon, delta)."""

from __future__ import annotations

import argparse
import json
import math
import textwrap
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from privfl.accounting.accountant import ACCOUNTANTS, RdpAccountant, make_accountant
from privfl.accounting.calibration import calibrate_noise_multiplier, epsilon_for
from privfl.accounting.checks import check_count, check_delta
from privfl.accounting.events import GaussianEvent, PoissonSampledEvent
from privfl.accounting.ledger import PrivacyLedger, read_key_file
from privfl.cli import budget_ddp
from privfl.cli.options import PLOT_SUFFIXES, output_file
from privfl.core.extras import require_all
from privfl.errors import ConfigError

_SETTING = (
    "The mechanism is DP-FedAvg's: each round every client (or record) is included independently "
    "with probability Q (Poisson sampling), updates are clipped to L2 norm C, and Gaussian noise "
    "of std Z*C is added to their sum. Epsilon is in nats."
)


def _count(text: str) -> int:
    """A round count as typed: an integer, or an integral float such as ``1e4``."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (math.isfinite(value) and value.is_integer()):
        raise argparse.ArgumentTypeError(f"not a whole number of rounds: {text!r}")
    return int(value)


def register(subparsers: Any) -> None:
    """Add the ``budget`` and ``calibrate`` subcommands to the ``privfl`` parser."""
    budget = subparsers.add_parser(
        "budget",
        help="epsilon spent by a DP run, or by a saved privacy ledger",
        description=textwrap.fill(
            "Report the (epsilon, delta) privacy spent by T rounds of the Poisson-subsampled "
            "Gaussian mechanism, or by the releases recorded in a saved ledger. " + _SETTING
        ),
        epilog="examples:\n"
        "  privfl budget --noise-multiplier 1.0 --sample-rate 0.01 --rounds 10000 --delta 1e-5\n"
        "  privfl budget -z 1.1 -q 0.001 -T 5000 --delta 1e-6 --plot eps.png\n"
        "  privfl budget --ledger run/ledger.json --json\n"
        "  privfl budget --mechanism ddg --epsilon 3 --delta 1e-5 -q 0.1 -T 60 --clients 80 --dim 650 --bits 16",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    budget.add_argument("-z", "--noise-multiplier", type=float, metavar="Z", help="noise std / clip norm (> 0)")
    budget.add_argument("-q", "--sample-rate", type=float, metavar="Q", help="per-round sampling rate in (0, 1]")
    budget.add_argument("-T", "--rounds", type=_count, metavar="T", help="number of rounds (>= 1)")
    budget.add_argument(
        "--delta", type=float, metavar="D", help="target delta in (0, 1) (with --ledger: default is the budget's)"
    )
    budget.add_argument(
        "--ledger", type=Path, metavar="FILE", help="report a ledger saved by a run instead of -z/-q/-T"
    )
    budget.add_argument(
        "--ledger-key-file",
        type=Path,
        metavar="FILE",
        help="operator key (hex) the ledger was saved under: verify its HMAC; without it the ledger is "
        "checked for corruption only",
    )
    budget.add_argument(
        "--plot",
        type=output_file(*PLOT_SUFFIXES),
        metavar="FILE.png",
        help="also draw epsilon against rounds (.png, .svg or .pdf)",
    )
    _common(budget)
    budget_ddp.add_arguments(budget)
    budget.set_defaults(func=_run_budget, accountant=None)  # None: not given (a ledger keeps its own)

    calibrate = subparsers.add_parser(
        "calibrate",
        help="noise multiplier that meets a target (epsilon, delta)",
        description=textwrap.fill(
            "Find the smallest noise multiplier Z for which T rounds at sampling rate Q are "
            "(epsilon, delta)-DP (Brent's method, then a check that Z meets the target). " + _SETTING
        ),
        epilog="example:\n  privfl calibrate --epsilon 3 --delta 1e-5 --sample-rate 0.01 --rounds 1000",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    calibrate.add_argument("--epsilon", type=float, required=True, metavar="E", help="target epsilon (> 0)")
    calibrate.add_argument("--delta", type=float, required=True, metavar="D", help="target delta in (0, 1)")
    calibrate.add_argument(
        "-q", "--sample-rate", type=float, required=True, metavar="Q", help="per-round sampling rate in (0, 1]"
    )
    calibrate.add_argument("-T", "--rounds", type=_count, required=True, metavar="T", help="number of rounds (>= 1)")
    _common(calibrate)
    calibrate.set_defaults(func=_run_calibrate)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--accountant",
        choices=ACCOUNTANTS,
        default="rdp",
        help="rdp: built-in Rényi-DP accountant (default); pld: dp_accounting's privacy-loss "
        "distribution accountant, tighter but slower",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def _emit(args: argparse.Namespace, obj: dict[str, Any], text: str) -> int:
    print(json.dumps(obj) if args.json else text)
    return 0


def _run_budget(args: argparse.Namespace) -> int:
    if args.mechanism != "gaussian":
        return budget_ddp.run(args)
    mechanism = {
        "--noise-multiplier": args.noise_multiplier,
        "--sample-rate": args.sample_rate,
        "--rounds": args.rounds,
    }
    if args.ledger is not None:
        given = [flag for flag, value in mechanism.items() if value is not None]
        if args.plot is not None:
            given.append("--plot")
        if given:
            raise ConfigError(f"--ledger reports a saved run; do not combine it with {', '.join(given)}")
        return _report_ledger(args)
    if args.ledger_key_file is not None:
        raise ConfigError("--ledger-key-file verifies a saved ledger; give it with --ledger FILE")
    args.accountant = args.accountant or "rdp"
    if args.plot is not None:
        require_all(("matplotlib",), "--plot")  # before any work
    missing = [flag for flag, value in mechanism.items() if value is None] + (["--delta"] if args.delta is None else [])
    if missing:
        raise ConfigError(f"missing {', '.join(missing)} (or give --ledger FILE)")
    event = PoissonSampledEvent(args.sample_rate, GaussianEvent(args.noise_multiplier))
    rounds = check_count(args.rounds, "rounds")
    delta = check_delta(args.delta)
    accountant = make_accountant(args.accountant).compose(event, rounds)
    if isinstance(accountant, RdpAccountant):
        epsilon, order = accountant.get_epsilon_and_order(delta)
        if math.isnan(order):  # un-subsampled Gaussians: exact, not an RDP bound
            order, best = None, ", exact Gaussian"
        else:
            best = f", best order {order:g}"
    else:
        epsilon, order, best = accountant.get_epsilon(delta), None, ""
    if args.plot is not None:
        _plot(args, event.sampling_rate, args.noise_multiplier, rounds, delta)
    return _emit(
        args,
        {"epsilon": epsilon, "delta": delta, "order": order},
        f"epsilon = {epsilon:.6g} at delta = {delta:g} ({args.accountant.upper()}{best})\n"
        f"  {rounds} rounds, sample rate {event.sampling_rate:g}, noise multiplier {args.noise_multiplier:g}",
    )


def _plot(args: argparse.Namespace, q: float, z: float, rounds: int, delta: float) -> None:
    """Draw epsilon against rounds (log-spaced round counts) into ``args.plot``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = 100 if args.accountant == "rdp" else 12  # each PLD point is a fresh composition
    ts = np.unique(np.geomspace(1, rounds, points).round().astype(int))
    with warnings.catch_warnings():  # grid-edge warnings at few rounds would drown the output
        warnings.simplefilter("ignore")
        eps = [
            epsilon_for(noise_multiplier=z, sampling_rate=q, rounds=int(t), delta=delta, accountant=args.accountant)
            for t in ts
        ]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(ts, eps, marker="." if len(ts) < 30 else None)
    ax.set_xlabel("rounds")
    ax.set_ylabel(f"epsilon at delta = {delta:g}")
    ax.set_title(f"{args.accountant.upper()}: q = {q:g}, z = {z:g}")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    args.plot.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.plot, dpi=120)
    plt.close(fig)


def _report_ledger(args: argparse.Namespace) -> int:
    key = None if args.ledger_key_file is None else read_key_file(args.ledger_key_file)
    ledger = PrivacyLedger.load(args.ledger, key=key)
    integrity = "authenticated (HMAC-SHA256 under the operator key)" if key else "NOT authenticated (no key given)"
    if args.accountant not in (None, ledger.accountant):
        raise ConfigError(
            f"ledger {str(args.ledger)!r} is accounted with {ledger.accountant!r}, its own setting; "
            f"drop --accountant {args.accountant}"
        )
    if args.delta is None and ledger.budget is None:
        raise ConfigError(f"ledger {str(args.ledger)!r} has no budget; give --delta")
    delta = ledger.budget.delta if args.delta is None else check_delta(args.delta)
    epsilon = ledger.epsilon(delta)
    left = None if ledger.budget is None else ledger.budget.epsilon - ledger.epsilon(ledger.budget.delta)
    groups = Counter((e.event, e.scope, e.locality, e.note) for e in ledger.entries)
    rounds = [e.server_round for e in ledger.entries]
    span = [min(rounds), max(rounds)] if rounds else None
    lines = [
        f"ledger {args.ledger}: {len(rounds)} entries"
        + (f", rounds {span[0]}-{span[1]}" if span else "")
        + f", accountant {ledger.accountant}",
        f"integrity: {integrity}",
    ]
    lines += [
        f"  {n:>6} x {event!r}  [{scope}, {locality}]" + (f" {note}" if note else "")
        for (event, scope, locality, note), n in groups.items()
    ]
    lines.append(f"epsilon spent = {epsilon:.6g} at delta = {delta:g}")
    if ledger.budget is not None:
        lines.append(f"budget: epsilon {ledger.budget.epsilon:g} at delta {ledger.budget.delta:g}; left {left:.6g}")
    budget = None if ledger.budget is None else {"epsilon": ledger.budget.epsilon, "delta": ledger.budget.delta}
    return _emit(
        args,
        {
            "entries": len(rounds),
            "authenticated": key is not None,
            "rounds": span,
            "accountant": ledger.accountant,
            "events": [
                {"event": event.to_dict(), "scope": scope, "locality": locality, "note": note, "count": n}
                for (event, scope, locality, note), n in groups.items()
            ],
            "epsilon": epsilon,
            "delta": delta,
            "budget": budget,
            "epsilon_left": left,
        },
        "\n".join(lines),
    )


def _run_calibrate(args: argparse.Namespace) -> int:
    z = calibrate_noise_multiplier(
        epsilon=args.epsilon,
        delta=args.delta,
        sampling_rate=args.sample_rate,
        rounds=args.rounds,
        accountant=args.accountant,
    )
    return _emit(
        args,
        {"noise_multiplier": z},
        f"noise multiplier = {z:.6g} for epsilon = {args.epsilon:g} at delta = {args.delta:g} "
        f"({args.accountant.upper()})\n  {args.rounds} rounds, sample rate {args.sample_rate:g}",
    )
