"""DP audits: the real mechanisms pass, every planted bug fails."""

from __future__ import annotations

import dataclasses
from functools import partial

import pytest

from privfl.accounting import GaussianEvent, RdpAccountant
from privfl.accounting.gaussian import gaussian_epsilon
from privfl.audit.config import QUICK
from privfl.audit.dp import (
    CentralDpRelease,
    CentralNoiseRelease,
    CentralRound,
    DpSgdRelease,
    LocalDpRelease,
    run_distinguishing,
)
from privfl.audit.dp_checks import (
    CLIP_NORM,
    LOCAL_EPSILON,
    NOISE_MULTIPLIER,
    TIGHTNESS_TARGET,
    planted_checks,
    secagg_dp_checks,
)
from privfl.audit.planted import Bug, broken_central_dp, broken_local_dp
from privfl.audit.report import Status
from privfl.dp import CentralDp, LocalDpMod, gaussian_delta

DELTA = 1e-5


def gaussian_epsilon_rdp(noise_multiplier: float) -> float:
    """The RDP accountant's epsilon of one Gaussian release (q = 1)."""
    return RdpAccountant().compose(GaussianEvent(noise_multiplier)).get_epsilon(DELTA)


TRIALS = 3000
SETUP = CentralRound(clip_norm=CLIP_NORM)


@pytest.fixture(scope="module")
def central_claim() -> float:
    probe = CentralDp.with_server_clipping(noise_multiplier=NOISE_MULTIPLIER, clip_norm=CLIP_NORM, delta=DELTA)
    return SETUP.run(probe, canary=True).metrics["dp_epsilon"]


def _central(bug: Bug | None, claim: float) -> CentralDpRelease:
    if bug is None:
        make = partial(CentralDp.with_server_clipping, noise_multiplier=NOISE_MULTIPLIER, clip_norm=CLIP_NORM)
    else:
        make = partial(broken_central_dp, bug, clip_norm=CLIP_NORM, noise_multiplier=NOISE_MULTIPLIER, n=10)
    return CentralDpRelease(make, f"CentralDp {bug}", SETUP, claim, DELTA)


def _local(bug: Bug | None) -> LocalDpRelease:
    if bug is None:
        mod = LocalDpMod(clip_norm=CLIP_NORM, epsilon=LOCAL_EPSILON, delta=DELTA)
    else:
        mod = broken_local_dp(bug, clip_norm=CLIP_NORM, epsilon=LOCAL_EPSILON, delta=DELTA, n=10)
    return LocalDpRelease(mod, f"LocalDpMod {bug}", CLIP_NORM, LOCAL_EPSILON, DELTA)


def test_the_canary_is_clipped_to_the_clip_norm_and_the_known_clients_are_removed():
    aggregate = SETUP.run(CentralDp.with_server_clipping(noise_multiplier=1e-9, clip_norm=CLIP_NORM), canary=True)
    assert SETUP.score(aggregate.update_sum["w"]) == pytest.approx(CLIP_NORM, abs=1e-6)
    aggregate = SETUP.run(CentralDp.with_server_clipping(noise_multiplier=1e-9, clip_norm=CLIP_NORM), canary=False)
    assert SETUP.score(aggregate.update_sum["w"]) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.slow  # the central mechanism stays in the default run through its planted-bug audits
def test_real_central_dp_release_passes(central_claim):
    run = run_distinguishing(_central(None, central_claim), TRIALS)
    assert not run.violated
    assert 0.0 < run.bound.epsilon < central_claim


def test_real_local_dp_release_passes():
    run = run_distinguishing(_local(None), TRIALS)
    assert not run.violated
    assert 0.0 < run.bound.epsilon < LOCAL_EPSILON


@pytest.mark.parametrize("bug", list(Bug))
def test_planted_bugs_in_central_dp_fail_the_audit(bug, central_claim):
    run = run_distinguishing(_central(bug, central_claim), TRIALS)
    assert run.violated and run.bound.epsilon > central_claim


