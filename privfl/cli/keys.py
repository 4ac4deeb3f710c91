"""``privfl keys``: identity keys and the signed roster of SecAgg+ against an active server.

Three steps, each on the machine that should hold the secret:

1. every client: ``privfl keys new node-7.pem`` (an Ed25519 identity; the public key
   goes to ``node-7.pub`` and to the operator);
2. the operator, once: ``privfl keys new operator.pem`` (``operator.pub`` is what every
   client pins);
3. the operator: ``privfl keys roster --operator operator.pem --corruption 0.05
   --node 7=node-7.pub ... --out roster.json`` signs the roster the server relays.

``privfl keys verify roster.json --operator-key operator.pub`` checks a roster as a
client would. Formats: private keys are unencrypted PKCS#8 PEM (written with mode
0600), public keys one line of hex, rosters JSON (``privfl-roster/v1``); no pickle.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from privfl.cli.options import int_at_least, output_file, probability
from privfl.errors import ConfigError
from privfl.secagg.identity import IdentityKey, Roster, SignedRoster, read_public_key


def register(subparsers: Any) -> None:
    """Add ``privfl keys`` and its subcommands."""
    parser = subparsers.add_parser(
        "keys",
        help="SecAgg+ identities: node and operator keys, the signed roster",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="keys_command", metavar="ACTION")
    sub.required = True

    new = sub.add_parser("new", help="create an Ed25519 identity key (a node's or the operator's)")
    new.add_argument("path", type=Path, help="private key file to create (PEM); the public key goes to PATH.pub")
    new.add_argument("--force", action="store_true", help="overwrite an existing key file")
    new.set_defaults(func=_new)

    roster = sub.add_parser("roster", help="sign a roster of node identities with the operator key")
    roster.add_argument("--operator", type=Path, required=True, help="the operator's private key (PEM)")
    roster.add_argument(
        "--node", action="append", default=[], metavar="ID=PUBFILE", help="a node id and its public key file"
    )
    roster.add_argument(
        "--corruption",
        type=probability,
        required=True,
        help="largest fraction of a round's clients that may collude with the server; clients derive their "
        "floor on k and t from it",
    )
    roster.add_argument(
        "--security-bits", type=int_at_least(1), default=40, help="security failure target 2^-bits per round"
    )
    roster.add_argument("--out", type=output_file(".json"), required=True, help="roster file to write (JSON)")
    roster.set_defaults(func=_roster)

    check = sub.add_parser("verify", help="check a roster's signature against the pinned operator key")
    check.add_argument("roster", type=Path, help="roster file (JSON)")
    check.add_argument("--operator-key", required=True, help="the operator's public key: hex, or a .pub file")
    check.set_defaults(func=_verify)


def _write_private(path: Path, data: bytes, force: bool) -> None:
    if path.exists() and not force:
        raise ConfigError(f"{path} exists; pass --force to overwrite it")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def _new(args: argparse.Namespace) -> int:
    key = IdentityKey.generate()
    _write_private(args.path, key.to_pem(), args.force)
    public = args.path.with_name(args.path.name + ".pub")
    public.write_text(key.public.hex() + "\n")
    print(f"identity key written to {args.path} (keep it private); public key {key.public.hex()} in {public}")
    return 0


def _public_key(text: str) -> bytes:
    path = Path(text)
    return read_public_key(path.read_text() if path.is_file() else text, f"public key {text!r}")


def _roster(args: argparse.Namespace) -> int:
    operator = IdentityKey.load(args.operator)
    keys = {}
    for entry in args.node:
        node, sep, file = entry.partition("=")
        if not sep or not node.isdigit():
            raise ConfigError(f"--node takes ID=PUBFILE, got {entry!r}")
        keys[int(node)] = _public_key(file)
    signed = Roster(keys, args.corruption, args.security_bits).sign(operator)
    signed.save(args.out)
    print(
        f"roster of {len(keys)} nodes (corruption {args.corruption:g}, 2^-{args.security_bits}) signed by "
        f"operator {operator.public.hex()} -> {args.out}"
    )
    return 0


def _verify(args: argparse.Namespace) -> int:
    roster = SignedRoster.load(args.roster).verify(_public_key(args.operator_key))
    print(
        f"{args.roster}: valid signature; {len(roster.keys)} nodes, corruption {roster.corruption:g}, "
        f"security 2^-{roster.security_bits}"
    )
    return 0
