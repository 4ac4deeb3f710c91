"""RDP -> (epsilon, delta) conversion (Balle et al. 2020, Thm 21) and its inverse."""

import math

import numpy as np
import pytest
from dp_accounting.rdp import rdp_privacy_accountant as dpa_rdp

from privfl.accounting.conversion import delta_from_rdp, epsilon_from_rdp
from privfl.accounting.rdp import DEFAULT_ORDERS, rdp_poisson_subsampled_gaussian
from privfl.errors import ConfigError

ORDERS = DEFAULT_ORDERS[DEFAULT_ORDERS > 1.01]  # dp_accounting skips orders <= 1.01


def _curve(q, z, steps):
    return steps * rdp_poisson_subsampled_gaussian(q=q, noise_multiplier=z, orders=ORDERS)


@pytest.mark.parametrize(
    ("q", "z", "steps", "delta"), [(0.01, 1.0, 10_000, 1e-5), (1e-3, 0.8, 1000, 1e-6), (1.0, 3.0, 5, 1e-3)]
)
def test_matches_dp_accounting_conversion_on_same_curve(q, z, steps, delta):
    rdp = _curve(q, z, steps)
    eps, order = epsilon_from_rdp(orders=ORDERS, rdp=rdp, delta=delta)
    ref_eps, ref_order = dpa_rdp.compute_epsilon(ORDERS, rdp, delta)
    assert eps == pytest.approx(ref_eps, rel=1e-12)
    assert order == ref_order
    i = list(ORDERS).index(order)
    a = ORDERS[i]
    assert eps == pytest.approx(rdp[i] + math.log((a - 1) / a) - (math.log(delta) + math.log(a)) / (a - 1))
    ref_delta, _ = dpa_rdp.compute_delta(ORDERS, rdp, eps)
    assert delta_from_rdp(orders=ORDERS, rdp=rdp, epsilon=eps)[0] == pytest.approx(ref_delta, rel=1e-9)


def test_never_looser_than_the_classic_bound():
    rdp = _curve(0.01, 1.0, 1000)
    eps, _ = epsilon_from_rdp(orders=ORDERS, rdp=rdp, delta=1e-5)
    classic = np.min(rdp + math.log(1 / 1e-5) / (ORDERS - 1))  # Mironov 2017, Prop. 3
    assert 0 < eps < classic


@pytest.mark.parametrize("delta", [1e-3, 1e-5, 1e-8])
def test_delta_is_the_inverse_of_epsilon(delta):
    rdp = _curve(0.02, 1.1, 500)
    eps, _ = epsilon_from_rdp(orders=ORDERS, rdp=rdp, delta=delta)
    back, _ = delta_from_rdp(orders=ORDERS, rdp=rdp, epsilon=eps)
    assert back == pytest.approx(delta, rel=1e-9)
    assert delta_from_rdp(orders=ORDERS, rdp=rdp, epsilon=eps * 1.01)[0] < delta


def test_tiny_divergence_gives_zero_epsilon_by_total_variation():
    rdp = np.full(ORDERS.shape, 1e-14)  # TV <= sqrt(1 - exp(-1e-14)) = 1e-7 < delta
    assert epsilon_from_rdp(orders=ORDERS, rdp=rdp, delta=1e-5)[0] == 0.0
    assert delta_from_rdp(orders=ORDERS, rdp=rdp, epsilon=0.5)[0] <= 1e-7


def test_infinite_curve_gives_infinite_epsilon_and_delta_one():
    rdp = np.full(ORDERS.shape, np.inf)
    assert epsilon_from_rdp(orders=ORDERS, rdp=rdp, delta=1e-5)[0] == math.inf
    assert delta_from_rdp(orders=ORDERS, rdp=rdp, epsilon=1.0)[0] == 1.0


@pytest.mark.parametrize("delta", [0.0, 1.0, 1.5, -1e-5, float("nan")])
def test_bad_delta(delta):
    with pytest.raises(ConfigError, match=r"delta must be in \(0, 1\), got"):
        epsilon_from_rdp(orders=[2.0], rdp=[0.1], delta=delta)


@pytest.mark.parametrize(
    ("orders", "rdp", "message"),
    [([2.0, 3.0], [0.1], "shape"), ([2.0], [-0.1], "negative"), ([2.0], [float("nan")], "NaN"), ([0.5], [0.1], "> 1")],
)
def test_bad_curves(orders, rdp, message):
    with pytest.raises(ConfigError, match=message):
        epsilon_from_rdp(orders=orders, rdp=rdp, delta=1e-5)


@pytest.mark.parametrize("epsilon", [0.0, -1.0, float("inf")])
def test_bad_epsilon(epsilon):
    with pytest.raises(ConfigError, match="epsilon must be"):
        delta_from_rdp(orders=[2.0], rdp=[0.1], epsilon=epsilon)
