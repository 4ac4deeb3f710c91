"""``privfl budget --mechanism ddg|skellam`` and ``privfl demo ddp``."""

from __future__ import annotations

import json

import pytest

from privfl.cli import main

COMMON = ["--delta", "1e-5", "-q", "0.1", "-T", "20", "--clients", "40", "--dim", "200", "--bits", "16"]


def test_budget_plans_ddg_for_a_target(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["budget", "--mechanism", "ddg", "--epsilon", "3", *COMMON, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert 2.97 < out["epsilon"] <= 3.0
    assert out["padded_dimension"] == 224 and 0 < out["wrap_probability"] < 1


def test_budget_reports_given_skellam_parameters(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["budget", "--mechanism", "skellam", "--gamma", "0.001", "--local-variance", "50000", *COMMON]
    assert main(args) == 0
    assert "epsilon = " in capsys.readouterr().out


@pytest.mark.parametrize(
    "extra",
    [
        ["--mechanism", "ddg", "--epsilon", "3", "--delta", "1e-5"],  # missing -q, -T, --clients ...
        ["--mechanism", "ddg", *COMMON],  # neither --epsilon nor --gamma/--local-variance
        ["--mechanism", "ddg", "--epsilon", "3", *COMMON[:-1], "4"],  # 4 bits cannot hold 40 clients
    ],
)
def test_budget_refuses_incomplete_or_impossible_requests(extra: list[str], capsys) -> None:
    assert main(["budget", *extra]) == 2
    assert "error" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_ddp_runs_one_round(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["demo", "ddp", "--clients", "12", "--min-clients", "8", "--dim", "100", "--rounds", "10", "--dropout", "0"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "12 survivors" in out and "error per coordinate" in out
