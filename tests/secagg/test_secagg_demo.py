"""``privfl demo secagg`` (registered through add_demo_parser)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from privfl.cli.demo_secagg import add_demo_parser
from privfl.errors import ConfigError


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_demo_parser(parser.add_subparsers())
    return parser.parse_args(argv)


def test_demo_recovers_the_exact_sum_and_shows_a_uniform_masked_vector(capsys, tmp_path: Path) -> None:
    import matplotlib  # noqa: F401

    png = tmp_path / "hist.png"
    args = parse(["secagg", "--clients", "12", "--dim", "3000", "--dropout", "0.2", "--histogram", str(png)])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "integer sum equals the true sum exactly: True" in out
    assert "max |recovered - true| over 3,000 values: 0" in out
    assert all(stage in out for stage in ("secagg.setup", "secagg.share_keys", "secagg.masked_input", "secagg.unmask"))
    assert "Roster of 12 Ed25519 identities signed by operator key" in out
    assert "consistency round: the server sent the survivor set" in out
    p_masked = float(out.split("masked ")[2].split(",")[0])
    assert p_masked > 1e-6  # a correct implementation fails this less than once in a million runs
    assert png.stat().st_size > 0


def test_demo_reports_an_aborted_round(capsys) -> None:
    args = parse(
        ["secagg", "--clients", "6", "--dim", "10", "--dropout", "1.0", "--neighbours", "5", "--threshold", "4"]
    )
    assert args.func(args) == 1
    assert "round aborted" in capsys.readouterr().out


def test_demo_rejects_bad_arguments() -> None:
    with pytest.raises(SystemExit):  # a usage error, reported by the parser before any work
        parse(["secagg", "--clients", "1"])
    args = parse(["secagg", "--threshold", "2"])
    with pytest.raises(ConfigError, match="--threshold needs --neighbours"):
        args.func(args)


def test_semi_honest_demo_says_so(capsys) -> None:
    args = parse(["secagg", "--clients", "8", "--dim", "100", "--dropout", "0", "--semi-honest"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "trust: semi-honest" in out and "consistency round" not in out
