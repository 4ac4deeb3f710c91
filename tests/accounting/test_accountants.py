"""RdpAccountant and PldAccountant: composition, soundness against PLD, tightness against
Opacus and dp_accounting, monotonicity, unsupported events and grid-edge warnings."""

import subprocess
import sys
import warnings

import dp_accounting
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opacus.accountants import RDPAccountant as OpacusRdp

from privfl.accounting import (
    ComposedEvent,
    FixedSizeSampledEvent,
    GaussianEvent,
    OrderGridWarning,
    PoissonSampledEvent,
    RdpAccountant,
    make_accountant,
)
from privfl.accounting.gaussian import gaussian_epsilon
from privfl.accounting.pld import PldAccountant
from privfl.errors import AccountingError, ConfigError


def sgm(q, z):
    return PoissonSampledEvent(q, GaussianEvent(z))


def _opacus_eps(runs, delta):
    acc = OpacusRdp()
    acc.history = [(z, q, steps) for q, z, steps in runs]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Opacus warns when its grid (<= 63) is too small
        return acc.get_epsilon(delta)


def _google(accountant, runs, delta):
    for q, z, steps in runs:
        accountant.compose(dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(z)), steps)
    return accountant.get_epsilon(delta)


def _ours(runs, delta, name="rdp"):
    acc = make_accountant(name)
    for q, z, steps in runs:
        acc.compose(sgm(q, z), steps)
    return acc.get_epsilon(delta)


# Each problem: a list of (q, z, steps) runs composed in sequence.
PROBLEMS = [
    [(0.01, 1.0, 10_000)],  # dense cross-silo
    [(1e-3, 1.0, 10_000)],  # cross-device
    [(1e-4, 3.0, 100)],  # few steps, big noise: best order above Opacus' 63
    [(0.1, 5.0, 10)],
    [(1.0, 0.5, 100)],  # no sampling, low noise: best order near 1
    [(0.05, 0.6, 300)],
    [(0.01, 1.0, 500), (0.02, 1.5, 300), (1e-3, 0.8, 2000)],  # heterogeneous
]


@pytest.mark.parametrize("runs", PROBLEMS)
def test_sound_against_pld_and_tight_against_rdp_libraries(runs):
    delta = 1e-5
    ours = _ours(runs, delta)
    pld = _google(dp_accounting.pld.PLDAccountant(), runs, delta)
    opacus = _opacus_eps(runs, delta)
    google_rdp = _google(dp_accounting.rdp.RdpAccountant(), runs, delta)
    if all(q == 1.0 for q, _, _ in runs):
        # Un-subsampled Gaussians compose into one Gaussian whose epsilon is exact (Dong, Roth &
        # Su 2019); dp_accounting's pessimistic PLD sits above it by its discretisation only.
        z = sum(steps / z**2 for _, z, steps in runs) ** -0.5
        assert ours == pytest.approx(gaussian_epsilon(z, delta), rel=1e-12)
        assert pld * (1 - 1e-5) <= ours <= pld
    else:
        assert ours >= pld
    assert ours <= min(opacus, google_rdp) * (1 + 1e-9)


def test_pld_backend_matches_dp_accounting_and_is_below_rdp():
    runs = [(0.01, 1.0, 1000), (1e-3, 0.8, 500)]
    ours = _ours(runs, 1e-5, "pld")
    assert ours == pytest.approx(_google(dp_accounting.pld.PLDAccountant(), runs, 1e-5), rel=1e-12)
    assert ours < _ours(runs, 1e-5, "rdp")
    pld = make_accountant("pld").compose(sgm(0.01, 1.0), 1000)
    assert pld.get_delta(pld.get_epsilon(1e-5)) <= 1e-5 * (1 + 1e-6)


def test_epsilon_grows_with_rounds_and_shrinks_with_noise():
    by_rounds = [_ours([(0.01, 1.0, t)], 1e-5) for t in (1, 10, 100, 1000, 10_000, 100_000)]
    assert np.all(np.diff(by_rounds) > 0)
    by_noise = [_ours([(0.01, z, 1000)], 1e-5) for z in (0.5, 0.8, 1.0, 2.0, 5.0, 20.0)]
    assert np.all(np.diff(by_noise) < 0)


