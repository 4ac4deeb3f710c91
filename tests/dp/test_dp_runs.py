"""DP through the bundled loop: the budget stop, and the ledgers across a SIGKILL and resume."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

from privfl.accounting import PrivacyBudget, PrivacyLedger, epsilon_for
from privfl.client.app import ClientApp
from privfl.dp import CentralDp
from privfl.dp.client_mods import LOCAL_LEDGER_KEY
from privfl.errors import ConfigError
from privfl.server.checkpoint import load_checkpoint
from privfl.server.sampling import FixedFractionSampler, PoissonSampler
from privfl.server.simulation import run_simulation
from privfl.server.strategy import FedAvg
from privfl.tasks.digits import DigitsFederation, initial_parameters

HERE = Path(__file__).parent
sys.path[:0] = [str(HERE), str(HERE.parent)]
import dp_resume_job  # noqa: E402
from kill_point import kill_mid_round  # noqa: E402

FED = DigitsFederation(num_clients=10, alpha=1.0, seed=2)


def test_run_stops_before_the_round_that_would_overspend() -> None:
    q, z, delta = 0.3, 1.0, 1e-5
    three = epsilon_for(noise_multiplier=z, sampling_rate=q, rounds=3, delta=delta)
    four = epsilon_for(noise_multiplier=z, sampling_rate=q, rounds=4, delta=delta)
    budget = PrivacyBudget((three + four) / 2, delta)
    dp = CentralDp.with_server_clipping(noise_multiplier=z, clip_norm=1.0, budget=budget)
    received: list[tuple[int, int]] = []
    app = ClientApp(FED)

    def recording_app(message, context):
        received.append((message.metadata.server_round, message.metadata.dst_node))
        return app(message, context)

    with pytest.warns(UserWarning, match="stopped before round 4"):
        result = run_simulation(
            recording_app,
            num_clients=FED.num_clients,
            num_rounds=10,
            initial_parameters=initial_parameters(),
            strategy=FedAvg(aggregator=dp, min_clients=0),
            sampler=PoissonSampler(q),
            seed=3,
            progress=False,
        )
    assert "budget" in result.stopped
    assert [r.server_round for r in result.history.rounds] == [1, 2, 3]
    assert [e.server_round for e in dp.ledger.entries] == [1, 2, 3]
    assert dp.ledger.epsilon() == pytest.approx(three) and three <= (three + four) / 2
    assert received and max(rnd for rnd, _ in received) <= 3  # nothing was sent in round 4


def test_fixed_size_sampling_is_refused_under_dp() -> None:
    dp = CentralDp.with_server_clipping(noise_multiplier=1.0, clip_norm=1.0)
    with pytest.raises(ConfigError, match="fixed-size sampling"):
        run_simulation(
            ClientApp(FED),
            num_clients=FED.num_clients,
            num_rounds=1,
            initial_parameters=initial_parameters(),
            strategy=FedAvg(aggregator=dp, min_clients=0),
            sampler=FixedFractionSampler(0.5),
            progress=False,
        )
    assert dp.ledger.entries == ()


def _client_rounds(state: dict) -> dict[str, list[int]]:
    out = {}
    for node, saved in state["clients"].items():
        ledger = PrivacyLedger.from_state_dict(saved[LOCAL_LEDGER_KEY]) if LOCAL_LEDGER_KEY in saved else None
        out[node] = [] if ledger is None else [e.server_round for e in ledger.entries]
    return out


def test_ledgers_survive_kill_and_resume(tmp_path: Path) -> None:
    rounds, kill_round = 6, 4
    ckpt = tmp_path / "run.ckpt"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])}
    kill_mid_round([str(HERE / "dp_resume_job.py"), str(ckpt), str(rounds), str(kill_round)], env, kill_round)
    killed = load_checkpoint(ckpt)
    done = killed["round"]
    assert done == kill_round - 1, "killed inside round 4, after round 3's checkpoint"
    server_rounds = [e["server_round"] for e in killed["strategy"]["aggregator"]["ledger"]["entries"]]
    assert server_rounds == list(range(1, done + 1))
    before = _client_rounds(killed)

    resumed = dp_resume_job.run(ckpt, rounds)
    ledger = resumed.strategy.aggregator.ledger
    # Exactly one central entry per completed round: none lost, none counted twice.
    assert [e.server_round for e in ledger.entries] == list(range(1, rounds + 1))
    assert ledger.epsilon(1e-5) == pytest.approx(
        epsilon_for(noise_multiplier=1.0, sampling_rate=0.5, rounds=rounds, delta=1e-5)
    )
    # Client ledgers: the checkpointed prefix is kept and each round appears at most once per client.
    after = _client_rounds(load_checkpoint(ckpt))
    for node, rounds_before in before.items():
        assert after[node][: len(rounds_before)] == rounds_before
        assert after[node] == sorted(set(after[node]))
    assert sum(map(len, after.values())) == sum(r.num_clients for r in resumed.history.rounds)
    assert np.all(np.isfinite(resumed.parameters["weight"]))
