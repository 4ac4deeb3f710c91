"""The DP audit family: central DP (bulk and end to end), local DP, and the planted bugs.

Setting audited: one release (q = 1) of :class:`privfl.dp.CentralDp` at clip norm 2 and
noise multiplier 1 (server-side clipping, in bulk and end to end; client-side clipping with
:class:`privfl.dp.FixedClippingMod`), the first release of :class:`privfl.dp.AdaptiveClippingDp`
(initial clip norm 2, total noise multiplier 1), central DP over SecAgg+, one release of
:class:`privfl.dp.LocalDpMod` at epsilon 3, and one DP-SGD step of the Opacus helper, all at the
settings' delta. The clip norm is not 1 so that noise calibrated to z instead of z*C would show.
The abort-channel audits (:mod:`privfl.audit.dp_abort`) run central DP through the real loop
on populations of 2 (plain) and 4 (SecAgg+, whose default parameters need 3) clients and check
that which rounds released reveals no more than the ledger charges.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from privfl.accounting.gaussian import gaussian_epsilon
from privfl.audit.config import AuditSettings
from privfl.audit.dp import (
    CentralDpRelease,
    CentralNoiseRelease,
    CentralRound,
    DistinguishingRun,
    DpSgdRelease,
    LocalDpRelease,
    Release,
    plot_run,
    run_distinguishing,
)
from privfl.audit.dp_abort import AbortAudit, audit_abort_channel
from privfl.audit.planted import (
    AbortingDp,
    Bug,
    UnclippedSecAggClient,
    UnmarkedDp,
    broken_central_dp,
    broken_local_dp,
)
from privfl.audit.report import Check, Status, not_run
from privfl.audit.stats import max_certifiable_epsilon
from privfl.core.context import Context
from privfl.core.exchange import Aggregator
from privfl.core.extras import install_hint, missing
from privfl.core.message import Message
from privfl.core.names import NUM_EXAMPLES
from privfl.dp import AdaptiveClippingDp, CentralDp, FixedClippingMod, LocalDpMod

FAMILY = "DP"
CLIP_NORM = 2.0
NOISE_MULTIPLIER = 1.0
LOCAL_EPSILON = 3.0
ADAPTIVE_COUNT_STD = 2.5
"""sigma_b of the audited AdaptiveClippingDp (large, so that most of the noise budget stays on the update)."""
TIGHTNESS_TARGET = 0.5
"""The mechanism-level bound must reach this fraction of the accountant's epsilon."""


def _figures(run: DistinguishingRun, trials: int, settings: AuditSettings) -> tuple[tuple[str, str], ...]:
    b = run.bound
    figures = [
        ("claimed epsilon", f"{run.claimed_epsilon:.3f} at delta {b.delta:g}"),
        (f"epsilon lower bound ({b.confidence:.0%} confidence)", f"{b.epsilon:.3f}"),
        ("ratio lower bound / claimed", f"{run.ratio:.2f}"),
        ("point estimate (no confidence interval)", f"{b.point_estimate:.3f}"),
        ("trials per hypothesis", f"{trials:,} (half choose the threshold, half evaluate it)"),
        (
            "false positives / negatives at threshold",
            f"{b.false_positives:,}/{b.negatives:,}, {b.false_negatives:,}/{b.positives:,}",
        ),
        ("Clopper-Pearson upper FPR, FNR", f"{b.fpr_upper:.6g}, {b.fnr_upper:.6g}"),
        ("largest bound these trials can certify", f"{max_certifiable_epsilon(trials, b.delta, b.confidence):.2f}"),
    ]
    if run.reference_epsilon is not None:
        figures.insert(1, ("exact epsilon of this Gaussian (Balle & Wang 2018)", f"{run.reference_epsilon:.3f}"))
    return tuple(figures)


def _verdict(run: DistinguishingRun) -> Status:
    return Status.FAIL if run.violated else Status.PASS


def _audit(
    release: Release, trials: int, settings: AuditSettings, out_dir: Path | None, plot: str, **kwargs: float
) -> tuple[DistinguishingRun, tuple[str, ...]]:
    run = run_distinguishing(release, trials, confidence=settings.confidence, seed=settings.seed, **kwargs)
    plots = (plot_run(run, out_dir / plot).name,) if out_dir is not None else ()
    return run, plots


