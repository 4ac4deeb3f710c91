"""Client sampling per round.

DP accounting of subsampling (Mironov et al. 2019) assumes Poisson sampling:
each client joins a round independently with probability q. Fixed-size sampling
(exactly m of N without replacement) is offered for non-private runs; its
neighbouring relation is replace-one, which the DP mods refuse.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from privfl.core.exchange import SamplingInfo
from privfl.errors import ConfigError


class Sampler(Protocol):
    """Draws the clients of one round from ``population`` node ids."""

    def sample(self, population: tuple[int, ...], rng: np.random.Generator) -> tuple[int, ...]: ...

    def info(self, population: int) -> SamplingInfo: ...


@dataclass(frozen=True)
class PoissonSampler:
    """Each client is included independently with probability ``rate`` (q)."""

    rate: float

    def __post_init__(self) -> None:
        if not 0.0 < self.rate <= 1.0:
            raise ConfigError(f"Poisson sampling rate must be in (0, 1], got {self.rate}")

    def sample(self, population: tuple[int, ...], rng: np.random.Generator) -> tuple[int, ...]:
        mask = rng.random(len(population)) < self.rate
        return tuple(n for n, keep in zip(population, mask, strict=False) if keep)

    def info(self, population: int) -> SamplingInfo:
        return SamplingInfo(population=population, rate=self.rate, poisson=True)


@dataclass(frozen=True)
class FixedFractionSampler:
    """Exactly ``max(min_clients, round(fraction * N))`` clients, drawn without replacement."""

    fraction: float = 1.0
    min_clients: int = 1

    def __post_init__(self) -> None:
        if not 0.0 < self.fraction <= 1.0:
            raise ConfigError(f"fraction must be in (0, 1], got {self.fraction}")
        if self.min_clients < 1:
            raise ConfigError(f"min_clients must be >= 1, got {self.min_clients}")

    def count(self, population: int) -> int:
        return min(population, max(self.min_clients, round(self.fraction * population)))

    def sample(self, population: tuple[int, ...], rng: np.random.Generator) -> tuple[int, ...]:
        chosen = rng.choice(len(population), size=self.count(len(population)), replace=False)
        return tuple(population[i] for i in sorted(chosen))

    def info(self, population: int) -> SamplingInfo:
        return SamplingInfo(population=population, rate=self.count(population) / population, poisson=False)
