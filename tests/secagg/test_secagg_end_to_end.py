"""SecAgg+ inside the bundled loop: FedAvg on the digits task, dropouts, aborted rounds."""

from __future__ import annotations

import numpy as np
import pytest
import sklearn  # noqa: F401

from privfl.client.app import ClientApp
from privfl.secagg import Federation, SecAggConfig, SecAggMod, SecAggPlusAggregator
from privfl.secagg import protocol as p
from privfl.server.failures import FailurePlan
from privfl.server.simulation import run_simulation
from privfl.server.strategy import FedAvg
from privfl.tasks.digits import DigitsFederation, initial_parameters


def simulate(secure: bool, failures: FailurePlan | None = None, num_rounds: int = 3):
    federation = DigitsFederation(num_clients=10, seed=0)
    config = SecAggConfig(coordinate_bound=4.0, bits=16, max_weight=512)
    keys = Federation.generate(range(1, 11), config.corruption)
    mods = [SecAggMod(trust=keys.trust)] if secure else []
    aggregator = SecAggPlusAggregator(config, roster=keys.roster) if secure else None
    strategy = FedAvg(aggregator=aggregator) if secure else FedAvg()
    return run_simulation(
        ClientApp(federation, mods=mods),
        num_clients=10,
        num_rounds=num_rounds,
        initial_parameters=initial_parameters(),
        strategy=strategy,
        centralized_evaluate=federation.evaluate,
        failures=failures,
        seed=1,
        progress=False,
    )


def test_secagg_fedavg_matches_plain_fedavg_on_digits() -> None:
    plain = simulate(secure=False)
    secure = simulate(secure=True)
    assert [r.status for r in secure.history.rounds] == ["ok"] * 3
    for a, b in zip(plain.history.rounds, secure.history.rounds, strict=True):
        assert abs(a.centralized["accuracy"] - b.centralized["accuracy"]) < 0.02
        assert a.fit["num_examples"] == b.fit["num_examples"]  # the exact weight sum is recovered
    for name, value in plain.parameters.items():
        assert np.allclose(value, secure.parameters[name], atol=1e-3)
    assert secure.history.rounds[-1].centralized["accuracy"] > 0.8


def test_secagg_trains_with_dropouts_at_every_stage() -> None:
    drops = [(1, p.STAGE_SETUP, 3), (2, p.STAGE_SHARE_KEYS, 5), (2, p.STAGE_MASKED_INPUT, 9), (3, p.STAGE_UNMASK, 2)]
    result = simulate(secure=True, failures=FailurePlan.script(drops))
    rounds = result.history.rounds
    assert [r.status for r in rounds] == ["ok"] * 3
    assert [r.num_clients for r in rounds] == [9, 8, 10]  # an unmask dropout's input still counts
    assert rounds[-1].centralized["accuracy"] > 0.8


def test_round_below_threshold_aborts_and_keeps_the_model() -> None:
    drops = [(1, p.STAGE_MASKED_INPUT, node) for node in range(1, 8)]
    result = simulate(secure=True, failures=FailurePlan.script(drops), num_rounds=2)
    first, second = result.history.rounds
    assert first.status == "aborted" and "ProtocolAbort" in first.note
    untouched = DigitsFederation(num_clients=10, seed=0).evaluate(1, initial_parameters())
    assert first.centralized == untouched  # the model after the aborted round is the initial one
    assert second.status == "ok" and second.centralized["accuracy"] > untouched["accuracy"]
    only_abort = simulate(secure=True, failures=FailurePlan.script(drops), num_rounds=1)
    for name, value in initial_parameters().items():
        assert np.array_equal(only_abort.parameters[name], value)


def test_central_dp_over_secagg_with_client_clipping() -> None:
    """DP-FedAvg where clients clip (the server cannot) and the server noises the unmasked sum."""
    from privfl.dp.central import CentralDp
    from privfl.dp.client_mods import FixedClippingMod
    from privfl.errors import ConfigError
    from privfl.server.sampling import PoissonSampler

    with pytest.raises(ConfigError, match="uniform"):
        CentralDp(SecAggPlusAggregator(SecAggConfig(), semi_honest=True), noise_multiplier=1.0, clip_norm=1.0)
    federation = DigitsFederation(num_clients=10, seed=0)
    secure = SecAggPlusAggregator(SecAggConfig(coordinate_bound=1.0, bits=20, weighting="uniform"), semi_honest=True)
    strategy = FedAvg(aggregator=CentralDp(secure, noise_multiplier=0.1, clip_norm=1.0, delta=1e-5), min_clients=0)
    drops = [(2, p.STAGE_MASKED_INPUT, node) for node in range(1, 11)]  # SecAgg+ fails in round 2
    result = run_simulation(
        ClientApp(federation, mods=[SecAggMod(semi_honest=True), FixedClippingMod(1.0)]),
        num_clients=10,
        num_rounds=3,
        initial_parameters=initial_parameters(),
        strategy=strategy,
        sampler=PoissonSampler(0.9),
        centralized_evaluate=federation.evaluate,
        failures=FailurePlan.script(drops),
        seed=3,
        progress=False,
    )
    # Under DP a failed inner protocol is not an abort (it would leak who was sampled): the
    # round releases noise only and is charged like every other round.
    assert [r.status for r in result.history.rounds] == ["ok"] * 3
    assert [r.fit["dp_noise_only"] for r in result.history.rounds] == [0.0, 1.0, 0.0]
    assert len(strategy.aggregator.ledger.entries) == 3
    assert result.history.rounds[-1].centralized["accuracy"] > 0.3
