"""The privacy ledger: budget stop before overspend, JSON state, atomic save, corrupt files."""

import json
import os

import pytest

from privfl.accounting import (
    ComposedEvent,
    FixedSizeSampledEvent,
    GaussianEvent,
    PoissonSampledEvent,
    PrivacyBudget,
    PrivacyLedger,
    RdpAccountant,
)
from privfl.errors import AccountingError, BudgetExceededError, CheckpointError, ConfigError

SGM = PoissonSampledEvent(0.01, GaussianEvent(1.0))
COUNT = PoissonSampledEvent(0.01, GaussianEvent(10.0))  # e.g. adaptive clipping's noisy count


def _ledger(rounds=5, budget=PrivacyBudget(5.0, 1e-5)):
    ledger = PrivacyLedger(budget)
    for r in range(rounds):
        ledger.record(SGM, server_round=r, note="update noise")
        ledger.record(COUNT, server_round=r, note="adaptive clipping count")
    return ledger


def test_budget_refuses_the_round_that_would_cross_and_allows_the_one_before():
    ledger = PrivacyLedger(PrivacyBudget(epsilon=1.5, delta=1e-5))
    server_round = 0
    while True:
        try:
            ledger.check(SGM, COUNT)
        except BudgetExceededError as exc:
            refused = exc
            break
        ledger.record(SGM, server_round=server_round)
        ledger.record(COUNT, server_round=server_round)
        server_round += 1
    assert server_round > 10
    spent = ledger.epsilon()
    assert spent <= 1.5
    after = RdpAccountant().compose(SGM, server_round + 1).compose(COUNT, server_round + 1).get_epsilon(1e-5)
    assert after > 1.5
    assert f"{spent:.6g}" in str(refused) and f"{after:.6g}" in str(refused) and "epsilon=1.5" in str(refused)
    # Refusing changed nothing.
    assert len(ledger.entries) == 2 * server_round
    assert ledger.epsilon() == spent
    ledger.check()  # nothing to release is always allowed


def test_check_without_budget_is_a_no_op_but_epsilon_needs_delta():
    ledger = _ledger(budget=None)
    ledger.check(*([SGM] * 100_000))
    with pytest.raises(ConfigError, match="delta is required"):
        ledger.epsilon()
    assert ledger.epsilon(1e-5) > 0


def test_epsilon_composes_grouped_entries():
    ledger = _ledger(rounds=10_000, budget=None)
    assert len(ledger.entries) == 20_000
    expected = RdpAccountant().compose(SGM, 10_000).compose(COUNT, 10_000).get_epsilon(1e-6)
    assert ledger.epsilon(1e-6) == pytest.approx(expected, rel=1e-12)


def test_pld_ledger_is_tighter():
    assert PrivacyLedger(accountant="pld").record(SGM, server_round=0).event == SGM
    rdp, pld = _ledger(rounds=50, budget=None), PrivacyLedger(accountant="pld")
    for entry in rdp.entries:
        pld.record(entry.event, server_round=entry.server_round, note=entry.note)
    assert pld.epsilon(1e-5) < rdp.epsilon(1e-5)


def test_pld_ledger_checks_without_changing_its_composition():
    ledger = PrivacyLedger(PrivacyBudget(1.0, 1e-5), accountant="pld")
    ledger.record(SGM, server_round=0)
    spent = ledger.epsilon()
    ledger.check(SGM)
    with pytest.raises(BudgetExceededError):
        ledger.check(ComposedEvent(SGM, 5000))
    assert ledger.epsilon() == spent
    ledger.record(SGM, server_round=1)
    assert ledger.epsilon() > spent


def test_state_dict_round_trips_through_json():
    ledger = _ledger()
    state = json.loads(json.dumps(ledger.state_dict()))
    restored = PrivacyLedger.from_state_dict(state)
    assert restored.entries == ledger.entries
    assert restored.budget == ledger.budget
    assert restored.epsilon() == pytest.approx(ledger.epsilon(), rel=1e-12)
    empty = PrivacyLedger()
    empty.load_state_dict(state)
    assert empty.entries == ledger.entries and empty.budget == ledger.budget


