"""SecAgg+ parameter selection: tails against enumeration, bounds against brute force, the floor."""

from __future__ import annotations

import itertools
import math
import random
from fractions import Fraction

import pytest

from privfl.errors import ConfigError
from privfl.secagg.params import (
    abort_probability,
    binomial_tail,
    check_secure,
    check_structure,
    choose_parameters,
    complete_abort_probability,
    harary_disconnection_bound,
    hypergeometric_tail,
    security_failure_probability,
    sparse_abort_bound,
)


def _exact_binomial_tail(n: int, p: Fraction, m: int) -> Fraction:
    return sum((math.comb(n, j) * p**j * (1 - p) ** (n - j) for j in range(max(m, 0), n + 1)), Fraction(0))


@pytest.mark.parametrize(("n", "p", "m"), [(10, Fraction(1, 5), 4), (17, Fraction(3, 10), 9), (6, Fraction(1, 2), 0)])
def test_binomial_tail_matches_exact_sum(n: int, p: Fraction, m: int) -> None:
    assert binomial_tail(n, float(p), m) == pytest.approx(float(_exact_binomial_tail(n, p, m)), rel=1e-12)


def test_hypergeometric_tail_matches_subset_enumeration() -> None:
    population, marked, draws = 9, 4, 5
    counts = [sum(x < marked for x in subset) for subset in itertools.combinations(range(population), draws)]
    for at_least in range(draws + 2):
        exact = sum(c >= at_least for c in counts) / len(counts)
        assert hypergeometric_tail(population, marked, draws, at_least) == pytest.approx(exact, rel=1e-12, abs=0)


