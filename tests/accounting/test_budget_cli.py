"""`privfl budget` and `privfl calibrate`."""

import json
import re

import pytest

from privfl.accounting import GaussianEvent, PoissonSampledEvent, PrivacyBudget, PrivacyLedger, RdpAccountant
from privfl.cli import main

MECHANISM = ["--noise-multiplier", "1.0", "--sample-rate", "0.01", "--rounds", "1000", "--delta", "1e-5"]


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_budget_json_and_text(capsys):
    code, out, _ = _run(capsys, "budget", *MECHANISM, "--json")
    assert code == 0
    result = json.loads(out)
    expected, order = (
        RdpAccountant().compose(PoissonSampledEvent(0.01, GaussianEvent(1.0)), 1000).get_epsilon_and_order(1e-5)
    )
    assert result == {"epsilon": expected, "delta": 1e-5, "order": order}
    code, out, _ = _run(capsys, "budget", *MECHANISM)
    assert code == 0 and f"epsilon = {expected:.6g}" in out and f"best order {order:g}" in out


def test_budget_pld_has_no_order(capsys):
    code, out, _ = _run(capsys, "budget", *MECHANISM, "--accountant", "pld", "--json")
    result = json.loads(out)
    assert code == 0 and result["order"] is None
    assert (
        0
        < result["epsilon"]
        < RdpAccountant().compose(PoissonSampledEvent(0.01, GaussianEvent(1.0)), 1000).get_epsilon(1e-5)
    )


def test_calibrate_then_budget_round_trips(capsys):
    code, out, _ = _run(
        capsys, "calibrate", "--epsilon", "3", "--delta", "1e-5", "--sample-rate", "0.01", "--rounds", "1000", "--json"
    )
    assert code == 0
    z = json.loads(out)["noise_multiplier"]
    _, out, _ = _run(capsys, "budget", "-z", repr(z), "-q", "0.01", "-T", "1000", "--delta", "1e-5", "--json")
    assert json.loads(out)["epsilon"] == pytest.approx(3.0, rel=1e-2)
    _, out, _ = _run(capsys, "calibrate", "--epsilon", "3", "--delta", "1e-5", "-q", "0.01", "-T", "1000")
    assert f"noise multiplier = {z:.6g}" in out


def test_plot_writes_a_png(capsys, tmp_path):
    path = tmp_path / "eps.png"
    code, _, _ = _run(capsys, "budget", *MECHANISM, "--plot", str(path))
    assert code == 0
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_ledger_report(capsys, tmp_path):
    ledger = PrivacyLedger(PrivacyBudget(4.0, 1e-5))
    event = PoissonSampledEvent(0.01, GaussianEvent(1.0))
    for r in range(3, 300):
        ledger.record(event, server_round=r, note="update noise")
    path = tmp_path / "ledger.json"
    ledger.save(path)
    code, out, _ = _run(capsys, "budget", "--ledger", str(path), "--json")
    report = json.loads(out)
    assert code == 0
    assert report["entries"] == 297 and report["rounds"] == [3, 299]
    assert report["events"] == [
        {"event": event.to_dict(), "scope": "client", "locality": "central", "note": "update noise", "count": 297}
    ]
    assert report["epsilon"] == pytest.approx(ledger.epsilon())
    assert report["epsilon_left"] == pytest.approx(4.0 - ledger.epsilon())
    code, out, _ = _run(capsys, "budget", "--ledger", str(path), "--delta", "1e-7")
    assert code == 0 and f"epsilon spent = {ledger.epsilon(1e-7):.6g} at delta = 1e-07" in out and "left" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["budget", "-z", "1", "-q", "1.5", "-T", "10", "--delta", "1e-5"], "got 1.5"),
        (["budget", "-z", "-1", "-q", "0.1", "-T", "10", "--delta", "1e-5"], "got -1.0"),
        (["budget", "-z", "1", "-q", "0.1", "-T", "0", "--delta", "1e-5"], "rounds must be an integer >= 1, got 0"),
        (["budget", "-z", "1", "-q", "0.1", "-T", "10", "--delta", "1"], r"delta must be in \(0, 1\), got 1.0"),
        (["budget", "-z", "1", "-q", "0.1"], "missing --rounds, --delta"),
        (["budget", "--ledger", "missing.json"], "cannot read privacy ledger"),
        (["budget", "--ledger", "x.json", "-z", "1"], "do not combine"),
        (["budget", *MECHANISM, "--plot", "/dev/null/eps.png"], "is not a directory"),
        (["budget", *MECHANISM, "--plot", "eps.xyz"], "must end in"),
        (["calibrate", "--epsilon", "1e-3", "--delta", "1e-5", "-q", "1", "-T", "1000000"], "no noise multiplier"),
        (["calibrate", "--epsilon", "-2", "--delta", "1e-5", "-q", "0.1", "-T", "10"], "got -2.0"),
    ],
)
def test_bad_values_give_one_line_error_and_exit_2(capsys, argv, message):
    code, out, err = _run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith(f"privfl {argv[0]}: error: ")
    assert re.search(message, err)


@pytest.mark.parametrize("command", ["budget", "calibrate"])
def test_help(capsys, command):
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert "Poisson" in out and "--accountant" in out and "--json" in out
