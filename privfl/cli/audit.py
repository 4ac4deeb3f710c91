"""``privfl audit``: try to break privfl's DP, SecAgg+ and CKKS claims and write a report."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from privfl.cli.options import output_dir


def register(subparsers: Any) -> None:
    """Add the ``audit`` subcommand to the ``privfl`` parser."""
    parser = subparsers.add_parser(
        "audit",
        help="run the privacy and security audits and write a Markdown report",
        description="Run every audit (DP epsilon lower bounds with planted-bug self-tests, SecAgg+ transcript "
        "statistics and malicious-server attacks, CKKS parameter and key checks) and write a Markdown report "
        "with plots. Exits 1 if a check FAILs or errors. Audits that need an extra that is not installed are "
        "NOT RUN, and the report names the pip install that would run them.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="fewer trials: about 140 s of CPU time (2.5 minutes on a quiet 2-core machine)",
    )
    parser.add_argument("--out", type=output_dir, default=Path("runs/audit"), help="report directory")
    parser.add_argument("--seed", type=int, default=0, help="seed of the experiments' own randomness")
    parser.set_defaults(func=run_audit)


def run_audit(args: argparse.Namespace) -> int:
    from privfl.audit.suite import run_and_summarise

    return run_and_summarise(args.out, quick=args.quick, seed=args.seed)
