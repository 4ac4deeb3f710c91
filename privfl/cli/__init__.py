"""The ``privfl`` command. Each subcommand lives in its own module with a ``register`` function.

A user never sees a traceback: bad arguments and privfl's typed errors end in one line
``privfl COMMAND: error: ...`` and exit status 2, a missing optional dependency names the
extra to install, and warnings print as one line each.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Sequence
from typing import Any, TextIO

from privfl import __version__
from privfl.cli import audit, budget, demo, keys, secagg_params
from privfl.cli.options import HelpFormatter, Parser, all_parsers
from privfl.core.extras import EXTRAS, install_hint
from privfl.errors import PrivflError


def build_parser() -> Parser:
    """The ``privfl`` argument parser with every subcommand registered."""
    parser = Parser(
        prog="privfl",
        description="Privacy-enhancing technologies for federated learning: "
        "DP budgets and calibration, SecAgg+/CKKS/DP demos, privacy audits, SecAgg+ parameters and identity keys.",
        epilog="Run 'privfl COMMAND --help' for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"privfl {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in (demo, budget, audit, keys, secagg_params):
        module.register(sub)
    for _, child in all_parsers(parser):  # one help style for every subcommand
        child.formatter_class = HelpFormatter
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``privfl`` with ``argv`` (default: the process arguments); return the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error already printed in one line
        return exc.code if isinstance(exc.code, int) else 2
    if args.command is None:
        parser.print_help()
        return 0
    name = " ".join(filter(None, (args.command, getattr(args, "demo", None))))

    def one_line(message: Any, category: type[Warning], *_: Any, file: TextIO | None = None, **__: Any) -> None:
        print(f"privfl {name}: warning: {message}", file=sys.stderr if file is None else file)

    try:
        with warnings.catch_warnings():
            warnings.showwarning = one_line
            return int(args.func(args) or 0)
    except (PrivflError, OSError) as exc:
        print(f"privfl {name}: error: {exc}", file=sys.stderr)
        return 2
    except ImportError as exc:  # an optional module that a library privfl uses needs
        hint = f" ({install_hint(exc.name)})" if exc.name and exc.name.split(".")[0] in EXTRAS else ""
        print(f"privfl {name}: error: {exc}{hint}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
