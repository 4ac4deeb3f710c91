"""Deliberately broken variants of privfl's DP mechanisms, to show the audits catch real bugs.

Each variant keeps claiming the privacy of the honest configuration (its ledger records
the honest event) while doing less: no noise, noise scaled down by the number of
clients n (the classic "noise calibrated for the mean, added to the sum" slip), or no
clipping. They are built by subclassing or configuring the real classes; the real
modules are untouched. An audit that reports PASS on any of them has no power.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from privfl.accounting import GaussianEvent
from privfl.core.exchange import Aggregate, Aggregator, Exchange, RoundSpec
from privfl.core.message import ArrayDict, Message
from privfl.core.plain import PlainAggregator
from privfl.dp import CentralDp, LocalDpMod
from privfl.secagg.client import SecAggPlusClient


class Bug(str, Enum):
    """The planted bugs."""

    NOISE_MISSING = "noise missing"
    NOISE_DIVIDED_BY_N = "noise scaled down by n"
    CLIPPING_SKIPPED = "clipping skipped"


@dataclass(frozen=True)
class BrokenLocalDp(LocalDpMod):
    """:class:`~privfl.dp.LocalDpMod` that adds ``noise_scale`` times its calibrated noise and
    optionally does not clip, while its ledger records the honest event."""

    noise_scale: float = 1.0
    skip_clipping: bool = False
    honest_event: GaussianEvent = field(init=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "honest_event", GaussianEvent(self.noise_std / self.sensitivity))
        object.__setattr__(self, "noise_std", self.noise_std * self.noise_scale)
        if self.skip_clipping:
            object.__setattr__(self, "clip_norm", 1e300)  # finite, so clip_l2 accepts it, and never reached

    @property
    def event(self) -> GaussianEvent:
        return self.honest_event


class BrokenNoiseCentralDp(CentralDp):
    """:class:`~privfl.dp.CentralDp` that adds ``noise_scale`` times the calibrated noise std
    (0: none) while accounting the configured noise multiplier."""

    def __init__(self, inner: Any, *, noise_scale: float, **kwargs: Any) -> None:
        super().__init__(inner, **kwargs)
        self.noise_scale = noise_scale

    def _release(self, spec: RoundSpec, agg: Aggregate, *, std: float, **kwargs: Any) -> Aggregate:
        return super()._release(spec, agg, std=std * self.noise_scale, **kwargs)


def broken_local_dp(bug: Bug, *, clip_norm: float, epsilon: float, delta: float, n: int) -> LocalDpMod:
    """A local-DP mod with ``bug`` (``n`` is the divisor of :attr:`Bug.NOISE_DIVIDED_BY_N`)."""
    scale = {Bug.NOISE_MISSING: 0.0, Bug.NOISE_DIVIDED_BY_N: 1.0 / n}.get(bug, 1.0)
    return BrokenLocalDp(
        clip_norm=clip_norm,
        epsilon=epsilon,
        delta=delta,
        noise_scale=scale,
        skip_clipping=bug is Bug.CLIPPING_SKIPPED,
    )


def broken_central_dp(bug: Bug, *, clip_norm: float, noise_multiplier: float, n: int) -> CentralDp:
    """A server-clipping central-DP aggregator with ``bug``.

    Skipped clipping: the wrapper's plain inner aggregator does not clip. The constructor
    refuses that configuration, so the bug is planted by swapping the inner aggregator after it.
    """
    if bug is Bug.CLIPPING_SKIPPED:
        broken = CentralDp.with_server_clipping(noise_multiplier=noise_multiplier, clip_norm=clip_norm)
        broken.inner = PlainAggregator(weighting="uniform")
        return broken
    honest = CentralDp.with_server_clipping(noise_multiplier=noise_multiplier, clip_norm=clip_norm)
    scale = 0.0 if bug is Bug.NOISE_MISSING else 1.0 / n
    return BrokenNoiseCentralDp(honest.inner, noise_scale=scale, noise_multiplier=noise_multiplier, clip_norm=clip_norm)


class UnmarkedDp:
    """The pre-issue-13 loop behaviour: a DP release not marked ``dp_release``, so a strategy aborts on its count.

    The aborted round is then rolled back out of the ledger: the abort channel the
    :mod:`privfl.audit.dp_abort` audit measures.
    """

    def __init__(self, dp: CentralDp) -> None:
        self.dp = dp
        self.ledger = dp.ledger

    def aggregate(self, spec: RoundSpec) -> Exchange[Aggregate]:
        agg = yield from self.dp.aggregate(spec)
        return dataclasses.replace(agg, dp_release=False)

    def state_dict(self) -> dict[str, Any]:
        return self.dp.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.dp.load_state_dict(state)


class AbortingDp(CentralDp):
    """The pre-issue-13 CentralDp over SecAgg+: an inner abort (below 2 clients) aborts the round, unreleased."""

    @staticmethod
    def _sum_or_nothing(inner: Aggregator, spec: RoundSpec, floor: int) -> Exchange[tuple[Aggregate, str]]:
        del floor
        agg = yield from inner.aggregate(spec)
        return agg, ""


class UnclippedSecAggClient(SecAggPlusClient):
    """A SecAgg+ client that masks its raw update instead of the one clipped to the round's clip norm.

    Planted with ``SecAggMod(semi_honest=True, _client=UnclippedSecAggClient)``: the pre-issue-13
    behaviour, where SecAgg+ clients clipped only if the user remembered a clipping mod.
    """

    _raw: Message | None = None

    def handle(self, message: Message, fit: Callable[[Message], Message]) -> Message:
        def keep_raw(task: Message) -> Message:
            self._raw = fit(task)
            return self._raw

        return super().handle(message, keep_raw)

    def _update(self, parameters: ArrayDict, reply: Message) -> Any:
        return super()._update(parameters, self._raw if self._raw is not None else reply)
