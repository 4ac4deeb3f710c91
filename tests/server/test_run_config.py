"""RunConfig: one validated configuration for the bundled loop and the Flower driver."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from privfl.client import ClientApp, NumPyClient
from privfl.errors import ConfigError
from privfl.server import FedAvg, FixedFractionSampler, RunConfig, run_simulation


class Shift(NumPyClient):
    def __init__(self, node: int) -> None:
        self.node = node

    def fit(self, parameters, config):
        return [parameters[0] + self.node], self.node, {}


APP = ClientApp(Shift)
PARAMS = {"w": np.zeros(3)}


def test_defaults_are_plain_fedavg_over_every_client() -> None:
    config = RunConfig(num_rounds=2)
    assert isinstance(config.strategy, FedAvg)
    assert config.sampler == FixedFractionSampler(1.0)
    assert (config.seed, config.checkpoint, config.callbacks, config.fit_config) == (None, None, (), {})
    assert RunConfig(num_rounds=2).strategy is not config.strategy  # each run its own strategy state


@pytest.mark.parametrize(
    "changes",
    [
        {"num_rounds": -1},
        {"num_rounds": True},
        {"num_rounds": 2.0},
        {"evaluate_fraction": 1.5},
        {"evaluate_fraction": -0.1},
        {"seed": -3},
        {"seed": 1.5},
        {"run_id": 2**63},
        {"on_client_error": "ignore"},
        {"fit_config": [("lr", 0.1)]},
        {"callbacks": ("not callable",)},
    ],
)
def test_invalid_fields_are_config_errors(changes: dict) -> None:
    with pytest.raises(ConfigError):
        RunConfig(**{"num_rounds": 1, **changes})


def test_config_is_frozen_and_owns_its_mappings(tmp_path: Path) -> None:
    fit_config = {"lr": 0.1}
    callbacks = [print]
    config = RunConfig(num_rounds=1, fit_config=fit_config, callbacks=callbacks, checkpoint=str(tmp_path / "c"))
    fit_config["lr"] = 9.0
    callbacks.append(print)
    assert config.fit_config == {"lr": 0.1} and config.callbacks == (print,)
    assert config.checkpoint == tmp_path / "c"
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.num_rounds = 3  # type: ignore[misc]


def test_build_merges_options_and_names_the_fields_on_a_typo() -> None:
    base = RunConfig(num_rounds=1, seed=5)
    assert RunConfig.build(base, {"num_rounds": 3}) == dataclasses.replace(base, num_rounds=3)
    assert RunConfig.build(None, {"num_rounds": 2, "strategy": None, "fit_config": None}).fit_config == {}
    with pytest.raises(ConfigError, match=r"num_round.*RunConfig fields are: num_rounds"):
        RunConfig.build(None, {"num_round": 2})
    with pytest.raises(ConfigError, match="num_rounds"):
        RunConfig.build(None, {"seed": 1})


def test_a_config_and_the_same_keywords_run_the_same_simulation() -> None:
    keywords = {"num_rounds": 2, "seed": 11, "sampler": FixedFractionSampler(0.5), "progress": False}
    by_keywords = run_simulation(APP, num_clients=6, initial_parameters=PARAMS, **keywords)
    by_config = run_simulation(APP, num_clients=6, initial_parameters=PARAMS, config=RunConfig(**keywords))
    np.testing.assert_array_equal(by_keywords.parameters["w"], by_config.parameters["w"])
    sampled = [r.num_sampled for r in by_keywords.history.rounds]
    assert sampled == [r.num_sampled for r in by_config.history.rounds] == [3, 3]


def test_run_simulation_checks_the_population() -> None:
    for bad in (0, -1, True, 2.0):
        with pytest.raises(ConfigError, match="num_clients"):
            run_simulation(APP, num_clients=bad, initial_parameters=PARAMS, num_rounds=1, progress=False)
