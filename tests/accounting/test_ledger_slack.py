"""Delta slack in the ledger: epsilon at delta - slack, budget checks, and its JSON state."""

import json
import math

import pytest

from privfl.accounting import GaussianEvent, PoissonSampledEvent, PrivacyBudget, PrivacyLedger, RdpAccountant
from privfl.errors import BudgetExceededError, CheckpointError, ConfigError

SGM = PoissonSampledEvent(0.1, GaussianEvent(1.0))
DELTA = 1e-5
KEY = bytes(range(32))


def _rdp(rounds: int) -> RdpAccountant:
    accountant = RdpAccountant()
    accountant.compose(SGM, rounds)
    return accountant


def _slack_ledger(slacks, *, budget=None, key=None) -> PrivacyLedger:
    ledger = PrivacyLedger(budget, key=key)
    for r, slack in enumerate(slacks):
        ledger.record(SGM, server_round=r, delta_slack=slack)
    return ledger


@pytest.mark.parametrize("slacks", [[0.0] * 3, [1e-40] * 3, [1e-6, 2e-6, 0.0], [4e-6, 0.0, 5e-6]])
def test_epsilon_is_the_accountants_at_delta_minus_the_total_slack(slacks) -> None:
    ledger = _slack_ledger(slacks)
    total = sum(slacks)
    assert ledger.delta_slack == pytest.approx(total, rel=1e-15)
    assert ledger.epsilon(DELTA) == _rdp(3).get_epsilon(DELTA - total)
    if total > 1e-7:
        assert ledger.epsilon(DELTA) > _rdp(3).get_epsilon(DELTA)
    eps = ledger.epsilon(DELTA)
    assert ledger.delta(eps) == pytest.approx(_rdp(3).get_delta(eps) + total, rel=1e-12)


def test_slack_at_or_above_delta_claims_no_finite_epsilon() -> None:
    ledger = _slack_ledger([5e-6, 5e-6])
    assert ledger.epsilon(DELTA) == math.inf
    assert ledger.epsilon(2e-5) == _rdp(2).get_epsilon(1e-5)
    assert ledger.delta(1.0) == pytest.approx(_rdp(2).get_delta(1.0) + 1e-5)


def test_budget_check_counts_the_slack_of_the_next_release() -> None:
    ledger = _slack_ledger([4e-6], budget=PrivacyBudget(10.0, DELTA))
    ledger.check(SGM, delta_slack=5e-6)
    with pytest.raises(BudgetExceededError, match="delta slack"):
        ledger.check(SGM, delta_slack=6e-6)
    # The epsilon side sees the slack too: a budget just above eps(delta) fails at delta - slack.
    tight = _rdp(2).get_epsilon(DELTA) * 1.0001
    ledger = _slack_ledger([0.0], budget=PrivacyBudget(tight, DELTA))
    ledger.check(SGM)
    with pytest.raises(BudgetExceededError):
        ledger.check(SGM, delta_slack=9e-6)
    with pytest.raises(ConfigError, match="delta_slack"):
        ledger.check(SGM, delta_slack=-1e-9)


@pytest.mark.parametrize("bad", [-1e-9, 1.0, math.nan, math.inf, "1e-9", True])
def test_record_refuses_a_bad_slack_and_changes_nothing(bad) -> None:
    ledger = _slack_ledger([1e-9])
    before = ledger.state_dict()
    with pytest.raises(ConfigError, match="delta_slack"):
        ledger.record(SGM, server_round=9, delta_slack=bad)
    assert ledger.state_dict() == before


def test_state_round_trips_the_slack_under_the_mac(tmp_path) -> None:
    ledger = _slack_ledger([1e-40, 0.0, 2e-6], budget=PrivacyBudget(5.0, DELTA), key=KEY)
    state = ledger.state_dict()
    assert state["version"] == 3
    assert [set(e) >= {"delta_slack"} for e in state["entries"]] == [True, False, True]
    path = tmp_path / "ledger.json"
    ledger.save(path)
    loaded = PrivacyLedger.load(path, key=KEY)
    assert loaded.delta_slack == ledger.delta_slack and loaded.epsilon() == ledger.epsilon()
    assert loaded.head == ledger.head


def test_a_ledger_without_slack_keeps_its_version_2_state() -> None:
    ledger = _slack_ledger([0.0, 0.0], key=KEY)
    state = ledger.state_dict()
    assert state["version"] == 2 and all("delta_slack" not in e for e in state["entries"])
    assert PrivacyLedger.from_state_dict(state, key=KEY).head == ledger.head


@pytest.mark.parametrize(
    "edit",
    [
        lambda s: s["entries"][0].update(delta_slack=0.0),  # the slack reset to zero
        lambda s: s["entries"][0].pop("delta_slack"),  # the slack dropped
        lambda s: s["entries"][1].update(delta_slack=1e-50),  # slack added to another entry
        lambda s: s.update(version=2),  # relabelled for readers that ignore slack
    ],
)
def test_editing_the_slack_fails_the_integrity_check(edit) -> None:
    state = json.loads(json.dumps(_slack_ledger([2e-6, 0.0], key=KEY).state_dict()))
    edit(state)
    with pytest.raises(CheckpointError):
        PrivacyLedger.from_state_dict(state, key=KEY)
