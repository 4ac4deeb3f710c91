"""Distributed-DP accounting: the papers' RDP formulas, subsampling, events in the ledger."""

from __future__ import annotations

import math

import numpy as np
import pytest

from privfl.accounting import (
    DistributedDiscreteGaussianEvent,
    PoissonSampledEvent,
    PrivacyBudget,
    PrivacyLedger,
    RdpAccountant,
    SkellamEvent,
    event_from_dict,
    rdp_distributed_discrete_gaussian,
    rdp_poisson_subsampled,
    rdp_poisson_subsampled_gaussian,
    rdp_skellam,
    rounded_l2_norm_bound,
)
from privfl.accounting.accountant import unsupported_reason
from privfl.errors import AccountingError, BudgetExceededError

ORDERS = np.arange(2, 65, dtype=np.float64)


def _reference_ddg(alpha: int, l2: float, l1: float, sigma_sq: float, n: int, d: int) -> float:
    """KLS21 Prop. 14 / Eq. 17 with Thm 1's tau, scalar, written out term by term."""
    tau = 10 * sum(math.exp(-2 * math.pi**2 * sigma_sq * k / (k + 1)) for k in range(1, n))
    s = math.sqrt(n * sigma_sq)
    a2, a1 = l2 / s, l1 / s
    return min(
        alpha / 2 * a2**2 + tau * d,
        alpha / 2 * (a2**2 + 2 * a1 * tau + tau**2 * d),
        alpha / 2 * (a2 + math.sqrt(d) * tau) ** 2,
    )


def _reference_subsampled(alpha: int, q: float, eps) -> float:
    """ZW19 Thm 5, scalar loop over l, then the minimum with the unsampled value."""
    total = (1 - q) ** (alpha - 1) * (alpha * q - q + 1)
    total += math.comb(alpha, 2) * q**2 * (1 - q) ** (alpha - 2) * math.exp(eps(2))
    for ell in range(3, alpha + 1):
        total += 3 * math.comb(alpha, ell) * (1 - q) ** (alpha - ell) * q**ell * math.exp((ell - 1) * eps(ell))
    return min(math.log(total) / (alpha - 1), eps(alpha))


@pytest.mark.parametrize(
    ("l2", "sigma_sq", "n", "d"), [(30.0, 50.0, 100, 1024), (12.0, 0.3, 20, 64), (200.0, 900.0, 1000, 4096)]
)
def test_ddg_rdp_matches_the_papers_formula(l2: float, sigma_sq: float, n: int, d: int) -> None:
    l1 = l2 * min(math.sqrt(d), l2)
    got = rdp_distributed_discrete_gaussian(
        l2_sensitivity=l2, l1_sensitivity=l1, local_sigma_sq=sigma_sq, num_clients=n, dimension=d, orders=ORDERS
    )
    want = [_reference_ddg(int(a), l2, l1, sigma_sq, n, d) for a in ORDERS]
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_single_discrete_gaussian_has_the_gaussian_rdp() -> None:
    """CKS 2020: N_Z(0, sigma^2) is (Delta^2 / 2 sigma^2)-concentrated DP like N(0, sigma^2); n = 1 means tau = 0."""
    got = rdp_distributed_discrete_gaussian(
        l2_sensitivity=3.0, l1_sensitivity=9.0, local_sigma_sq=16.0, num_clients=1, dimension=8, orders=ORDERS
    )
    np.testing.assert_allclose(got, ORDERS * 9.0 / 32.0, rtol=1e-14)


def test_sum_of_discrete_gaussians_pays_the_tau_term() -> None:
    """At small sigma the sum is not a discrete Gaussian: the bound exceeds alpha D^2 / (2 n sigma^2)."""
    got = rdp_distributed_discrete_gaussian(
        l2_sensitivity=4.0, l1_sensitivity=16.0, local_sigma_sq=0.25, num_clients=50, dimension=256, orders=ORDERS
    )
    assert np.all(got > ORDERS * 16.0 / (2 * 50 * 0.25) * 1.01)