def _harary_neighbours(n: int, k: int) -> list[set[int]]:
    return [{(i + s) % n for s in range(-(k // 2), k // 2 + 1) if s} for i in range(n)]


def _connected(nodes: set[int], nbrs: list[set[int]]) -> bool:
    if not nodes:
        return True
    start = next(iter(nodes))
    seen, stack = {start}, [start]
    while stack:
        for v in nbrs[stack.pop()] & nodes:
            if v not in seen:
                seen.add(v)
                stack.append(v)
    return seen == nodes


@pytest.mark.parametrize(("n", "k", "corrupted", "dropout"), [(10, 4, 2, 0.3), (11, 4, 0, 0.2), (12, 6, 3, 0.25)])
def test_disconnection_bound_dominates_exact_enumeration(n: int, k: int, corrupted: int, dropout: float) -> None:
    """Exact P[remaining clients disconnected] over all removed sets, vs the union bound."""
    nbrs = _harary_neighbours(n, k)
    exact = 0.0
    for size in range(n + 1):
        for removed in itertools.combinations(range(n), size):
            if size < corrupted or _connected(set(range(n)) - set(removed), nbrs):
                continue
            # P[removed set = B]: the corrupted g-set lies in B, every other client of B dropped, the rest stayed.
            exact += (
                math.comb(size, corrupted)
                / math.comb(n, corrupted)
                * dropout ** (size - corrupted)
                * (1 - dropout) ** (n - size)
            )
    bound = harary_disconnection_bound(n, k, corrupted, dropout)
    assert exact > 0
    assert exact <= bound <= 25 * exact  # sound, and a union bound not far above the truth


def test_disconnection_needs_two_runs_of_half_k() -> None:
    """The structural fact behind the bound: every separating set holds two disjoint runs of k/2."""
    n, k = 11, 4
    nbrs = _harary_neighbours(n, k)
    for size in range(n + 1):
        for removed in itertools.combinations(range(n), size):
            rest = set(range(n)) - set(removed)
            if _connected(rest, nbrs):
                continue
            runs = [i for i in range(n) if all((i + j) % n in removed for j in range(k // 2))]
            assert any((b - a) % n >= k // 2 + 1 and (a - b) % n >= k // 2 + 1 for a in runs for b in runs)


def test_complete_graph_abort_is_exact() -> None:
    """Enumerate who answers the last stage: abort iff some client has fewer than t answering others."""
    n, t, p = 8, 5, 0.3
    exact = 0.0
    for mask in range(1 << n):
        alive = {i for i in range(n) if mask >> i & 1}
        if any(len(alive - {u}) < t for u in range(n)):
            exact += p ** (n - len(alive)) * (1 - p) ** len(alive)
    assert complete_abort_probability(n, t, p) == pytest.approx(exact, rel=1e-12)
    assert abort_probability(n, n - 1, t, dropout=p) == complete_abort_probability(n, t, p)


def test_sparse_abort_bound_dominates_monte_carlo() -> None:
    n, k, t, p, trials = 40, 8, 5, 0.2, 4000
    rng = random.Random(7)
    nbrs = _harary_neighbours(n, k)
    aborts = 0
    for _ in range(trials):
        alive = {i for i in range(n) if rng.random() >= p}
        aborts += any(len(nbrs[u] & alive) < t for u in range(n))
    estimate = aborts / trials
    bound = sparse_abort_bound(n, k, t, p)
    assert 0.05 < estimate <= bound + 3 * math.sqrt(estimate * (1 - estimate) / trials)


def test_abort_bound_rises_with_dropout_and_threshold() -> None:
    values = [sparse_abort_bound(200, 20, 11, p) for p in (0.05, 0.1, 0.2, 0.3)]
    assert values == sorted(values) and values[0] < values[-1]
    by_t = [sparse_abort_bound(200, 20, t, 0.2) for t in range(11, 21)]
    assert by_t == sorted(by_t)


def test_security_failure_falls_with_threshold_and_rises_with_corruption() -> None:
    by_t = [security_failure_probability(500, 40, t, corruption=0.1) for t in range(21, 41)]
    assert by_t == sorted(by_t, reverse=True) and by_t[0] > by_t[-1]
    by_g = [security_failure_probability(500, 40, 28, corruption=g) for g in (0.0, 0.05, 0.1, 0.2)]
    assert by_g == sorted(by_g)


@pytest.mark.parametrize("n", [30, 100, 1000])
def test_choice_is_monotone_and_meets_both_targets(n: int) -> None:
    previous = 0
    for dropout in (0.0, 0.1, 0.2, 0.3):
        params = choose_parameters(n, dropout=dropout, corruption=0.05)
        check_secure(n, params.num_neighbours, params.threshold, corruption=0.05, dropout=dropout)
        assert params.log2_security_failure <= -40
        assert params.meets_abort_target == (params.abort_probability <= 1e-6)
        assert params.meets_abort_target or params.complete_graph
        assert params.num_neighbours >= previous
        previous = params.num_neighbours
    ks = [choose_parameters(n, dropout=0.1, corruption=g).num_neighbours for g in (0.0, 0.05, 0.1)]
    assert ks == sorted(ks)


def test_chosen_k_is_the_smallest_that_works() -> None:
    n, p, g = 1000, 0.2, 0.05
    params = choose_parameters(n, dropout=p, corruption=g)
    k = params.num_neighbours - 2
    for t in range(k // 2 + 1, k + 1):
        secure = security_failure_probability(n, k, t, corruption=g, dropout=p) <= 2.0**-40
        assert not (secure and sparse_abort_bound(n, k, t, p) <= 1e-6)


def test_small_n_falls_back_to_the_complete_graph() -> None:
    params = choose_parameters(10, dropout=0.2, corruption=0.0)
    assert params.complete_graph and params.num_neighbours == 9 and params.threshold == 5
    assert not params.meets_abort_target  # 10 clients cannot reach 1e-6 at 20% dropout
    assert params.abort_probability == pytest.approx(complete_abort_probability(10, 5, 0.2))
    assert params.key_agreements == 18 and params.mask_expansions == 10


@pytest.mark.parametrize(("n", "k", "t"), [(3, 1, 1), (5, 2, 1), (8, 4, 2), (8, 9, 5), (7, 3, 2), (2, 1, 1)])
def test_floor_refuses_degenerate_settings(n: int, k: int, t: int) -> None:
    with pytest.raises(ConfigError):
        check_structure(n, k, t)
    with pytest.raises(ConfigError):
        check_secure(n, k, t, corruption=0.0)


def test_insecure_setting_names_what_would_be_allowed() -> None:
    with pytest.raises(ConfigError, match=r"t >= \d+ is secure for k = 20") as info:
        check_secure(1000, 20, 11, corruption=0.05)
    assert "2^-40" in str(info.value)
    with pytest.raises(ConfigError, match="no threshold is secure for k = 4"):
        check_secure(1000, 4, 3, corruption=0.0, dropout=0.3)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"dropout": 1.0}, "dropout"),
        ({"dropout": -0.1}, "dropout"),
        ({"dropout": float("nan")}, "dropout"),
        ({"dropout": True}, "dropout"),
        ({"corruption": 1.5}, "corruption"),
        ({"abort_target": 0.0}, "abort_target"),
        ({"security_bits": 0}, "security_bits"),
    ],
)
def test_bad_arguments_are_named(kwargs: dict, name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        choose_parameters(100, **{"dropout": 0.1, "corruption": 0.0, **kwargs})


def test_too_much_corruption_is_refused() -> None:
    with pytest.raises(ConfigError, match="even the complete graph fails"):
        choose_parameters(10, dropout=0.0, corruption=0.9)
