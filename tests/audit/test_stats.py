"""Statistics behind the epsilon lower bounds."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from privfl.audit.stats import (
    clopper_pearson_upper,
    epsilon_from_rates,
    epsilon_lower_bound,
    error_counts,
    max_certifiable_epsilon,
)
from privfl.dp import gaussian_delta
from privfl.errors import ConfigError


def test_clopper_pearson_upper_matches_the_beta_quantile_and_the_closed_form_at_zero():
    k = np.array([0, 1, 7, 50, 99, 100])
    upper = clopper_pearson_upper(k, 100, 0.025)
    expected = np.where(k == 100, 1.0, stats.beta.ppf(0.975, k + 1, 100 - k))
    np.testing.assert_allclose(upper, expected, rtol=1e-10)
    assert upper[0] == pytest.approx(1 - 0.025 ** (1 / 100), rel=1e-10)  # (1 - p)^n = alpha at k = 0
    assert np.all(np.diff(upper) > 0)


def test_clopper_pearson_upper_covers_the_true_rate_as_often_as_promised():
    rng = np.random.default_rng(0)
    hits = rng.binomial(200, 0.03, size=20_000)
    coverage = np.mean(clopper_pearson_upper(hits, 200, 0.05) >= 0.03)
    assert 0.95 <= coverage < 0.99  # exact intervals are conservative, not wildly so


def test_epsilon_from_rates_inverts_the_dp_constraint():
    # FPR + e^eps FNR >= 1 - delta is tight at eps = log((1 - delta - FPR) / FNR).
    assert epsilon_from_rates(0.1, 0.1, 0.0) == pytest.approx(math.log(9))
    assert epsilon_from_rates(0.01, 0.5, 1e-5) == pytest.approx(math.log((1 - 1e-5 - 0.5) / 0.01))
    assert epsilon_from_rates(0.5, 0.5, 0.0) == 0.0
    assert epsilon_from_rates(0.9, 0.9, 0.0) == 0.0  # worse than guessing proves nothing
    assert epsilon_from_rates(0.0, 0.0, 0.0) == math.inf


def test_error_counts_use_strict_threshold_for_positives():
    negatives = np.array([0.0, 1.0, 2.0])
    positives = np.array([1.0, 2.0, 3.0])
    fp, fn = error_counts(negatives, positives, np.array([-1.0, 1.0, 3.0]))
    np.testing.assert_array_equal(fp, [3, 1, 0])
    np.testing.assert_array_equal(fn, [0, 1, 3])


def test_a_perfect_test_reaches_exactly_the_certifiable_maximum():
    bound = epsilon_lower_bound(np.zeros(1000), np.ones(1000), delta=1e-5)
    assert bound.false_positives == bound.false_negatives == 0
    assert bound.epsilon == pytest.approx(max_certifiable_epsilon(1000, 1e-5))


def test_identical_hypotheses_give_no_evidence():
    rng = np.random.default_rng(1)
    bound = epsilon_lower_bound(rng.normal(size=20_000), rng.normal(size=20_000), delta=1e-5, rng=rng)
    assert bound.epsilon == 0.0


@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.0])
def test_the_bound_on_a_gaussian_is_sound_and_not_vacuous(sigma):
    rng = np.random.default_rng(2)
    bound = epsilon_lower_bound(rng.normal(0, sigma, 200_000), rng.normal(1, sigma, 200_000), delta=1e-5, rng=rng)
    exact = next(e for e in np.linspace(0, 20, 20_001) if gaussian_delta(sigma, e) <= 1e-5)
    assert 0.4 * exact < bound.epsilon < exact
    assert bound.epsilon <= bound.point_estimate


def test_bad_arguments_are_refused():
    with pytest.raises(ConfigError, match="confidence"):
        epsilon_lower_bound([0, 1], [0, 1], delta=1e-5, confidence=1.0)
    with pytest.raises(ConfigError, match="at least 2"):
        epsilon_lower_bound([0], [0, 1], delta=1e-5)
    with pytest.raises(ConfigError, match="finite"):
        epsilon_lower_bound([0, np.nan], [0, 1], delta=1e-5)
    with pytest.raises(ConfigError, match="successes"):
        clopper_pearson_upper(5, 4, 0.05)