def mechanism_checks(settings: AuditSettings, out_dir: Path | None) -> list[Check]:
    """The bulk mechanism-level audit of one :class:`CentralDp` release, and its tightness."""
    setup = CentralRound(clip_norm=CLIP_NORM, seed=settings.seed)
    probe = CentralDp.with_server_clipping(noise_multiplier=NOISE_MULTIPLIER, clip_norm=CLIP_NORM, delta=settings.delta)
    released = setup.run(probe, canary=True)
    claim = released.metrics["dp_epsilon"]
    std = released.metrics["dp_noise_std"]
    reference = gaussian_epsilon(NOISE_MULTIPLIER, settings.delta)
    bulk = CentralNoiseRelease(probe.inner, std, "CentralDp (bulk)", setup, claim, settings.delta)
    run, plots = _audit(
        bulk, settings.dp_bulk_trials, settings, out_dir, "dp_central_bulk.png", reference_epsilon=reference
    )
    calibration = f"{std:g} (expected z*C = {NOISE_MULTIPLIER * CLIP_NORM:g})"
    return [
        Check(
            FAMILY,
            "CentralDp (server clipping), one release: no epsilon violation, mechanism level",
            _verdict(run),
            f"{settings.dp_bulk_trials:,} releases per hypothesis of the aggregator's exact clipped sum "
            f"(its inner aggregator, {setup.others} known clients, with/without a canary clipped from "
            f"{setup.canary_scale:g}C to C) plus noise drawn in bulk from privfl.dp.noise.gaussian_noise at the "
            "std the wrapper reports; FAIL if the lower bound exceeds the accountant's epsilon.",
            (*_figures(run, settings.dp_bulk_trials, settings), ("noise std reported by CentralDp", calibration)),
            plots=plots,
        ),
        Check(
            FAMILY,
            f"CentralDp mechanism audit is tight: lower bound >= {TIGHTNESS_TARGET:g} x accountant epsilon",
            Status.PASS if run.ratio >= TIGHTNESS_TARGET else Status.FAIL,
            "A lower bound far below the claim means either a weak audit or more noise than claimed; "
            f"measured ratio {run.ratio:.2f} (accountant {claim:.3f}, exact Gaussian {reference:.3f}, "
            f"bound {run.bound.epsilon:.3f}).",
            (
                ("ratio to accountant epsilon", f"{run.ratio:.2f}"),
                ("ratio to exact Gaussian epsilon", f"{run.bound.epsilon / reference:.2f}"),
            ),
        ),
    ]


def end_to_end_check(
    label: str,
    make: Callable[..., Aggregator],
    setup: CentralRound,
    settings: AuditSettings,
    out_dir: Path | None,
    plot: str,
    how: str,
    trials: int,
) -> Check:
    """Audit one release of the aggregator ``make(delta=...)`` builds, a fresh one per trial, end to end.

    The claim and the noise std are what a probe release reports (``dp_epsilon``, ``dp_noise_std``).
    """
    probe = setup.run(make(delta=settings.delta), canary=True).metrics
    claim, std = probe["dp_epsilon"], probe["dp_noise_std"]
    release = CentralDpRelease(make, label, setup, claim, settings.delta)
    run, plots = _audit(
        release,
        trials,
        settings,
        out_dir,
        plot,
        reference_epsilon=gaussian_epsilon(std / setup.clip_norm, settings.delta),
    )
    spread = float(np.std(run.negatives, ddof=1))
    return Check(
        FAMILY,
        f"{label}, one release: no epsilon violation, end to end",
        _verdict(run),
        f"{trials:,} full aggregation rounds per hypothesis ({how}; each its own noise draw "
        f"and ledger entry), {setup.others} known clients, with/without a canary whose update is clipped from "
        f"{setup.canary_scale:g}C to C.",
        (
            *_figures(run, trials, settings),
            ("empirical noise std / reported std", f"{spread:.4g} / {std:.4g} = {spread / std:.3f}"),
        ),
        plots=plots,
    )