def test_heterogeneous_composition_adds_curves_in_any_order():
    a, b = sgm(0.01, 1.0), sgm(0.2, 3.0)
    one = RdpAccountant().compose(a, 7).compose(b, 3)
    other = RdpAccountant().compose(b).compose(ComposedEvent(a, 7)).compose(b, 2)
    np.testing.assert_allclose(one.rdp, other.rdp, rtol=1e-14)
    np.testing.assert_allclose(one.rdp, 7 * one.event_rdp(a) + 3 * one.event_rdp(b), rtol=1e-14)
    assert RdpAccountant().compose(GaussianEvent(2.0)).get_epsilon(1e-5) > 0


def test_delta_inverts_epsilon():
    acc = RdpAccountant().compose(sgm(0.01, 1.0), 2000)
    eps = acc.get_epsilon(1e-6)
    assert acc.get_delta(eps) == pytest.approx(1e-6, rel=1e-9)


def test_empty_accountant_spends_nothing():
    acc = RdpAccountant()
    assert acc.get_epsilon_and_order(1e-5)[0] == 0.0
    assert acc.get_delta(0.1) == 0.0


@pytest.mark.parametrize("name", ["rdp", "pld"])
def test_fixed_size_sampling_is_refused_without_changing_state(name):
    acc = make_accountant(name).compose(sgm(0.01, 1.0), 10)
    before = acc.get_epsilon(1e-5)
    fixed = FixedSizeSampledEvent(10, 1000, GaussianEvent(1.0))
    assert acc.supports(sgm(0.01, 1.0))
    assert not acc.supports(fixed)
    assert not acc.supports(ComposedEvent(fixed, 3))
    with pytest.raises(AccountingError, match=r"replace-one.*2C"):
        acc.compose(ComposedEvent(fixed, 3))
    assert acc.get_epsilon(1e-5) == before


def test_poisson_sampling_of_a_composition_is_refused():
    event = PoissonSampledEvent(0.1, ComposedEvent(GaussianEvent(1.0), 2))
    acc = RdpAccountant()
    assert not acc.supports(event)
    with pytest.raises(AccountingError, match="only a Gaussian event can be Poisson-sampled"):
        acc.compose(event)
    assert not acc.rdp.any()


@pytest.mark.parametrize("count", [0, -1, 1.5, True])
def test_bad_count(count):
    with pytest.raises(ConfigError, match="count"):
        RdpAccountant().compose(GaussianEvent(1.0), count)


def test_warns_when_best_order_is_at_the_grid_edge():
    small_grid = RdpAccountant(orders=[2.0, 3.0, 4.0]).compose(sgm(0.01, 10.0), 10)
    with pytest.warns(OrderGridWarning, match="edge of the grid"):
        small_grid.get_epsilon(1e-5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        RdpAccountant().compose(sgm(0.01, 10.0), 10).get_epsilon(1e-5)  # default grid reaches far enough


def test_unknown_accountant_name():
    with pytest.raises(ConfigError, match="'moments'"):
        make_accountant("moments")


def test_pld_without_dp_accounting_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "dp_accounting", None)
    monkeypatch.setitem(sys.modules, "dp_accounting.pld", None)
    monkeypatch.setitem(sys.modules, "dp_accounting.pld.privacy_loss_distribution", None)
    with pytest.raises(AccountingError, match="pip install dp-accounting"):
        PldAccountant()


@settings(max_examples=40, deadline=None)
@given(
    q=st.floats(min_value=1e-5, max_value=1.0),
    z=st.floats(min_value=0.5, max_value=20.0),
    steps=st.integers(min_value=1, max_value=100_000),
    delta=st.sampled_from([1e-3, 1e-5, 1e-8]),
)
def test_never_looser_than_opacus_or_dp_accounting_rdp(q, z, steps, delta):
    runs = [(q, z, steps)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # extreme draws put the best order at a grid edge
        ours = _ours(runs, delta)
        reference = min(_opacus_eps(runs, delta), _google(dp_accounting.rdp.RdpAccountant(), runs, delta))
    assert ours <= reference * (1 + 1e-9)


def test_importing_privfl_accounting_does_not_import_dp_accounting():
    code = "import sys, privfl.accounting; sys.exit('dp_accounting' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
