"""The distributed-DP audit: an epsilon lower bound from what the server unmasks.

Setting audited: one round (q = 1) of :class:`privfl.ddp.DistributedDp` as the server sees
it, the modular sum of ``SHARES`` clients' encoded vectors after unmasking. The attacker
(the server) knows every update but one and the rotation; the other clients' updates are
zero, and the canary client's update is zero or a vector at the clip norm. Each trial
rounds the canary's rotated, scaled update with the mechanism's own conditional rounding
(:func:`privfl.ddp.mechanism.conditional_round`) and adds every client's noise share, drawn
in bulk from the mechanism's samplers; the sum is reduced mod 2^bits and unwrapped as the
server does. The score is the projection of the unwrapped sum on the
canary's rotated direction (the Neyman-Pearson test for a symmetric unimodal noise).
The claim is the epsilon the RDP accountant gives one such release
(:class:`~privfl.accounting.DistributedDiscreteGaussianEvent` or
:class:`~privfl.accounting.SkellamEvent`). A planted bug (only one client's noise reaches
the sum, the rest sized as if all did) must be caught.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from privfl.accounting import RdpAccountant
from privfl.audit.config import AuditSettings
from privfl.audit.dp import DistinguishingRun, plot_run, run_distinguishing
from privfl.audit.report import Check, Status
from privfl.audit.stats import max_certifiable_epsilon
from privfl.ddp.mechanism import conditional_round, unwrap, wrap
from privfl.ddp.params import DdpParams
from privfl.ddp.rotation import rotate
from privfl.ddp.samplers import discrete_gaussian_exact, skellam

FAMILY = "Distributed DP"
SHARES = 10
DIM = 2
CLIP = 1.0
GAMMA = 1.0 / 32.0
BITS = 16
LOCAL_VARIANCE = {"ddg": 600.0, "skellam": 600.0}
"""Each client's noise (integer units): the sum of 10 shares has std about 77 against a sensitivity of about 33."""
SEED = bytes(32)


@dataclass(frozen=True)
class DdpSumRelease:
    """What the server unmasks in one round, with or without the canary client's update.

    Attributes:
        params: the round's encoding.
        shares_added: how many of the ``SHARES`` clients add their noise share (all, unless planted).
        name, claimed_epsilon, delta: as for :class:`privfl.audit.dp.Release`.
    """

    params: DdpParams
    shares_added: int
    name: str
    claimed_epsilon: float
    delta: float

    def _direction(self) -> NDArray[np.float64]:
        padded = np.zeros(self.params.padded)
        padded[0] = 1.0
        return rotate(padded, SEED)

    def scores(self, canary: bool, trials: int) -> NDArray[np.float64]:
        p = self.params
        # The canary's client: clip (to the norm p.clip), rotate, scale and round as encode() does, per trial.
        scaled = self._direction() * (p.clip / p.gamma if canary else 0.0)
        own = np.stack([conditional_round(scaled, p.l2_bound) for _ in range(trials)])
        # Every client's noise share, drawn in bulk from the mechanism's sampler (all of them: the canary's too).
        count = trials * self.shares_added * p.padded
        noise = (
            discrete_gaussian_exact(count, p.local_variance)
            if p.mechanism == "ddg"
            else skellam(count, p.local_variance)
        )
        total = own + noise.reshape(trials, self.shares_added, p.padded).sum(axis=1)
        seen = unwrap(wrap(total, p.bits), p.bits)  # the modular sum the server unmasks
        return seen.astype(np.float64) @ self._direction()


def claimed_epsilon(params: DdpParams, shares: int, delta: float) -> float:
    """The accountant's epsilon for one release of a sum holding ``shares`` noise shares."""
    return RdpAccountant().compose(params.event(shares)).get_epsilon(delta)


def _run(release: DdpSumRelease, settings: AuditSettings, out_dir: Path | None, plot: str) -> tuple:
    run = run_distinguishing(release, settings.dp_loop_trials, confidence=settings.confidence, seed=settings.seed)
    plots = (plot_run(run, out_dir / plot).name,) if out_dir is not None else ()
    return run, plots


def _figures(run: DistinguishingRun, trials: int) -> tuple[tuple[str, str], ...]:
    b = run.bound
    return (
        ("claimed epsilon", f"{run.claimed_epsilon:.3f} at delta {b.delta:g}"),
        (f"epsilon lower bound ({b.confidence:.0%} confidence)", f"{b.epsilon:.3f}"),
        ("point estimate (no confidence interval)", f"{b.point_estimate:.3f}"),
        ("trials per hypothesis", f"{trials:,}"),
        ("largest bound these trials can certify", f"{max_certifiable_epsilon(trials, b.delta, b.confidence):.2f}"),
    )


def ddp_checks(settings: AuditSettings, out_dir: Path) -> list[Check]:
    """One check per mechanism (no violation) and the planted bug (caught)."""
    trials = settings.dp_loop_trials
    checks = []
    for mechanism in ("ddg", "skellam"):
        params = DdpParams(mechanism, DIM, CLIP, GAMMA, LOCAL_VARIANCE[mechanism], BITS)
        claim = claimed_epsilon(params, SHARES, settings.delta)
        release = DdpSumRelease(params, SHARES, f"DistributedDp ({mechanism})", claim, settings.delta)
        run, plots = _run(release, settings, out_dir, f"ddp_{mechanism}.png")
        checks.append(
            Check(
                FAMILY,
                f"DistributedDp ({mechanism}), one round: no epsilon violation in what the server unmasks",
                Status.FAIL if run.violated else Status.PASS,
                f"{trials:,} unmasked sums per hypothesis: the canary client encoded by the real mechanism, "
                f"{SHARES - 1} other clients' noise shares from the real samplers, wrapped mod 2^{BITS}; FAIL if "
                "the lower bound exceeds the accountant's epsilon for one release.",
                (*_figures(run, trials), ("ratio lower bound / claimed", f"{run.ratio:.2f}")),
                plots=plots,
            )
        )
    params = DdpParams("ddg", DIM, CLIP, GAMMA, LOCAL_VARIANCE["ddg"], BITS)
    claim = claimed_epsilon(params, SHARES, settings.delta)
    broken = DdpSumRelease(params, 1, "DistributedDp, one noise share only", claim, settings.delta)
    run, plots = _run(broken, settings, out_dir, "ddp_planted.png")
    checks.append(
        Check(
            FAMILY,
            "planted bug caught: only one client's noise share reaches the sum",
            Status.PASS if run.violated else Status.FAIL,
            f"The ledger claims {SHARES} shares; PASS when the audit's lower bound exceeds that claim.",
            _figures(run, trials),
            plots=plots,
        )
    )
    return checks