def end_to_end_checks(settings: AuditSettings, out_dir: Path | None) -> list[Check]:
    """Central DP end to end: server clipping, client clipping (FixedClippingMod), adaptive clipping."""
    server = CentralRound(clip_norm=CLIP_NORM, seed=settings.seed)
    clients = CentralRound(clip_norm=CLIP_NORM, seed=settings.seed, client_mods=(FixedClippingMod(CLIP_NORM),))
    z, c = NOISE_MULTIPLIER, CLIP_NORM
    return [
        end_to_end_check(
            "CentralDp (server clipping)",
            partial(CentralDp.with_server_clipping, noise_multiplier=z, clip_norm=c),
            server,
            settings,
            out_dir,
            "dp_central_loop.png",
            "CentralDp.with_server_clipping: the server clips, sums and adds noise",
            settings.dp_loop_trials,
        ),
        end_to_end_check(
            "CentralDp (client clipping)",
            partial(CentralDp.with_server_clipping, noise_multiplier=z, clip_norm=c),
            clients,
            settings,
            out_dir,
            "dp_central_client_clipping.png",
            "every client runs FixedClippingMod, which checks the clip norm the round config announces; "
            "the server clips again (a no-op), sums and adds noise",
            settings.dp_loop_trials,
        ),
        end_to_end_check(
            "AdaptiveClippingDp",
            partial(AdaptiveClippingDp, noise_multiplier=z, initial_clip_norm=c, count_noise_std=ADAPTIVE_COUNT_STD),
            server,
            settings,
            out_dir,
            "dp_adaptive.png",
            f"first round of AdaptiveClippingDp, count noise std {ADAPTIVE_COUNT_STD:g}; the score ignores the "
            "released unclipped fraction, so the bound covers the update release only",
            settings.dp_loop_trials,
        ),
        *secagg_dp_checks(settings, out_dir),
    ]


def secagg_dp_checks(settings: AuditSettings, out_dir: Path | None) -> list[Check]:
    """Central DP over SecAgg+ (clients clip to the round config's norm, then mask), and clients ignoring it.

    SecAgg+ clips each coordinate to [-c, c], which bounds the L2 norm only by c sqrt(d):
    a client that ignores the server's clip norm is the planted bug. d = 1024 makes it show even
    though the noise covers 3C (SecAgg+'s client floor of 3 triples the sensitivity, see
    :mod:`privfl.dp.central`): the unclipped canary moves the sum by 32C, over ten noise stds.
    """
    label = "CentralDp over SecAgg+ (client clipping)"
    if importlib.util.find_spec("privfl.secagg") is None:
        return [not_run(FAMILY, f"{label}, one release", "NOT RUN (module missing: privfl.secagg)")]
    from privfl.secagg import SecAggConfig, SecAggMod, SecAggPlusAggregator

    # The per-coordinate SecAgg+ clip equals C, so it never shrinks an update already clipped to L2 norm C.
    config = SecAggConfig(coordinate_bound=CLIP_NORM, bits=16, weighting="uniform")
    make = partial(
        CentralDp,
        SecAggPlusAggregator(config, semi_honest=True),
        noise_multiplier=NOISE_MULTIPLIER,
        clip_norm=CLIP_NORM,
    )
    clipping = CentralRound(
        clip_norm=CLIP_NORM, dim=1024, seed=settings.seed, client_mods=(SecAggMod(semi_honest=True),)
    )
    real = end_to_end_check(
        label,
        make,
        clipping,
        settings,
        out_dir,
        "dp_secagg.png",
        "clients run SecAggMod, which clips to the round config's clip norm; a full SecAgg+ round, then "
        "CentralDp noises the sum",
        settings.dp_secagg_trials,
    )
    unclipped = dataclasses.replace(clipping, client_mods=(SecAggMod(semi_honest=True, _client=UnclippedSecAggClient),))
    planted = planted_check(
        CentralDpRelease(
            make,
            "CentralDp over SecAgg+, clients ignoring the round's clip norm",
            unclipped,
            _claim(make, clipping, settings),
            settings.delta,
        ),
        settings.dp_secagg_trials,
        settings,
        "clipping left to SecAgg+'s per-coordinate clip (L2 sensitivity up to C sqrt(1024) = 32C)",
    )
    return [real, planted]


def _claim(make: Callable[..., Aggregator], setup: CentralRound, settings: AuditSettings) -> float:
    """The epsilon one release of ``make(delta=...)`` reports (its ledger's accountant)."""
    return setup.run(make(delta=settings.delta), canary=True).metrics["dp_epsilon"]


def dp_sgd_check(settings: AuditSettings, out_dir: Path | None) -> Check:
    """Record-level DP of the Opacus path: one DP-SGD step with or without a gradient canary record."""
    name = "Opacus DP-SGD (fit_dp_sgd), one step"
    absent = missing(("torch", "opacus"))
    if absent:
        return not_run(FAMILY, name, f"NOT RUN (needs {', '.join(absent)}: {install_hint('torch')})")
    from privfl.integrations.opacus import DpSgdSettings

    dp_sgd = DpSgdSettings(noise_multiplier=NOISE_MULTIPLIER, max_grad_norm=CLIP_NORM, batch_size=8, lr=1.0)
    probe = DpSgdRelease(dp_sgd, name, 0.0, settings.delta)
    release = dataclasses.replace(probe, claimed_epsilon=probe.ledger_epsilon())
    run, plots = _audit(
        release,
        settings.dp_sgd_trials,
        settings,
        out_dir,
        "dp_sgd.png",
        reference_epsilon=gaussian_epsilon(NOISE_MULTIPLIER, settings.delta),
    )
    return Check(
        FAMILY,
        f"{name}: no record-level epsilon violation",
        _verdict(run),
        f"{settings.dp_sgd_trials:,} trainings per hypothesis of a linear model on {release.records} records, one "
        f"full-batch step (q = 1, z = {NOISE_MULTIPLIER:g}, per-example clip {CLIP_NORM:g}), with a canary record "
        "whose gradient alone moves one weight column, or an all-zero record in its place; the claim is the "
        "epsilon the client's ledger (DpSgdLedgerMod) reports for the fit.",
        _figures(run, settings.dp_sgd_trials, settings),
        plots=plots,
    )