def test_save_load_is_atomic_and_exact(tmp_path):
    ledger = _ledger()
    path = tmp_path / "ledger.json"
    ledger.save(path)
    ledger.record(SGM, server_round=5)
    ledger.save(path)  # overwrite in place
    assert os.listdir(tmp_path) == ["ledger.json"]  # no temp files left
    loaded = PrivacyLedger.load(path)
    assert loaded.entries == ledger.entries
    assert loaded.epsilon() == pytest.approx(ledger.epsilon(), rel=1e-12)


def _tamper(path, edit):
    payload = json.loads(path.read_text())
    edit(payload)
    path.write_text(json.dumps(payload))


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (lambda p: p.write_text(p.read_text()[:-40]), "cannot read"),
        (lambda p: p.write_bytes(b"\xff\xfe\x00"), "cannot read"),
        (lambda p: p.write_text("[1, 2]"), "not a privfl ledger"),
        (lambda p: _tamper(p, lambda d: d["ledger"]["entries"].pop()), "integrity"),
        (
            lambda p: _tamper(p, lambda d: d["ledger"]["entries"][0]["event"]["event"].update(noise_multiplier=9.0)),
            "integrity",
        ),
        (lambda p: p.write_text(p.read_text().replace('"epsilon": 5.0', '"epsilon": NaN')), "cannot read"),
        (lambda p: p.unlink(), "cannot read"),
    ],
)
def test_corrupt_or_tampered_file_raises(tmp_path, corrupt, message):
    path = tmp_path / "ledger.json"
    _ledger().save(path)
    corrupt(path)
    with pytest.raises(CheckpointError, match=message):
        PrivacyLedger.load(path)


@pytest.mark.parametrize(
    "edit",
    [
        lambda s: s.update(format="other"),
        lambda s: s.update(version=3),
        lambda s: s.update(accountant="moments"),
        lambda s: s.update(budget={"epsilon": -1.0, "delta": 1e-5}),
        lambda s: s.update(extra=1),
        lambda s: s["entries"][0]["event"]["event"].update(noise_multiplier=-1.0),
        lambda s: s["entries"][0].update(server_round="3"),
        lambda s: s["entries"][0].update(scope="everyone"),
        lambda s: s["entries"][0].pop("note"),
        lambda s: s.update(entries={}),
    ],
)
def test_invalid_state_raises_checkpoint_error_and_changes_nothing(edit):
    state = _ledger().state_dict()
    edit(state)
    target = _ledger(rounds=1)
    before = target.state_dict()
    with pytest.raises(CheckpointError, match="invalid privacy ledger state"):
        target.load_state_dict(state)
    assert target.state_dict() == before


def test_record_validates_before_changing_anything():
    ledger = _ledger(rounds=1)
    before = ledger.state_dict()
    with pytest.raises(AccountingError, match="replace-one"):
        ledger.record(FixedSizeSampledEvent(10, 100, GaussianEvent(1.0)), server_round=1)
    with pytest.raises(AccountingError, match="replace-one"):
        ledger.check(FixedSizeSampledEvent(10, 100, GaussianEvent(1.0)))
    with pytest.raises(ConfigError, match="record-level"):
        ledger.record(SGM, server_round=1, scope="record")
    for kwargs, message in [
        ({"server_round": -1}, "got -1"),
        ({"server_round": 1, "locality": "remote"}, "'remote'"),
        ({"server_round": 1, "note": 3}, "got 3"),
    ]:
        with pytest.raises(ConfigError, match=message):
            ledger.record(SGM, **kwargs)
    assert ledger.state_dict() == before


@pytest.mark.parametrize(
    ("epsilon", "delta", "message"),
    [(0.0, 1e-5, "epsilon must be .* got 0.0"), (1.0, 1.5, "delta must be .* got 1.5"), ("1", 1e-5, "got '1'")],
)
def test_budget_validation(epsilon, delta, message):
    with pytest.raises(ConfigError, match=message):
        PrivacyBudget(epsilon, delta)


def test_a_resumed_ledger_keeps_the_budget_it_is_given_now():
    saved = _ledger().state_dict()
    tighter = PrivacyBudget(epsilon=0.5 * _ledger().epsilon(), delta=_ledger().budget.delta)
    resumed = PrivacyLedger(budget=tighter)
    resumed.load_state_dict(saved)
    assert resumed.budget == tighter
    assert resumed.entries == _ledger().entries
    with pytest.raises(BudgetExceededError):
        resumed.check(SGM)
