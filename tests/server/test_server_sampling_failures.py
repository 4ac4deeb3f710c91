"""Client samplers and failure injection."""

from __future__ import annotations

import numpy as np
import pytest

from privfl.core.exchange import SamplingInfo
from privfl.core.message import Message, MessageKind, Metadata
from privfl.errors import ConfigError
from privfl.server.failures import FailureInjector, FailurePlan, stage_of
from privfl.server.sampling import FixedFractionSampler, PoissonSampler

POP = tuple(range(1, 1001))


# ---------------------------------------------------------------- samplers


def test_poisson_empirical_rate_and_per_client_independence() -> None:
    sampler = PoissonSampler(0.3)
    rng = np.random.default_rng(123)
    draws = [sampler.sample(POP, rng) for _ in range(60)]
    sizes = np.array([len(d) for d in draws])
    # Mean of 60 Binomial(1000, 0.3) sizes: std ~ 1.9; 6-sigma band.
    assert abs(sizes.mean() - 300) < 12
    # Sizes vary as a binomial does (std ~ 14.5), unlike a fixed-size sample.
    assert 8 < sizes.std() < 22
    # Each client's inclusion frequency is ~q (no client is systematically in or out).
    counts = np.zeros(len(POP) + 1)
    for d in draws:
        assert len(set(d)) == len(d) and set(d) <= set(POP)
        assert list(d) == sorted(d)
        counts[list(d)] += 1
    freq = counts[1:] / 60
    assert abs(freq.mean() - 0.3) < 0.01
    assert freq.min() >= 0.0 and freq.max() < 0.75


def test_poisson_is_deterministic_for_a_seed() -> None:
    sampler = PoissonSampler(0.1)
    a = sampler.sample(POP, np.random.default_rng(7))
    b = sampler.sample(POP, np.random.default_rng(7))
    c = sampler.sample(POP, np.random.default_rng(8))
    assert a == b
    assert a != c


def test_poisson_rate_one_takes_everyone() -> None:
    assert PoissonSampler(1.0).sample(POP, np.random.default_rng(0)) == POP


def test_poisson_info() -> None:
    info = PoissonSampler(0.05).info(200)
    assert info == SamplingInfo(population=200, rate=0.05, poisson=True)
    assert info.expected_clients == pytest.approx(10.0)


@pytest.mark.parametrize("rate", [0.0, -0.1, 1.01, float("nan")])
def test_poisson_rate_validation(rate: float) -> None:
    with pytest.raises(ConfigError):
        PoissonSampler(rate)


@pytest.mark.parametrize(
    ("fraction", "min_clients", "population", "expected"),
    [(0.1, 1, 1000, 100), (0.25, 1, 10, 2), (0.01, 3, 100, 3), (1.0, 1, 7, 7), (0.5, 20, 10, 10), (0.3, 1, 3, 1)],
)
def test_fixed_fraction_count(fraction: float, min_clients: int, population: int, expected: int) -> None:
    sampler = FixedFractionSampler(fraction, min_clients)
    pop = tuple(range(100, 100 + population))
    for seed in range(5):
        chosen = sampler.sample(pop, np.random.default_rng(seed))
        assert len(chosen) == expected
        assert len(set(chosen)) == expected and set(chosen) <= set(pop)
        assert list(chosen) == sorted(chosen)
    info = sampler.info(population)
    assert info.poisson is False and info.rate == pytest.approx(expected / population)


def test_fixed_fraction_is_deterministic_and_uniform_over_clients() -> None:
    sampler = FixedFractionSampler(0.2)
    pop = tuple(range(1, 51))
    assert sampler.sample(pop, np.random.default_rng(1)) == sampler.sample(pop, np.random.default_rng(1))
    assert sampler.sample(pop, np.random.default_rng(1)) != sampler.sample(pop, np.random.default_rng(2))
    rng = np.random.default_rng(5)
    counts = np.zeros(51)
    for _ in range(500):
        counts[list(sampler.sample(pop, rng))] += 1
    freq = counts[1:] / 500
    # Each client is picked with probability 10/50; 500 draws: std ~ 0.018.
    assert abs(freq.mean() - 0.2) < 1e-12
    assert freq.min() > 0.1 and freq.max() < 0.3


