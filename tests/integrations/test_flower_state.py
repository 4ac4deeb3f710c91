"""Node state in Flower's Context: secrets only sealed, bound to run, round and node; replays refused."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import flwr  # noqa: F401
import numpy as np
import pytest
from flower_inprocess import InProcessGrid
from flwr.app import Context, RecordDict

import privfl.secagg as secagg
from privfl.client import ClientApp, NumPyClient
from privfl.errors import ConfigError, ProtocolError
from privfl.integrations.flower import flower_client_app, run_on_grid, state
from privfl.integrations.flower.state import STATE_RECORD, load_node_key, open_context, save_context
from privfl.server import FedAvg

SECRET = b"k" * 32
SAVED_KEY = "test.secret"


class Secret:
    """A SecretStateful object: a public counter, and a secret that may only be stored sealed."""

    def __init__(self) -> None:
        self.count, self.key = 0, b""

    def state_dict(self) -> dict:
        return {"count": self.count}

    def load_state_dict(self, saved: dict) -> None:
        self.count = saved["count"]

    def secret_state_dict(self) -> dict:
        return {"count": self.count, "key": self.key}

    def load_secret_state_dict(self, saved: dict) -> None:
        self.count, self.key = saved["count"], saved["key"]


def flower_context(node_id: int = 2**64 - 5, run_id: int = 3, key_file: Path | None = None) -> Context:
    node_config = {state.KEY_FILE_CONFIG: str(key_file)} if key_file else {}
    return Context(run_id=run_id, node_id=node_id, node_config=node_config, state=RecordDict(), run_config={})


def store(ctx: Context, server_round: int, secret: bytes = SECRET, run_id: int = 1) -> None:
    context = open_context(ctx, node_id=1, run_id=run_id, server_round=server_round)
    obj = context.get_or_create(SAVED_KEY, Secret)
    obj.count += 1
    obj.key = secret
    save_context(ctx, context, run_id=run_id, server_round=server_round)


def load(ctx: Context, server_round: int, run_id: int = 1) -> Secret:
    return open_context(ctx, node_id=1, run_id=run_id, server_round=server_round).get_or_create(SAVED_KEY, Secret)


def record_bytes(ctx: Context) -> bytes:
    return b"".join(v for v in ctx.state.config_records[STATE_RECORD].values() if isinstance(v, bytes))


def test_secret_state_is_stored_only_sealed_and_reopens_within_its_round(tmp_path: Path) -> None:
    ctx = flower_context(key_file=tmp_path / "node.key")
    store(ctx, server_round=4)
    assert SECRET not in record_bytes(ctx)  # the node-local record holds ciphertext only
    again = load(ctx, server_round=4)
    assert (again.count, again.key) == (1, SECRET)
    later = load(ctx, server_round=5)  # a new round gets the public part only
    assert (later.count, later.key) == (1, b"")


def test_node_key_file_is_created_private_reused_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "node.key"
    key = load_node_key(path)
    assert len(key) == 32 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_node_key(path) == key
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_node_key(path)
    os.chmod(path, 0o600)
    path.write_bytes(b"short")
    with pytest.raises(ConfigError, match="exactly 32 bytes"):
        load_node_key(path)


def replay(source: Context, target: Context, server_round: int, run_id: int = 1) -> None:
    """The attack: copy a sealed record into another node's, run's or round's state and claim it is current."""
    record = source.state.config_records[STATE_RECORD]
    record["sealed_at"] = [run_id, server_round]
    target.state.config_records[STATE_RECORD] = record


@pytest.mark.parametrize("case", ["round", "run", "node"])
def test_a_sealed_blob_replayed_elsewhere_is_refused(case: str, tmp_path: Path, monkeypatch) -> None:
    key_file = tmp_path / "shared.key"  # even a node sharing the key file cannot use another's blob
    target_round, target_run, target_node = 4, 1, 2**64 - 5
    if case == "round":
        target_round = 5
    elif case == "run":
        target_run = 9
    else:
        target_node = 2**64 - 6

    def attack() -> Secret:
        source, target = flower_context(key_file=key_file), flower_context(node_id=target_node, key_file=key_file)
        store(source, server_round=4)
        replay(source, target, target_round, target_run)
        return load(target, target_round, target_run)

    # Weakened variant: associated data that binds nothing. The replayed secret is accepted.
    with monkeypatch.context() as weak:
        weak.setattr(state, "associated_data", lambda ctx, record, run_id, rnd: b"privfl/none")
        assert attack().key == SECRET
    # The real binding refuses it, and says nothing of the secret.
    with pytest.raises(ProtocolError, match="does not open") as refused:
        attack()
    assert SECRET.decode() not in str(refused.value)


def test_a_tampered_blob_is_refused(tmp_path: Path) -> None:
    ctx = flower_context(key_file=tmp_path / "node.key")
    store(ctx, server_round=2)
    record = ctx.state.config_records[STATE_RECORD]
    blob = bytearray(record["sealed"])
    blob[-1] ^= 1
    record["sealed"] = bytes(blob)
    with pytest.raises(ProtocolError, match="does not open"):
        load(ctx, server_round=2)


class OnGrid(NumPyClient):
    """Adds node-dependent half-integers: exactly on the SecAgg+ grid below, so the sum is exact."""

    def __init__(self, node_id: int) -> None:
        self.node_id = node_id

    def fit(self, parameters, config):
        return [p + (self.node_id - 3.5) for p in parameters], 1, {}


@pytest.mark.usefixtures("flower_task")
def test_secagg_round_runs_from_flowers_node_state_alone_with_its_secrets_sealed() -> None:
    """No process memory: every stage rebuilds the client from Context.state (as one process per message does)."""
    app = flower_client_app(ClientApp(OnGrid, mods=[secagg.SecAggMod(semi_honest=True)]))
    grid = InProcessGrid(app, 6)
    sealed_seen: list[bytes] = []

    def after_each_stage(message) -> None:
        for ctx in grid.contexts.values():
            record = ctx.state.config_records.get(STATE_RECORD)
            if record and record["sealed"]:
                sealed_seen.append(record["sealed"])

    grid.on_message = after_each_stage
    config = secagg.SecAggConfig(coordinate_bound=127.5, bits=8, max_weight=1, weighting="uniform")
    result = run_on_grid(
        grid,
        min_nodes=6,
        num_rounds=2,
        initial_parameters={"w": np.zeros(4)},
        strategy=FedAvg(aggregator=secagg.SecAggPlusAggregator(config, semi_honest=True)),
        seed=1,
    )
    assert [r.status for r in result.history.rounds] == ["ok", "ok"]
    np.testing.assert_array_equal(result.parameters["w"], np.full(4, 2 * np.mean(np.arange(1, 7) - 3.5)))
    assert sealed_seen  # the clients' round secrets were persisted between stages, sealed
