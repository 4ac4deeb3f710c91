"""The audit runner: NOT RUN for missing modules, ERROR for crashes, report and exit code."""

from __future__ import annotations

from pathlib import Path

import pytest

from privfl.audit import suite
from privfl.audit.config import QUICK
from privfl.audit.report import Check, Status
from privfl.cli import main


def passing(settings, out_dir):
    return [Check("Demo", "a claim that holds", Status.PASS, "measured", (("x", "1"),), ("evidence",))]


def failing(settings, out_dir):
    return [Check("Demo", "a claim that breaks", Status.FAIL, "measured")]


def crashing(settings, out_dir):
    raise RuntimeError("boom")


def family(runner: str, audited: tuple[str, ...] = ("privfl.core",)) -> suite.Family:
    return suite.Family("Demo", audited, f"{__name__}:{runner}", ("planned check",), "explained")


def test_a_family_whose_module_is_missing_is_not_run_never_passed(tmp_path):
    checks, report = suite.run_audits(QUICK, tmp_path, families=[family("passing", ("privfl.not_landed",))])
    assert [c.status for c in checks] == [Status.NOT_RUN]
    assert not checks[0].failed
    assert "NOT RUN (module missing: privfl.not_landed)" in report.read_text()


def test_a_crashing_family_is_an_error(tmp_path):
    checks, _ = suite.run_audits(QUICK, tmp_path, families=[family("crashing")])
    assert [c.status for c in checks] == [Status.ERROR] and checks[0].failed
    assert "boom" in checks[0].summary


def test_report_lists_every_check_with_its_figures(tmp_path):
    _, report = suite.run_audits(QUICK, tmp_path, families=[family("passing"), family("failing")], mode="test")
    text = report.read_text()
    assert "| 1 | Demo | a claim that holds | **PASS** |" in text
    assert "| 2 | Demo | a claim that breaks | **FAIL** |" in text
    assert "| x | 1 |" in text and "- evidence" in text and "Mode: test" in text


@pytest.mark.parametrize(("runners", "code"), [(["passing"], 0), (["passing", "failing"], 1), (["crashing"], 1)])
def test_cli_exit_code_follows_the_verdicts(monkeypatch, tmp_path: Path, runners, code):
    monkeypatch.setattr(suite, "FAMILIES", tuple(family(r) for r in runners))
    assert main(["audit", "--quick", "--out", str(tmp_path)]) == code
    assert (tmp_path / "README.md").exists()


@pytest.mark.slow
def test_quick_audit_of_the_real_modules_passes(tmp_path):
    checks, _ = suite.run_audits(QUICK, tmp_path)
    assert not [c for c in checks if c.failed]
