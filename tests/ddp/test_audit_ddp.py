"""The distributed-DP audit family: no violation on the real mechanism, the planted bug caught."""

from __future__ import annotations

import dataclasses

import pytest

from privfl.audit.config import QUICK
from privfl.audit.ddp import ddp_checks
from privfl.audit.report import Status
from privfl.audit.suite import FAMILIES


def test_family_is_registered() -> None:
    family = next(f for f in FAMILIES if f.name == "Distributed DP")
    assert family.why_not_run() == ""


@pytest.mark.slow
def test_audit_passes_the_mechanism_and_catches_the_planted_bug(tmp_path) -> None:
    checks = ddp_checks(dataclasses.replace(QUICK, dp_loop_trials=6000), tmp_path)
    assert [c.status for c in checks] == [Status.PASS] * 3
    assert "planted" in checks[-1].name
