"""Per-order RDP of the (subsampled) Gaussian against high-precision and library oracles."""

import warnings

import mpmath as mp
import numpy as np
import pytest
from dp_accounting.rdp import rdp_privacy_accountant as dpa_rdp
from opacus.accountants.analysis import rdp as opacus_rdp

from privfl.accounting.rdp import DEFAULT_ORDERS, rdp_gaussian, rdp_poisson_subsampled_gaussian
from privfl.errors import ConfigError


def _mp_rdp(q: float, z: float, alpha: float) -> float:
    """log(A_alpha) / (alpha - 1) at 60 digits, MTZ19 Sec. 3.3, independently of privfl's formulas.

    Integer alpha: the binomial sum. Fractional alpha: quadrature of
    E_{x~N(0,z^2)} (1 - q + q exp((2x - 1)/(2z^2)))^alpha, split where the mass sits.
    """
    with mp.workdps(60):
        q, z, a = mp.mpf(q), mp.mpf(z), mp.mpf(alpha)
        if float(alpha).is_integer():
            n = int(alpha)
            log_a = mp.log(
                mp.fsum(
                    mp.binomial(n, k) * (1 - q) ** (n - k) * q**k * mp.e ** ((k * k - k) / (2 * z * z))
                    for k in range(n + 1)
                )
            )
        else:

            def integrand(x):
                return mp.npdf(x, 0, z) * (1 - q + q * mp.e ** ((2 * x - 1) / (2 * z * z))) ** a

            cuts = sorted({-mp.inf, -4 * z, mp.mpf(0), mp.mpf(1), a, a + 4 * z, mp.inf})
            log_a = mp.log(mp.quad(integrand, cuts))
        return float(log_a / (a - 1))


# (q, z, alpha): small q, alpha near 1, low noise, fractional and integer orders.
ORACLE_CASES = [
    (0.01, 1.0, 1.01),
    (0.01, 1.0, 1.5),
    (0.01, 1.0, 4.1),
    (0.01, 1.0, 7.3),
    (0.01, 1.0, 2),
    (0.01, 1.0, 40),
    (1e-6, 1.0, 1.02),
    (1e-6, 0.8, 5.5),
    (1e-6, 1.0, 3),
    (1e-3, 5.0, 7.7),
    (0.5, 0.5, 1.05),
    (0.5, 0.5, 3.3),
    (0.1, 0.3, 1.3),
    (0.2, 20.0, 1.1),
    (0.9, 0.7, 1.7),
    (0.05, 2.0, 10.9),
    (1e-6, 30.0, 10.5),  # large noise: A - 1 ~ 1e-13
    (1e-3, 0.05, 1.5),  # very low noise: fine quadrature grid
]


@pytest.mark.parametrize(("q", "z", "alpha"), ORACLE_CASES)
def test_matches_mpmath_reference(q, z, alpha):
    ours = rdp_poisson_subsampled_gaussian(q=q, noise_multiplier=z, orders=[alpha])[0]
    assert ours == pytest.approx(_mp_rdp(q, z, alpha), rel=1e-6)


LIBRARY_CASES = [(0.01, 1.0), (1e-3, 0.8), (0.1, 2.0), (0.5, 0.7), (0.02, 5.0)]
INTEGER_ORDERS = [*range(2, 65), 128, 256, 512, 1024]


@pytest.mark.parametrize(("q", "z"), LIBRARY_CASES)
def test_integer_orders_match_opacus_and_dp_accounting(q, z):
    ours = rdp_poisson_subsampled_gaussian(q=q, noise_multiplier=z, orders=INTEGER_ORDERS)
    opacus = opacus_rdp.compute_rdp(q=q, noise_multiplier=z, steps=1, orders=INTEGER_ORDERS)
    google = dpa_rdp._compute_rdp_poisson_subsampled_gaussian(q, z, INTEGER_ORDERS)
    np.testing.assert_allclose(ours, opacus, rtol=1e-8)
    np.testing.assert_allclose(ours, google, rtol=1e-8)


def test_fractional_orders_never_above_dp_accounting():
    # dp_accounting sums the series by absolute value: an upper bound that is loose near 1
    # and infinite (order dropped) at low noise. Ours is exact, so never above it.
    orders = [1.1, 1.5, 2.5, 5.5]
    for q, z in [(0.01, 1.0), (0.5, 0.5), (0.1, 0.4)]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            google = dpa_rdp._compute_rdp_poisson_subsampled_gaussian(q, z, orders)
        ours = rdp_poisson_subsampled_gaussian(q=q, noise_multiplier=z, orders=orders)
        assert np.all(np.isfinite(ours))
        assert np.all(ours <= google * (1 + 1e-9))