@pytest.mark.parametrize("kwargs", [{"fraction": 0.0}, {"fraction": 1.5}, {"min_clients": 0}])
def test_fixed_fraction_validation(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        FixedFractionSampler(**kwargs)


@pytest.mark.parametrize("kwargs", [{"population": 0, "rate": 0.5}, {"population": 5, "rate": 0.0}])
def test_sampling_info_validation(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        SamplingInfo(poisson=True, **kwargs)


# ---------------------------------------------------------------- failures


def to(node: int, rnd: int = 1, stage: str = "", kind: MessageKind = MessageKind.TRAIN) -> Message:
    return Message(Metadata(0, rnd, 0, node, kind, stage))


def test_stage_of_uses_the_stage_or_the_kind() -> None:
    assert stage_of(to(1, stage="secagg.unmask")) == "secagg.unmask"
    assert stage_of(to(1)) == "train"
    assert stage_of(to(1, kind=MessageKind.EVALUATE)) == "evaluate"


def test_scripted_drop_at_a_stage_and_for_the_rest_of_the_round() -> None:
    inj = FailureInjector(FailurePlan.script([(2, "share", 3), (1, "train", 4)]))
    # Round 2: node 3 is fine at "setup", fails at "share", stays dead at "unmask".
    assert not inj.drops(to(3, 2, "setup"))
    assert not inj.drops(to(4, 2, "setup"))
    assert inj.drops(to(3, 2, "share"))
    assert not inj.drops(to(5, 2, "share"))
    assert inj.drops(to(3, 2, "unmask"))
    assert inj.drops(to(3, 2, "setup"))  # even a repeated earlier stage
    assert inj.drops(to(3, 2, kind=MessageKind.EVALUATE))
    # Round 3: node 3 is alive again.
    assert not inj.drops(to(3, 3, "share"))
    # One-shot task: node 4 drops at "train" in round 1 only.
    assert inj.drops(to(4, 1))
    assert not inj.drops(to(4, 2, "unmask"))


def test_no_plan_drops_nobody() -> None:
    inj = FailureInjector(None)
    assert not any(inj.drops(to(n, r, s)) for n in range(1, 20) for r in range(1, 4) for s in ("", "a", "b"))


def _random_drops(plan: FailurePlan, stage: str, nodes=range(1, 401), rnd: int = 1) -> set[int]:
    inj = FailureInjector(plan)
    return {n for n in nodes if inj.drops(to(n, rnd, stage))}


def test_random_drops_are_reproducible_per_seed_and_near_the_rate() -> None:
    plan = FailurePlan(dropout={"train": 0.25}, seed=42)
    a = _random_drops(plan, "")
    b = _random_drops(FailurePlan(dropout={"train": 0.25}, seed=42), "")
    c = _random_drops(FailurePlan(dropout={"train": 0.25}, seed=43), "")
    assert a == b
    assert a != c
    # 400 Bernoulli(0.25): mean 100, std ~ 8.7.
    assert 60 < len(a) < 140
    # Another round draws afresh.
    assert _random_drops(plan, "", rnd=2) != a


def test_random_drops_apply_only_to_their_stage_or_star() -> None:
    plan = FailurePlan(dropout={"share": 1.0}, seed=1)
    assert _random_drops(plan, "setup") == set()
    assert _random_drops(plan, "share") == set(range(1, 401))
    star = FailurePlan(dropout={"*": 1.0, "setup": 0.0})
    assert _random_drops(star, "setup") == set()  # a named stage overrides "*"
    assert _random_drops(star, "unmask") == set(range(1, 401))


def test_random_drop_is_sticky_within_the_round() -> None:
    inj = FailureInjector(FailurePlan(dropout={"setup": 0.5}, seed=3))
    dropped = {n for n in range(1, 101) if inj.drops(to(n, 1, "setup"))}
    assert 20 < len(dropped) < 80
    later = {n for n in range(1, 101) if inj.drops(to(n, 1, "unmask"))}
    assert later == dropped


def test_random_drops_are_independent_across_stages_with_a_common_prefix() -> None:
    inj = FailureInjector(FailurePlan(dropout={"*": 0.5}, seed=1))
    survivors = [n for n in range(1, 401) if not inj.drops(to(n, 1, "secagg.setup"))]
    later = [n for n in survivors if inj.drops(to(n, 1, "secagg.share_keys"))]
    # Independent draws: about half of the ~200 survivors drop at the second stage.
    assert 0.3 < len(later) / len(survivors) < 0.7


@pytest.mark.parametrize("p", [-0.1, 1.5])
def test_failure_plan_validation(p: float) -> None:
    with pytest.raises(ConfigError):
        FailurePlan(dropout={"train": p})


def test_failure_plan_script_accepts_any_iterable() -> None:
    plan = FailurePlan.script(iter([(1, "train", 2)]))
    assert plan.scripted == frozenset({(1, "train", 2)})
    assert FailurePlan(scripted=[(1, "a", 2)]).scripted == frozenset({(1, "a", 2)})  # type: ignore[arg-type]
