"""The ``privfl`` command. Each subcommand lives in its own module with a ``register`` function."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from privfl.cli import audit, budget, demo, keys, secagg_params
from privfl.errors import PrivflError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="privfl",
        description="Privacy-enhancing technologies for federated learning: "
        "DP budgets and calibration, SecAgg+/CKKS/DP demos, privacy audits, and SecAgg+ identity keys.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in (demo, budget, audit, keys, secagg_params):
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
