"""CKKS audits pass against the real HE module and fail when what they check is broken."""

from __future__ import annotations

import pytest
import tenseal  # noqa: F401

from privfl.audit import ckks
from privfl.audit.report import Status
from privfl.he import FL_4096, CkksKeys


@pytest.mark.slow
def test_ckks_checks_pass():
    checks = ckks.ckks_checks(None, None)
    assert [c.status for c in checks] == [Status.PASS] * 6, checks


def test_parameter_check_fails_when_a_preset_exceeds_the_table(monkeypatch):
    monkeypatch.setattr(ckks, "HE_STANDARD_128", {**ckks.HE_STANDARD_128, 4096: 90})
    check = ckks.parameter_check()
    assert check.status is Status.FAIL
    assert any("fl-4096" in line and "EXCEEDED" in line for line in check.evidence)


def test_server_key_check_fails_if_the_server_gets_the_secret_context(monkeypatch):
    monkeypatch.setattr(CkksKeys, "public", lambda self: self)  # a key holder that hands out its secret
    check = ckks.server_key_check(FL_4096)
    assert check.status is Status.FAIL
    assert "NO: CkksKeys.has_secret is False" in check.evidence


def test_release_check_passes():
    check = ckks.release_check(FL_4096)
    assert check.status is Status.PASS, check


def test_release_check_fails_when_decryptions_are_released_exactly(monkeypatch):
    from privfl.he import cipher

    monkeypatch.setattr(cipher, "round_release", lambda values, step: values)
    check = ckks.release_check(FL_4096)
    assert check.status is Status.FAIL
    assert ("key recovered from released values", "YES") in check.figures


def test_committee_check_fails_without_smudging(monkeypatch):
    from privfl.he.committee import CommitteeConfig, CommitteeMember

    monkeypatch.setattr(
        CommitteeMember, "partial_decrypt", lambda self, cts, signers: self._partial_decrypt(cts, signers, 0)
    )
    check = ckks.committee_check(CommitteeConfig())
    assert check.status is Status.FAIL
    assert any(line.startswith("NO: with smudging") for line in check.evidence)
