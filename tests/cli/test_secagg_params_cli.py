"""``privfl secagg-params``: the printed choice is choose_parameters', bad input is one line and exit 2."""

from __future__ import annotations

import json

import pytest

from privfl.cli import main
from privfl.secagg.params import choose_parameters


def test_json_matches_the_library(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["secagg-params", "--clients", "1000", "--dropout", "0.2", "--corrupt", "0.05", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    chosen = choose_parameters(1000, dropout=0.2, corruption=0.05)
    assert (report["num_neighbours"], report["threshold"]) == (chosen.num_neighbours, chosen.threshold)
    assert report["abort_probability"] == chosen.abort_probability <= 1e-6
    assert report["log2_security_failure"] == chosen.log2_security_failure <= -40
    assert report["key_agreements"] == 2 * chosen.num_neighbours
    assert report["share_bytes_sent"] == chosen.share_bytes_sent


def test_text_reports_k_t_probabilities_and_cost(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["secagg-params", "--clients", "30", "--dropout", "0.3", "--corrupt", "0"]) == 0
    out = capsys.readouterr().out
    assert "k = 29 neighbours, threshold t = 15, complete graph" in out
    assert "missed" in out and "key agreements" in out and "share bytes" in out


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--clients", "abc", "--dropout", "0.1", "--corrupt", "0"], "--clients must be an integer"),
        (["--clients", "100", "--dropout", "1.2", "--corrupt", "0"], "dropout must be a number in [0, 1.0)"),
        (["--clients", "100", "--dropout", "0.1", "--corrupt", "nan"], "corruption must be"),
        (["--clients", "2", "--dropout", "0.1", "--corrupt", "0"], "num_clients must be an int >= 3"),
        (["--clients", "100"], "required"),
        (["--clients", "10", "--dropout", "0", "--corrupt", "0.9"], "even the complete graph fails"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    try:
        code = main(["secagg-params", *argv])
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and lines[0].startswith("privfl secagg-params: error:")
