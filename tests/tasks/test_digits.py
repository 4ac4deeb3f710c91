"""The digits task: partition properties and the accuracy the demo promises."""

from __future__ import annotations

import numpy as np
import pytest

from privfl.client.app import ClientApp
from privfl.errors import ConfigError
from privfl.server.simulation import run_simulation
from privfl.tasks.digits import DigitsFederation, dirichlet_partition, initial_parameters, load_digits_data


def test_partition_covers_every_example_once_and_is_non_iid() -> None:
    labels = load_digits_data(0).y_train
    parts = dirichlet_partition(labels, 20, alpha=0.5, seed=0)
    joined = np.sort(np.concatenate(parts))
    np.testing.assert_array_equal(joined, np.arange(len(labels)))
    assert all(len(p) > 0 for p in parts)
    # Non-IID: label histograms differ a lot between clients (total variation from the global mix).
    global_mix = np.bincount(labels, minlength=10) / len(labels)
    tv = [0.5 * np.abs(np.bincount(labels[p], minlength=10) / len(p) - global_mix).sum() for p in parts]
    assert np.median(tv) > 0.3


def test_partition_rejects_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="alpha"):
        dirichlet_partition(np.zeros(10, dtype=int), 2, alpha=0.0)
    with pytest.raises(ConfigError, match="cannot split"):
        dirichlet_partition(np.zeros(3, dtype=int), 5, alpha=1.0)


def test_fedavg_reaches_90_percent_within_30_rounds() -> None:
    fed = DigitsFederation(num_clients=20, alpha=0.5, seed=0)
    result = run_simulation(
        ClientApp(fed),
        num_clients=20,
        num_rounds=30,
        initial_parameters=initial_parameters(),
        centralized_evaluate=fed.evaluate,
        seed=0,
        progress=False,
    )
    accuracies = [a for _, a in result.history.series("centralized", "accuracy")]
    assert len(accuracies) == 30
    assert accuracies[-1] >= 0.90
    assert accuracies[-1] > accuracies[0] + 0.2


def test_process_pool_gives_the_same_model_as_in_process() -> None:
    fed = DigitsFederation(num_clients=6, alpha=1.0, seed=2)
    kwargs = dict(num_clients=6, num_rounds=3, initial_parameters=initial_parameters(), seed=4, progress=False)
    local = run_simulation(ClientApp(fed), **kwargs)
    pooled = run_simulation(ClientApp(fed), workers=2, **kwargs)
    for name, value in local.parameters.items():
        np.testing.assert_array_equal(pooled.parameters[name], value)
    assert pooled.history.rounds[0].bytes_up == local.history.rounds[0].bytes_up