def test_skellam_rdp_matches_the_papers_formula_and_gaussian_limit() -> None:
    l2, l1, mu = 20.0, 400.0, 5000.0
    got = rdp_skellam(l2_sensitivity=l2, l1_sensitivity=l1, variance=mu, orders=ORDERS)
    # AKL21 Sec. 3: alpha D2^2 / 2mu + min(((2 alpha - 1) D2^2 + 6 D1) / 4mu^2, 3 D1 / 2mu).
    want = [a * l2**2 / (2 * mu) + min(((2 * a - 1) * l2**2 + 6 * l1) / (4 * mu**2), 3 * l1 / (2 * mu)) for a in ORDERS]
    np.testing.assert_allclose(got, want, rtol=1e-14)
    big = rdp_skellam(l2_sensitivity=l2, l1_sensitivity=l1, variance=1e9, orders=ORDERS)
    np.testing.assert_allclose(big, ORDERS * l2**2 / 2e9, rtol=1e-4)  # the Gaussian's RDP as mu grows


@pytest.mark.parametrize("q", [0.01, 0.1, 0.5])
def test_subsampling_matches_zhu_wang_theorem_5(q: float) -> None:
    def eps(alpha):
        return _reference_ddg(int(alpha), 25.0, 500.0, 40.0, 100, 1024)

    def curve(alphas):
        return np.array([eps(a) for a in alphas])

    got = rdp_poisson_subsampled(q=q, rdp=curve, orders=ORDERS)
    np.testing.assert_allclose(got, [_reference_subsampled(int(a), q, eps) for a in ORDERS], rtol=1e-9)


def test_subsampled_bound_is_sound_against_the_exact_sampled_gaussian() -> None:
    """For the Gaussian (DDG with huge sigma), ZW19's general bound is above MTZ19's exact value, and close."""
    z, q = 1.2, 0.05
    curve = lambda a: a / (2 * z * z)  # noqa: E731
    bound = rdp_poisson_subsampled(q=q, rdp=curve, orders=ORDERS)
    exact = rdp_poisson_subsampled_gaussian(q=q, noise_multiplier=z, orders=ORDERS)
    assert np.all(bound >= exact * (1 - 1e-9))
    assert np.all(bound[:20] <= 3 * exact[:20])


def test_fractional_orders_take_the_next_integer_bound() -> None:
    def curve(alphas):
        return alphas * 0.01

    got = rdp_poisson_subsampled(q=0.1, rdp=curve, orders=[2.5, 3.0])
    assert got[0] == got[1]


def test_rounding_inflation_bound() -> None:
    """KLS21 Sec. 4.1: beta = 0 gives c + sqrt(d); beta > 0 is smaller for large d."""
    assert rounded_l2_norm_bound(l2_norm=10.0, beta=0.0, dimension=100) == 20.0
    b = rounded_l2_norm_bound(l2_norm=10.0, beta=math.exp(-0.5), dimension=100)
    assert math.isclose(b, math.sqrt(100 + 25 + 1.0 * (10 + 5)))


def _ddg_event(n: int = 100) -> DistributedDiscreteGaussianEvent:
    return DistributedDiscreteGaussianEvent(
        l2_sensitivity=40.0, l1_sensitivity=1280.0, local_sigma_sq=30.0, num_clients=n, dimension=1024
    )


def test_events_round_trip_and_compose_in_the_rdp_accountant() -> None:
    events = [PoissonSampledEvent(0.1, _ddg_event()), PoissonSampledEvent(0.1, SkellamEvent(40.0, 1280.0, 3000.0))]
    for event in events:
        assert event_from_dict(event.to_dict()) == event
        eps = RdpAccountant().compose(event, 50).get_epsilon(1e-5)
        assert 0 < eps < RdpAccountant().compose(event, 100).get_epsilon(1e-5)


def test_fewer_noise_shares_cost_more() -> None:
    eps = [RdpAccountant().compose(PoissonSampledEvent(0.1, _ddg_event(n)), 60).get_epsilon(1e-5) for n in (100, 60)]
    assert eps[1] > eps[0]


def test_pld_refuses_distributed_events_and_the_ledger_checks_before_changing() -> None:
    assert unsupported_reason(_ddg_event(), "pld") is not None
    assert unsupported_reason(PoissonSampledEvent(0.1, _ddg_event()), "rdp") is None
    with pytest.raises(AccountingError):
        PrivacyLedger(accountant="pld").check(PoissonSampledEvent(0.1, _ddg_event()))
    ledger = PrivacyLedger(budget=PrivacyBudget(0.5, 1e-5))
    with pytest.raises(BudgetExceededError):
        ledger.check(PoissonSampledEvent(0.5, _ddg_event(5)))
    assert ledger.entries == ()