def test_full_sampling_is_the_gaussian_mechanism():
    orders = np.array([1.5, 2.0, 32.0, 4096.0])
    np.testing.assert_allclose(rdp_gaussian(noise_multiplier=2.0, orders=orders), orders / 8.0)
    np.testing.assert_allclose(
        rdp_poisson_subsampled_gaussian(q=1.0, noise_multiplier=2.0, orders=orders), orders / 8.0
    )


@pytest.mark.parametrize(("q", "z"), [(1e-6, 0.3), (1e-6, 1.0), (1e-6, 50.0), (0.5, 0.1), (1e-3, 1.0)])
def test_finite_positive_and_nondecreasing_on_full_grid_after_1e5_steps(q, z):
    rdp = 1e5 * rdp_poisson_subsampled_gaussian(q=q, noise_multiplier=z, orders=DEFAULT_ORDERS)
    assert np.all(np.isfinite(rdp)) and np.all(rdp > 0)
    # Rényi divergence is non-decreasing in the order.
    assert np.all(np.diff(rdp) >= -1e-12 * rdp[1:])


def test_default_grid_is_dense_near_one_and_reaches_4096():
    assert DEFAULT_ORDERS[0] == pytest.approx(1.01)
    assert DEFAULT_ORDERS[-1] == 4096
    assert np.sum(DEFAULT_ORDERS < 2) >= 10
    assert {*range(2, 65), 128, 256, 512, 1024} <= set(DEFAULT_ORDERS.tolist())


def test_monotone_in_noise_and_sampling_rate():
    orders = DEFAULT_ORDERS
    base = rdp_poisson_subsampled_gaussian(q=0.01, noise_multiplier=1.0, orders=orders)
    assert np.all(rdp_poisson_subsampled_gaussian(q=0.01, noise_multiplier=1.2, orders=orders) < base)
    assert np.all(rdp_poisson_subsampled_gaussian(q=0.02, noise_multiplier=1.0, orders=orders) > base)


@pytest.mark.parametrize(
    ("kwargs", "bad"),
    [
        ({"q": 0.0, "noise_multiplier": 1.0, "orders": [2]}, "0.0"),
        ({"q": 1.5, "noise_multiplier": 1.0, "orders": [2]}, "1.5"),
        ({"q": 0.1, "noise_multiplier": 0.0, "orders": [2]}, "0.0"),
        ({"q": 0.1, "noise_multiplier": -1.0, "orders": [2]}, "-1.0"),
        ({"q": 0.1, "noise_multiplier": float("nan"), "orders": [2]}, "nan"),
        ({"q": 0.1, "noise_multiplier": 1.0, "orders": [1.0]}, "1.0"),
        ({"q": 0.1, "noise_multiplier": 1.0, "orders": []}, "non-empty"),
    ],
)
def test_bad_arguments_name_the_value(kwargs, bad):
    with pytest.raises(ConfigError, match=bad):
        rdp_poisson_subsampled_gaussian(**kwargs)


def test_tiny_noise_falls_back_to_a_sound_integer_order_bound():
    """Below the quadrature's reach, fractional orders take eps(ceil(alpha)) >= eps(alpha)."""
    orders = np.array([1.5, 2.25, 3.7, 10.5])
    exact = rdp_poisson_subsampled_gaussian(q=0.1, noise_multiplier=0.3, orders=orders)
    bound = rdp_poisson_subsampled_gaussian(q=0.1, noise_multiplier=0.3, orders=orders, max_grid_points=10)
    assert np.all(bound >= exact)
    np.testing.assert_allclose(
        bound, rdp_poisson_subsampled_gaussian(q=0.1, noise_multiplier=0.3, orders=np.ceil(orders)), rtol=1e-12
    )
    # A noise multiplier far below any useful value gives a finite, huge epsilon quickly (no giant grid).
    tiny = rdp_poisson_subsampled_gaussian(q=0.1, noise_multiplier=1e-6, orders=DEFAULT_ORDERS)
    assert np.all(np.isfinite(tiny)) and tiny.min() > 1e6
