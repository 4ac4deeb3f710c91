"""``privfl secagg-params``: the SecAgg+ neighbour count k and threshold t for n clients,
what they guarantee under dropout and corruption, and what they cost each client."""

from __future__ import annotations

import argparse
import json
import math
import sys
import textwrap
from typing import Any, NoReturn

from privfl.errors import ConfigError
from privfl.secagg.params import SecAggParameters, choose_parameters


def register(subparsers: Any) -> None:
    """Add the ``secagg-params`` subcommand to the ``privfl`` parser."""
    parser = subparsers.add_parser(
        "secagg-params",
        help="SecAgg+ neighbours k and threshold t for a dropout rate and a corrupted fraction",
        description=textwrap.fill(
            "Choose the smallest SecAgg+ neighbour count k and Shamir threshold t for N clients such that "
            "a server colluding with a fraction G of them learns an individual input with probability "
            "below 2^-BITS, and an honest round with independent dropouts at rate P aborts with "
            "probability below the target (Bell et al. CCS'20; exact binomial and hypergeometric tails, "
            "union bounds over clients). Small N uses the complete graph."
        ),
        epilog="examples:\n  privfl secagg-params --clients 1000 --dropout 0.2 --corrupt 0.05\n"
        "  privfl secagg-params --clients 100 --dropout 0.3 --corrupt 0 --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--clients", required=True, metavar="N", help="clients selected per round (>= 3)")
    parser.add_argument("--dropout", required=True, metavar="P", help="expected dropout fraction in [0, 1)")
    parser.add_argument(
        "--corrupt", required=True, metavar="G", help="fraction of clients colluding with the server, in [0, 1)"
    )
    parser.add_argument("--abort-target", default="1e-6", metavar="A", help="honest-abort probability target")
    parser.add_argument("--security-bits", default="40", metavar="BITS", help="security failure below 2^-BITS")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=_run)

    def one_line_error(message: str) -> NoReturn:
        print(f"privfl secagg-params: error: {message}", file=sys.stderr)
        raise SystemExit(2)

    parser.error = one_line_error  # bad input is one line and exit code 2, like a ConfigError


def _number(name: str, text: str, kind: type[int] | type[float]) -> Any:
    try:
        return kind(text)
    except ValueError:
        raise ConfigError(f"{name} must be {'an integer' if kind is int else 'a number'}, got {text!r}") from None


def _report(params: SecAggParameters, dropout: float, corruption: float, abort_target: float) -> dict[str, Any]:
    return {
        "clients": params.num_clients,
        "dropout": dropout,
        "corruption": corruption,
        "num_neighbours": params.num_neighbours,
        "threshold": params.threshold,
        "complete_graph": params.complete_graph,
        "log2_security_failure": None if math.isinf(params.log2_security_failure) else params.log2_security_failure,
        "abort_probability": params.abort_probability,
        "abort_target": abort_target,
        "meets_abort_target": params.meets_abort_target,
        "key_agreements": params.key_agreements,
        "mask_expansions": params.mask_expansions,
        "share_bytes_sent": params.share_bytes_sent,
        "share_bytes_revealed": params.share_bytes_revealed,
    }


def _run(args: argparse.Namespace) -> int:
    n = _number("--clients", args.clients, int)
    dropout = _number("--dropout", args.dropout, float)
    corruption = _number("--corrupt", args.corrupt, float)
    abort_target = _number("--abort-target", args.abort_target, float)
    bits = _number("--security-bits", args.security_bits, float)
    params = choose_parameters(n, dropout=dropout, corruption=corruption, abort_target=abort_target, security_bits=bits)
    report = _report(params, dropout, corruption, abort_target)
    if args.json:
        print(json.dumps(report))
        return 0
    graph = "complete graph" if params.complete_graph else "sparse graph (Harary analysis)"
    failure = (
        "0 (neither bad event can happen)"
        if math.isinf(params.log2_security_failure)
        else f"2^{params.log2_security_failure:.1f}"
    )
    verdict = "met" if params.meets_abort_target else "missed: the complete graph is the most dropout-tolerant choice"
    print(f"SecAgg+ for n = {n}, dropout {dropout:g}, corrupted fraction {corruption:g}")
    print(f"  k = {params.num_neighbours} neighbours, threshold t = {params.threshold}, {graph}")
    print(f"  security failure probability  <= {failure} (target 2^-{bits:g})")
    print(f"  honest-abort probability      <= {params.abort_probability:.3g} (target {abort_target:g} {verdict})")
    print(
        f"  per client and round: {params.key_agreements} key agreements, {params.mask_expansions} mask "
        f"expansions, {params.share_bytes_sent} share bytes sent, <= {params.share_bytes_revealed} revealed"
    )
    return 0
