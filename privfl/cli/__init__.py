"""The ``privfl`` command. Each subcommand lives in its own module with a ``register`` function."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from privfl.errors import PrivflError

# Modules under privfl.cli that each define register(subparsers).
_SUBCOMMANDS = ("demo", "budget", "audit")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="privfl",
        description="Privacy-enhancing technologies for federated learning: "
        "DP budgets and calibration, SecAgg+/CKKS/DP demos, and privacy audits.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in _SUBCOMMANDS:
        try:
            module = importlib.import_module(f"privfl.cli.{name}")
        except ModuleNotFoundError as exc:
            if not f"privfl.cli.{name}".startswith(exc.name or "\0"):
                raise
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except PrivflError as exc:
        print(f"privfl {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
