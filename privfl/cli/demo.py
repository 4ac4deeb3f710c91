"""``privfl demo``: federated training on digits, and the SecAgg+/CKKS/DP demos."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from privfl.cli import demo_ddp, demo_dp, demo_he, demo_secagg
from privfl.cli.options import PLOT_SUFFIXES, int_at_least, output_file, positive_float, state_file
from privfl.core.extras import require_all
from privfl.errors import CheckpointError
from privfl.server.history import History, RoundRecord

DEMO_EXTRAS = ("sklearn", "matplotlib")
"""What the digits demos need beyond core privfl (the ``demo`` extra)."""
RESUME_FLAGS = ("clients", "alpha", "local_epochs", "seed")
"""The plain demo's flags a checkpoint was made with; resuming with others is refused."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run a federated-learning demo (plain FedAvg on digits by default)",
        description="Federated training of a softmax-regression model on scikit-learn's digits data "
        "(1,797 8x8 images, no download), split non-IID over clients with a Dirichlet partition. "
        "Prints test accuracy per round and saves a plot. Subcommands run the privacy demos.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_federation_arguments(parser)
    parser.add_argument(
        "--plot", type=output_file(*PLOT_SUFFIXES), default=Path("runs/demo_accuracy.png"), help="accuracy plot"
    )
    parser.add_argument(
        "--checkpoint",
        type=state_file,
        default=None,
        help="checkpoint file, written after every round; if it exists the run resumes from it "
        "(with the same --clients, --alpha, --local-epochs and --seed)",
    )
    parser.add_argument("--workers", type=int_at_least(0), default=0, help="client worker processes (0: in-process)")
    parser.set_defaults(func=run_plain_demo)
    demos = parser.add_subparsers(dest="demo", metavar="DEMO")
    for module in (demo_dp, demo_secagg, demo_ddp, demo_he):
        module.add_demo_parser(demos)


def add_federation_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by the digits demos."""
    parser.add_argument("--clients", type=int_at_least(1), default=20, help="number of clients")
    parser.add_argument("--rounds", type=int_at_least(1), default=30, help="training rounds")
    parser.add_argument(
        "--alpha", type=positive_float, default=0.5, help="Dirichlet concentration (smaller: more non-IID)"
    )
    parser.add_argument("--local-epochs", type=int_at_least(1), default=1, help="local epochs per round")
    parser.add_argument("--seed", type=int, default=0, help="seed of data split, training and sampling")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or per-round lines")


def print_round(record: RoundRecord) -> None:
    """One line per round: accuracy, loss, clients and traffic."""
    acc = record.centralized.get("accuracy", float("nan"))
    loss = record.centralized.get("loss", float("nan"))
    extra = f"  [{record.status}: {record.note}]" if record.status != "ok" else ""
    print(
        f"round {record.server_round:3d}  accuracy {acc:.4f}  loss {loss:.4f}  clients {record.num_clients:3d}"
        f"  up {record.bytes_up / 1024:.1f} KiB  down {record.bytes_down / 1024:.1f} KiB{extra}",
        flush=True,
    )


def save_accuracy_plot(histories: dict[str, History], path: Path, title: str) -> Path:
    """Plot test accuracy against rounds for one or more runs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, history in histories.items():
        points = history.series("centralized", "accuracy")
        ax.plot([r for r, _ in points], [a for _, a in points], marker=".", label=label)
    ax.set_xlabel("round")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.set_title(title)
    if len(histories) > 1:
        ax.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _settings_path(checkpoint: Path) -> Path:
    return checkpoint.with_name(checkpoint.name + ".demo.json")


def _resume_point(args: argparse.Namespace) -> int:
    """The round ``args.checkpoint`` holds (0 without one); refuses a checkpoint made with other flags.

    Raises:
        CheckpointError: the checkpoint is unreadable, was made with other settings, or is
            already at ``--rounds``.
    """
    from privfl.server.checkpoint import load_checkpoint

    if args.checkpoint is None or not args.checkpoint.exists():
        return 0
    done = load_checkpoint(args.checkpoint).get("round")
    try:
        made_with = json.loads(_settings_path(args.checkpoint).read_text())
    except (OSError, ValueError):
        raise CheckpointError(
            f"cannot tell which demo settings checkpoint {args.checkpoint} was made with "
            f"({_settings_path(args.checkpoint)} is missing or unreadable); give a new --checkpoint"
        ) from None
    changed = [
        f"--{flag.replace('_', '-')} {made_with.get(flag)} (now {getattr(args, flag)})"
        for flag in RESUME_FLAGS
        if made_with.get(flag) != getattr(args, flag)
    ]
    if changed:
        raise CheckpointError(
            f"checkpoint {args.checkpoint} was made with {', '.join(changed)}; rerun with its settings "
            "or give a new --checkpoint"
        )
    if not isinstance(done, int) or done >= args.rounds:
        raise CheckpointError(
            f"checkpoint {args.checkpoint} already holds {done} rounds; give --rounds above {done} to continue"
        )
    return done


def run_plain_demo(args: argparse.Namespace) -> int:
    require_all(DEMO_EXTRAS, "privfl demo")
    from privfl.client.app import ClientApp
    from privfl.server.simulation import run_simulation
    from privfl.tasks.digits import DigitsFederation, initial_parameters

    done = _resume_point(args)
    fed = DigitsFederation(num_clients=args.clients, alpha=args.alpha, seed=args.seed, epochs=args.local_epochs)
    print(f"FedAvg on digits: {args.clients} clients, Dirichlet alpha {args.alpha:g}, {args.rounds} rounds")
    if done:
        print(f"resuming from round {done} of checkpoint {args.checkpoint}")
    elif args.checkpoint is not None:
        args.checkpoint.parent.mkdir(parents=True, exist_ok=True)
        _settings_path(args.checkpoint).write_text(json.dumps({f: getattr(args, f) for f in RESUME_FLAGS}))
    start = time.perf_counter()
    result = run_simulation(
        ClientApp(fed),
        num_clients=args.clients,
        num_rounds=args.rounds,
        initial_parameters=initial_parameters(),
        centralized_evaluate=fed.evaluate,
        seed=args.seed,
        workers=args.workers,
        checkpoint=args.checkpoint,
        progress=not args.quiet,
        callbacks=() if args.quiet else (print_round,),
    )
    elapsed = time.perf_counter() - start
    rounds = result.history.rounds
    if result.stopped:
        print(f"stopped early: {result.stopped}")
    if not rounds:
        return 1
    final = result.history.last("centralized", "accuracy")
    best = max((a for _, a in result.history.series("centralized", "accuracy")), default=float("nan"))
    up = sum(r.bytes_up for r in rounds) / max(len(rounds), 1)
    down = sum(r.bytes_down for r in rounds) / max(len(rounds), 1)
    plot = save_accuracy_plot({"FedAvg": result.history}, args.plot, "FedAvg on digits (non-IID)")
    print(f"final test accuracy {final:.4f} (best {best:.4f}) after {len(rounds)} rounds in {elapsed:.1f} s")
    print(f"traffic per round: {up / 1024:.1f} KiB up, {down / 1024:.1f} KiB down (encoded messages)")
    print(f"plot written to {plot}")
    return 0
