"""A SecAgg+ client floor paid through delta: the bad-event probability and the runs that use it."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from dp_helpers import fixed_trainer, round_spec
from scipy.stats import binom

from privfl.accounting import GaussianEvent, PoissonSampledEvent, PrivacyBudget, RdpAccountant
from privfl.core.mods import compose
from privfl.dp import AdaptiveClippingDp, CentralDp
from privfl.dp.floor import binomial_pmf_upper_bound, floor_slack
from privfl.errors import BudgetExceededError, ConfigError
from privfl.secagg.client import SecAggMod
from privfl.secagg.config import SecAggConfig
from privfl.secagg.server import SecAggPlusAggregator
from privfl.server.transport import InProcessClients, drive

DELTA = 1e-5


def _secagg() -> SecAggPlusAggregator:
    return SecAggPlusAggregator(SecAggConfig(coordinate_bound=8.0, bits=16, weighting="uniform"), semi_honest=True)


def _moves_more_than_c(others: int, floor: int) -> bool:
    """Whether the target's arrival moves f(S) = sum(S) if |S| >= floor else 0 by more than one update.

    Every update is the same unit vector (the worst case): the move is ||f(S' + t) - f(S')||.
    """

    def f(size: int) -> int:
        return size if size >= floor else 0

    return abs(f(others + 1) - f(others)) > 1


def _enumerated_bad_probability(others: int, q: float, floor: int) -> float:
    """P[the target moves the release by more than C], summed over every sample of ``others`` clients."""
    total = 0.0
    for sample in itertools.product((0, 1), repeat=others):
        size = sum(sample)
        if _moves_more_than_c(size, floor):
            total += q**size * (1 - q) ** (others - size)
    return total


@pytest.mark.parametrize("floor", [1, 2, 3, 4])
@pytest.mark.parametrize("q", [0.1, 0.5, 0.9])
@pytest.mark.parametrize("population", [1, 2, 3, 5, 8])
def test_slack_is_the_enumerated_probability_that_the_target_moves_the_release_by_more_than_c(
    population: int, q: float, floor: int
) -> None:
    # Add/remove-one neighbours of a population of N: N - 1 or N clients besides the target.
    exact = max(_enumerated_bad_probability(others, q, floor) for others in (population - 1, population))
    slack = floor_slack(population, q, floor)
    assert slack >= exact
    assert slack == pytest.approx(exact, rel=1e-12, abs=0.0)
    if floor == 1:
        assert slack == 0.0


def test_slack_matches_monte_carlo_sampling() -> None:
    rng = np.random.default_rng(7)
    others, q, floor, trials = 19, 0.15, 3, 400_000
    sizes = (rng.random((trials, others)) < q).sum(axis=1)
    moves = np.array([_moves_more_than_c(size, floor) for size in range(others + 1)])
    frequency = float(moves[sizes].mean())
    p = binomial_pmf_upper_bound(floor - 1, others, q)
    assert abs(frequency - p) < 5 * math.sqrt(p * (1 - p) / trials)


@pytest.mark.parametrize(
    ("k", "n", "q"),
    [(2, 999, 0.1), (2, 1000, 0.1), (0, 10, 0.5), (5, 100, 0.01), (2, 10**6, 1e-4), (2, 10**6, 0.1), (3, 3, 1.0)],
)
def test_pmf_bound_is_scipy_pmf_rounded_up(k: int, n: int, q: float) -> None:
    exact = float(binom.pmf(k, n, q))
    bound = binomial_pmf_upper_bound(k, n, q)
    assert bound >= exact
    assert bound == pytest.approx(exact, rel=1e-9, abs=1e-300)


def test_pmf_bound_edges() -> None:
    assert binomial_pmf_upper_bound(3, 2, 0.5) == 0.0
    assert binomial_pmf_upper_bound(2, 3, 1.0) == 0.0
    assert floor_slack(1, 0.5, 3) == 0.0  # no neighbour has two other clients: never above C
    # Adding a target to two clients: P[both others sampled] = 1/4, rounded up.
    assert 0.25 <= floor_slack(2, 0.5, 3) <= 0.25 * (1 + 1e-12)
    with pytest.raises(ConfigError):
        binomial_pmf_upper_bound(1, 5, 0.0)


def _secagg_clients(dim: int) -> InProcessClients:
    return InProcessClients(compose(fixed_trainer({"w": np.zeros(dim)}), [SecAggMod(semi_honest=True)]))


def test_readme_population_over_secagg_noises_for_c_and_records_a_negligible_slack() -> None:
    """N = 1000, q = 0.1: fewer than 3 sampled has probability ~1e-42, so the noise is z C, not 3 z C."""
    dim, z = 4096, 1.0
    params = {"w": np.zeros(dim)}
    spec = round_spec(params, (1, 2, 3), rate=0.1, population=1000)
    stds = {}
    for mode in ("delta", "sensitivity"):
        rng = np.random.default_rng(3)
        dp = CentralDp(_secagg(), noise_multiplier=z, clip_norm=1.0, floor_accounting=mode, rng=rng)
        agg = drive(dp.aggregate(spec), _secagg_clients(dim).deliver)
        assert agg.num_clients == 3 and agg.metrics["dp_noise_only"] == 0.0
        per_client = 1.0 + _secagg().contribution_error_bound(spec)
        stds[mode] = float(np.std(agg.update_sum["w"]))  # the updates are 0: the sum is the noise
        if mode == "delta":
            assert agg.metrics["dp_noise_std"] == pytest.approx(z * per_client)
            assert dp.ledger.delta_slack == agg.metrics["dp_delta_slack"]
            assert 1e-43 < dp.ledger.delta_slack < 1e-41
            assert dp.ledger.delta_slack >= binom.pmf(2, 999, 0.1)
        else:
            assert agg.metrics["dp_noise_std"] == pytest.approx(3 * z * per_client)
            assert dp.ledger.delta_slack == 0.0
    # Measured, not just the metric: 4096 draws estimate a std to about 1.1%.
    assert stds["delta"] == pytest.approx(z, rel=0.06)
    assert stds["sensitivity"] == pytest.approx(3 * z, rel=0.06)


def test_epsilon_with_a_negligible_slack_is_the_epsilon_without() -> None:
    dp = CentralDp(_secagg(), noise_multiplier=1.0, clip_norm=1.0, rng=np.random.default_rng(0), delta=DELTA)
    spec = round_spec({"w": np.zeros(4)}, (), rate=0.1, population=1000)
    for _ in range(3):
        drive(dp.aggregate(spec), lambda m: pytest.fail("below the floor nobody is contacted"))
    plain = RdpAccountant()
    plain.compose(PoissonSampledEvent(0.1, GaussianEvent(1.0)), 3)
    assert dp.ledger.epsilon(DELTA) == plain.get_epsilon(DELTA)
    assert dp.ledger.delta_slack == pytest.approx(3 * floor_slack(1000, 0.1, 3))


def test_small_population_with_delta_accounting_is_refused_before_anything_is_sent() -> None:
    """N = 4, q = 1/2: the bad event has probability 3/8 per round, far above delta."""
    budget = PrivacyBudget(3.0, DELTA)
    dp = CentralDp(_secagg(), noise_multiplier=50.0, clip_norm=1.0, budget=budget)
    spec = round_spec({"w": np.zeros(4)}, (1, 2, 3), rate=0.5, population=4)
    with pytest.raises(BudgetExceededError, match="delta slack"):
        next(dp.aggregate(spec))
    assert dp.ledger.entries == ()
    # Without a budget the round runs, and the ledger reports no finite epsilon instead of a wrong one.
    unbudgeted = CentralDp(_secagg(), noise_multiplier=50.0, clip_norm=1.0, rng=np.random.default_rng(0))
    drive(unbudgeted.aggregate(spec), _secagg_clients(4).deliver)
    assert unbudgeted.ledger.delta_slack == pytest.approx(3 / 8)
    assert unbudgeted.ledger.epsilon(DELTA) == math.inf
    # Paying with noise instead (3 z C) fits the same budget.
    noisy = CentralDp(_secagg(), noise_multiplier=50.0, clip_norm=1.0, budget=budget, floor_accounting="sensitivity")
    agg = drive(noisy.aggregate(spec), _secagg_clients(4).deliver)
    assert noisy.ledger.epsilon() < 3.0 and agg.metrics["dp_delta_slack"] == 0.0


def test_admission_refuses_the_round_whose_slack_would_reach_delta() -> None:
    population, q = 27, 0.5
    slack = floor_slack(population, q, 3)
    assert DELTA / 3 < slack < DELTA / 2  # two rounds fit, the third would reach delta
    dp = CentralDp(
        _secagg(), noise_multiplier=50.0, clip_norm=1.0, budget=PrivacyBudget(3.0, DELTA), rng=np.random.default_rng(0)
    )
    spec = round_spec({"w": np.zeros(4)}, (), rate=q, population=population)
    for _ in range(2):
        drive(dp.aggregate(spec), lambda m: pytest.fail("below the floor nobody is contacted"))
    before = dp.ledger.state_dict()
    with pytest.raises(BudgetExceededError, match="delta slack"):
        next(dp.aggregate(spec))
    assert dp.ledger.state_dict() == before and len(dp.ledger.entries) == 2


def test_floor_accounting_is_validated_and_changes_nothing_without_a_floor() -> None:
    with pytest.raises(ConfigError, match="floor_accounting"):
        CentralDp(_secagg(), noise_multiplier=1.0, clip_norm=1.0, floor_accounting="both")
    with pytest.raises(ConfigError, match="floor_accounting"):
        AdaptiveClippingDp(noise_multiplier=1.0, initial_clip_norm=1.0, count_noise_std=5.0, floor_accounting="x")
    spec = round_spec({"w": np.zeros(4)}, (), rate=0.5, population=4)
    for mode in ("delta", "sensitivity"):
        plain = CentralDp.with_server_clipping(noise_multiplier=2.0, clip_norm=1.0, floor_accounting=mode)
        agg = drive(plain.aggregate(spec), lambda m: m)
        assert agg.metrics["dp_noise_std"] == 2.0 and plain.ledger.delta_slack == 0.0
        adaptive = AdaptiveClippingDp(
            noise_multiplier=1.0, initial_clip_norm=1.0, count_noise_std=5.0, floor_accounting=mode
        )
        agg = drive(adaptive.aggregate(spec), lambda m: m)
        assert agg.metrics["dp_delta_slack"] == 0.0 and adaptive.ledger.delta_slack == 0.0