def local_check(settings: AuditSettings, out_dir: Path | None) -> Check:
    """Audit of one release of :class:`LocalDpMod` on its worst-case pair of inputs."""
    mod = LocalDpMod(clip_norm=CLIP_NORM, epsilon=LOCAL_EPSILON, delta=settings.delta)
    release = LocalDpRelease(mod, "LocalDpMod", CLIP_NORM, LOCAL_EPSILON, settings.delta)
    run, plots = _audit(release, settings.local_trials, settings, out_dir, "dp_local.png")
    ledger = release.reply_metrics()
    return Check(
        FAMILY,
        f"LocalDpMod (epsilon {LOCAL_EPSILON:g}), one release: no epsilon violation",
        _verdict(run),
        f"{settings.local_trials:,} training replies per hypothesis through the real mod, the client's raw update "
        f"being -{release.canary_scale:g}C or +{release.canary_scale:g}C along one axis (clipped to the two ends "
        "of a diameter of the clipping ball, the worst case of local DP). The claim is the configured "
        "per-release epsilon, which the analytic Gaussian calibration meets exactly.",
        (
            *_figures(run, settings.local_trials, settings),
            ("noise std of the mod (analytic Gaussian, sensitivity 2C)", f"{mod.noise_std:.4g}"),
            ("epsilon of one release in the client's ledger (exact Gaussian)", f"{ledger['local_dp_epsilon']:.3f}"),
        ),
        plots=plots,
    )


def planted_check(release: Release, trials: int, settings: AuditSettings, bug: str) -> Check:
    """The audit run against a broken variant; PASS means it caught the bug (its verdict on the variant was FAIL)."""
    run = run_distinguishing(release, trials, confidence=settings.confidence, seed=settings.seed)
    return Check(
        "DP planted bug",
        f"audit catches {release.name}",
        Status.PASS if run.violated else Status.FAIL,
        f"Planted bug: {bug}. The broken variant still claims epsilon {run.claimed_epsilon:.3f}; the audit "
        f"reports a lower bound of {run.bound.epsilon:.3f}, so its verdict on the variant is "
        f"{'FAIL (bug caught)' if run.violated else 'PASS (bug missed)'}.",
        _figures(run, trials, settings),
    )


def planted_checks(settings: AuditSettings) -> list[Check]:
    """Each planted bug in CentralDp (server clipping) and LocalDpMod, audited as the real ones are."""
    setup = CentralRound(clip_norm=CLIP_NORM, seed=settings.seed)
    n = setup.others + 1
    probe = CentralDp.with_server_clipping(noise_multiplier=NOISE_MULTIPLIER, clip_norm=CLIP_NORM, delta=settings.delta)
    central_claim = setup.run(probe, canary=True).metrics["dp_epsilon"]
    checks = []
    for bug in Bug:
        central = partial(broken_central_dp, bug, clip_norm=CLIP_NORM, noise_multiplier=NOISE_MULTIPLIER, n=n)
        local = broken_local_dp(bug, clip_norm=CLIP_NORM, epsilon=LOCAL_EPSILON, delta=settings.delta, n=n)
        note = f"{bug.value} (n = {n} clients)"
        checks += [
            planted_check(
                CentralDpRelease(central, f"CentralDp, {bug.value}", setup, central_claim, settings.delta),
                settings.planted_trials,
                settings,
                note,
            ),
            planted_check(
                LocalDpRelease(local, f"LocalDpMod, {bug.value}", CLIP_NORM, LOCAL_EPSILON, settings.delta),
                settings.planted_trials,
                settings,
                note,
            ),
        ]
    return checks


ABORT_TRIALS = 1_000
"""Trials per hypothesis of the abort-channel audits (cheap: one real round per sampled subset)."""
ABORT_NOISE_MULTIPLIER = 50.0
"""Large, so the ledger charges little: an abort channel that is not charged shows at once."""