@pytest.mark.parametrize("bug", list(Bug))
def test_planted_bugs_in_local_dp_fail_the_audit(bug):
    run = run_distinguishing(_local(bug), TRIALS)
    assert run.violated and run.bound.epsilon > LOCAL_EPSILON


def test_broken_variants_keep_claiming_the_honest_event():
    honest = LocalDpMod(clip_norm=CLIP_NORM, epsilon=LOCAL_EPSILON, delta=DELTA)
    broken = broken_local_dp(Bug.NOISE_MISSING, clip_norm=CLIP_NORM, epsilon=LOCAL_EPSILON, delta=DELTA, n=5)
    assert broken.noise_std == 0.0 and broken.event == honest.event


def test_bulk_mechanism_audit_reaches_half_the_accountant_epsilon(central_claim):
    probe = CentralDp.with_server_clipping(noise_multiplier=NOISE_MULTIPLIER, clip_norm=CLIP_NORM)
    release = CentralNoiseRelease(probe.inner, NOISE_MULTIPLIER * CLIP_NORM, "bulk", SETUP, central_claim, DELTA)
    run = run_distinguishing(release, 1_000_000)
    assert not run.violated
    assert run.ratio >= TIGHTNESS_TARGET


def test_gaussian_epsilon_inverts_the_exact_privacy_profile():
    eps = gaussian_epsilon(1.0, DELTA)
    assert gaussian_delta(1.0, eps) == pytest.approx(DELTA, rel=1e-6)
    assert gaussian_epsilon(1000.0, 0.4) == 0.0


@pytest.mark.slow
def test_planted_checks_all_catch_their_bug_at_quick_settings():
    checks = planted_checks(QUICK)
    assert len(checks) == 2 * len(Bug)
    assert all(c.status is Status.PASS for c in checks)


@pytest.mark.slow
def test_central_dp_over_secagg_passes_with_client_clipping():
    real, _ = secagg_dp_checks(dataclasses.replace(QUICK, dp_secagg_trials=200), None)
    assert real.status is Status.PASS, real


@pytest.mark.slow
def test_central_dp_over_secagg_without_client_clipping_is_caught():
    _, planted = secagg_dp_checks(QUICK, None)
    assert planted.status is Status.PASS, planted


@pytest.mark.slow
@pytest.mark.parametrize(("noise_multiplier", "violated"), [(2.0, False), (0.05, True)])
def test_dp_sgd_audit_passes_the_real_step_and_catches_too_little_noise(noise_multiplier, violated):
    import opacus  # noqa: F401

    from privfl.integrations.opacus import DpSgdSettings

    # The claim of z = 2 (epsilon about 2.2), small enough for 600 trials to refute.
    honest = DpSgdRelease(
        DpSgdSettings(noise_multiplier=2.0, max_grad_norm=CLIP_NORM, batch_size=8, lr=1.0), "", 0.0, DELTA
    )
    claim = honest.ledger_epsilon()
    assert claim == pytest.approx(gaussian_epsilon_rdp(2.0))
    audited = DpSgdRelease(
        DpSgdSettings(noise_multiplier=noise_multiplier, max_grad_norm=CLIP_NORM, batch_size=8, lr=1.0),
        "",
        claim,
        DELTA,
    )
    run = run_distinguishing(audited, 600)
    assert run.violated is violated


def test_the_suites_abort_checks_pass_and_catch_their_planted_aborts():
    """The abort-channel checks exactly as `privfl audit --quick` runs them (real and planted)."""
    from privfl.audit.config import QUICK
    from privfl.audit.dp_checks import abort_checks
    from privfl.audit.report import Status

    checks = abort_checks(QUICK)
    assert len(checks) == 4 and sum(c.family == "DP planted bug" for c in checks) == 2
    assert [c.status for c in checks] == [Status.PASS] * 4, [(c.name, c.status, c.figures) for c in checks]
