"""Issue 13, item 4: the keyed ledger refuses edited, re-digested, truncated and checkpointed-then-edited states."""

from __future__ import annotations

import hashlib
import json
import secrets

import numpy as np
import pytest

from privfl.accounting import GaussianEvent, PoissonSampledEvent, PrivacyLedger
from privfl.accounting.ledger import read_key_file
from privfl.cli import main
from privfl.dp import CentralDp
from privfl.errors import CheckpointError, ConfigError
from privfl.server.checkpoint import load_checkpoint, save_checkpoint

KEY = secrets.token_bytes(32)
SGM = PoissonSampledEvent(0.1, GaussianEvent(1.0))


def _ledger(key: bytes | None = KEY, rounds: int = 5) -> PrivacyLedger:
    ledger = PrivacyLedger(key=key)
    for rnd in range(1, rounds + 1):
        ledger.record(SGM, server_round=rnd)
    return ledger


def _rechain(state: dict) -> None:
    """What an editor without the key can do: recompute the (unkeyed) chain digest after an edit."""
    head = hashlib.sha256(b"privfl.ledger.chain.v2").digest()
    for entry in state["entries"]:
        head = hashlib.sha256(head + json.dumps(entry, sort_keys=True, separators=(",", ":")).encode()).digest()
    state["chain"] = head.hex()


def _edit_entry(state: dict) -> None:
    state["entries"][2]["event"]["event"]["noise_multiplier"] = 50.0
    _rechain(state)


def _truncate(state: dict) -> None:
    del state["entries"][-3:]
    _rechain(state)


def _strip_mac(state: dict) -> None:
    state["mac"] = None


@pytest.mark.parametrize("attack", [_edit_entry, _truncate, _strip_mac])
def test_edits_the_chain_cannot_catch_are_refused_under_the_key(attack):
    state = _ledger().state_dict()
    attack(state)
    # The attack works against a ledger read without a key (no integrity claim is made then) ...
    unkeyed = PrivacyLedger.from_state_dict(state)
    if attack is not _strip_mac:
        assert unkeyed.epsilon(1e-5) < _ledger().epsilon(1e-5)
    # ... and fails under the operator key.
    with pytest.raises(CheckpointError, match="failed authentication"):
        PrivacyLedger.from_state_dict(state, key=KEY)


def test_an_edit_without_recomputing_the_digest_is_caught_as_corruption_even_without_a_key():
    state = _ledger(key=None).state_dict()
    state["entries"].pop()
    with pytest.raises(CheckpointError, match="integrity check"):
        PrivacyLedger.from_state_dict(state)


def test_a_ledger_under_another_key_is_refused():
    with pytest.raises(CheckpointError, match="failed authentication"):
        PrivacyLedger.from_state_dict(_ledger(key=secrets.token_bytes(32)).state_dict(), key=KEY)
    with pytest.raises(ConfigError, match="at least 32 bytes"):
        PrivacyLedger(key=b"short")


def test_the_saved_file_is_authenticated(tmp_path):
    path = tmp_path / "ledger.json"
    _ledger().save(path)
    assert PrivacyLedger.load(path, key=KEY).entries == _ledger().entries
    payload = json.loads(path.read_text())
    _truncate(payload["ledger"])
    path.write_text(json.dumps(payload))
    assert len(PrivacyLedger.load(path).entries) == 2  # without a key: no claim
    with pytest.raises(CheckpointError, match="failed authentication"):
        PrivacyLedger.load(path, key=KEY)


def test_budget_cli_verifies_with_the_key_file(tmp_path, capsys):
    path, key_file = tmp_path / "ledger.json", tmp_path / "ledger.key"
    key_file.write_text(KEY.hex() + "\n")
    assert read_key_file(key_file) == KEY
    _ledger().save(path)
    assert main(["budget", "--ledger", str(path), "--delta", "1e-5", "--ledger-key-file", str(key_file)]) == 0
    assert "integrity: authenticated" in capsys.readouterr().out
    assert main(["budget", "--ledger", str(path), "--delta", "1e-5"]) == 0
    assert "NOT authenticated" in capsys.readouterr().out
    payload = json.loads(path.read_text())
    _edit_entry(payload["ledger"])
    path.write_text(json.dumps(payload))
    assert main(["budget", "--ledger", str(path), "--delta", "1e-5", "--ledger-key-file", str(key_file)]) == 2
    assert "failed authentication" in capsys.readouterr().err


def test_a_checkpoint_whose_ledger_lost_entries_is_refused_on_resume(tmp_path):
    """Issue 13: 24 entries deleted from a checkpoint, resumed, and the spend was reset."""
    dp = CentralDp.with_server_clipping(noise_multiplier=1.0, clip_norm=1.0, ledger_key=KEY)
    for rnd in range(1, 31):
        dp.ledger.record(SGM, server_round=rnd)
    path = tmp_path / "run.ckpt"
    save_checkpoint(path, {"strategy": {"aggregator": dp.state_dict()}, "round": 30, "parameters": [np.zeros(2)]})
    state = load_checkpoint(path)
    resumed = CentralDp.with_server_clipping(noise_multiplier=1.0, clip_norm=1.0, ledger_key=KEY)
    resumed.load_state_dict(state["strategy"]["aggregator"])
    assert len(resumed.ledger.entries) == 30
    ledger_state = state["strategy"]["aggregator"]["ledger"]
    del ledger_state["entries"][6:]
    _rechain(ledger_state)
    save_checkpoint(path, state)
    fresh = CentralDp.with_server_clipping(noise_multiplier=1.0, clip_norm=1.0, ledger_key=KEY)
    with pytest.raises(CheckpointError, match="failed authentication"):
        fresh.load_state_dict(load_checkpoint(path)["strategy"]["aggregator"])
    assert fresh.ledger.entries == ()