def _abort_figures(audit: AbortAudit, rounds: int) -> tuple[tuple[str, str], ...]:
    b = audit.bound
    return (
        ("ledger epsilon (largest over trials)", f"{audit.ledger_epsilon:.3f} at delta {b.delta:g}"),
        (f"epsilon lower bound from the releases ({b.confidence:.0%} confidence)", f"{b.epsilon:.3f}"),
        (
            "rounds that released, without / with the target",
            f"{audit.release_rate_without:.1%} / {audit.release_rate_with:.1%} of {rounds}",
        ),
        ("trials per hypothesis", f"{ABORT_TRIALS:,}"),
    )


def abort_checks(settings: AuditSettings) -> list[Check]:
    """The abort channel (issue 13): plain central DP at N = 2 and over SecAgg+ at N = 4, and both pre-fix variants."""
    from privfl.core.mods import compose
    from privfl.secagg import SecAggConfig, SecAggMod, SecAggPlusAggregator
    from privfl.server.strategy import FedAvg

    parameters = {"w": np.zeros(4)}

    def app(message: Message, context: Context) -> Message:
        del context
        return message.reply(arrays={"w": message.arrays["w"] + 5.0}, metrics={NUM_EXAMPLES: 1})

    z = ABORT_NOISE_MULTIPLIER

    def plain(wrap: Callable[[CentralDp], Any]) -> Callable[[], FedAvg]:
        return lambda: FedAvg(aggregator=wrap(CentralDp.with_server_clipping(noise_multiplier=z, clip_norm=CLIP_NORM)))

    def secure(cls: type[CentralDp]) -> Callable[[], FedAvg]:
        # A population of 4 sits below SecAgg+'s floor too often for the default
        # floor_accounting="delta" (its slack exceeds delta, so the ledger claims nothing:
        # epsilon inf). The floor-as-sensitivity mode makes a finite claim to audit.
        config = SecAggConfig(coordinate_bound=CLIP_NORM, bits=16, weighting="uniform")
        aggregator = SecAggPlusAggregator(config, semi_honest=True)
        return lambda: FedAvg(
            aggregator=cls(aggregator, noise_multiplier=z, clip_norm=CLIP_NORM, floor_accounting="sensitivity")
        )

    cases = (
        ("CentralDp, default min_clients", plain(lambda dp: dp), UnmarkedDp, app, 2, 100, "rolled back"),
        (
            "CentralDp over SecAgg+ (floor_accounting='sensitivity')",
            secure(CentralDp),
            AbortingDp,
            compose(app, [SecAggMod(semi_honest=True)]),
            4,
            60,
            "below its floor",
        ),
    )
    checks = []
    for label, real, weakened, client_app, population, rounds, how in cases:
        weak = plain(weakened) if weakened is UnmarkedDp else secure(weakened)
        results = []
        for make in (real, weak):
            results.append(
                audit_abort_channel(
                    make,
                    client_app,
                    population=population,
                    rate=0.5,
                    rounds=rounds,
                    trials=ABORT_TRIALS,
                    delta=settings.delta,
                    initial_parameters=parameters,
                    ledger_of=_ledger_of,
                    confidence=settings.confidence,
                    rng=np.random.default_rng(settings.seed),
                )
            )
        sound, leaky = results
        summary = (
            f"N = {population} clients (the target among them or not), Poisson q = 0.5, {rounds} rounds, z = {z:g}: "
            "the count of rounds that released (the model moved) distinguishes the populations"
        )
        checks += [
            Check(
                FAMILY,
                f"{label}: no abort channel beyond the ledger",
                Status.PASS if sound.passed else Status.FAIL,
                summary + "; every DP round must release and be charged.",
                _abort_figures(sound, rounds),
            ),
            Check(
                "DP planted bug",
                f"audit catches {label} with count-based aborts ({how})",
                Status.PASS if not leaky.passed else Status.FAIL,
                summary + "; the pre-issue-13 behaviour aborts on the count and charges nothing for it.",
                _abort_figures(leaky, rounds),
            ),
        ]
    return checks


def _ledger_of(strategy: Any) -> Any:
    return strategy.aggregator.ledger


def dp_checks(settings: AuditSettings, out_dir: Path | None) -> list[Check]:
    """Every DP check, in report order (plots go to ``out_dir`` when given)."""
    return [
        *mechanism_checks(settings, out_dir),
        *end_to_end_checks(settings, out_dir),
        *abort_checks(settings),
        local_check(settings, out_dir),
        dp_sgd_check(settings, out_dir),
        *planted_checks(settings),
    ]
