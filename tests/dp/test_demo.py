"""``privfl demo dp`` runs DP-FedAvg, prints epsilon per round, and stays within its budget."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from privfl.cli import main
from privfl.errors import ConfigError
from privfl.tasks.digits import DigitsPopulation


def test_demo_dp_prints_epsilon_per_round_within_the_budget(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    plot = tmp_path / "dp.png"
    argv = ["demo", "dp", "--epsilon", "2", "--rounds", "3", "--clients", "200", "--sample-rate", "0.2"]
    assert main([*argv, "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    epsilons = [float(e) for e in re.findall(r"^round +\d+ .*epsilon (\S+)$", out, flags=re.M)]
    assert len(epsilons) == 3
    assert epsilons == sorted(epsilons) and epsilons[-1] <= 2.0 + 1e-9
    assert "final test accuracy" in out and plot.exists()


def test_demo_dp_with_a_noise_multiplier_and_bad_values(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    argv = ["demo", "dp", "--noise-multiplier", "2.0", "--rounds", "1", "--clients", "100", "--quiet"]
    assert main([*argv, "--plot", str(tmp_path / "p.png")]) == 0
    assert "z=2.0000" in capsys.readouterr().out
    assert main(["demo", "dp", "--clip", "-1", "--rounds", "1", "--plot", str(tmp_path / "q.png")]) == 2
    assert "argument --clip: must be a finite number > 0, got -1" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="num_clients must be in"):
        DigitsPopulation(num_clients=100_000)


def test_population_shards_cover_the_training_set_once() -> None:
    population = DigitsPopulation(num_clients=500)
    sizes = [len(population(node).y) for node in range(1, 501)]
    assert sum(sizes) == 1347 and min(sizes) >= 2 and max(sizes) - min(sizes) <= 1
