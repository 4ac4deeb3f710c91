"""Client-side DP mods: fixed clipping (for server-side or distributed noise) and local DP.

Both act on training messages only and pass every other message through. The update
is ``reply parameters - received parameters``; the reply carries ``received + update'``
where ``update'`` is the clipped (and, for local DP, noised) update.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from privfl.accounting import GaussianEvent, PrivacyBudget, PrivacyLedger
from privfl.core.context import Context
from privfl.core.message import Message, MessageKind
from privfl.core.mods import App
from privfl.core.names import DP_CLIP_NORM, LOCAL_DP_EPSILON, NUM_EXAMPLES
from privfl.dp.calibration import MECHANISMS, check_epsilon_delta, gaussian_sigma
from privfl.dp.clipping import add_update_toward, check_clip_norm, clip_l2, round_clip_norm, train_update
from privfl.dp.noise import add_gaussian_noise
from privfl.errors import ConfigError, MessageError

LOCAL_LEDGER_KEY = "privfl.dp.local_ledger"
"""Context key of the client's local-DP :class:`~privfl.accounting.PrivacyLedger` (checkpointed with the client)."""

PRE_CLIP_NORM = "dp_pre_clip_norm"
"""Reply metric: L2 norm of the update before clipping (only when the mod is asked to report it)."""


def _check_train_input(message: Message, who: str) -> None:
    for name, arr in message.arrays.items():
        if arr.dtype.kind != "f":
            hint = (
                "; a protocol mod (SecAggMod, CkksClientMod) must come before the DP mods in ClientApp(mods=[...]), "
                "the first being the outermost"
                if "." in name
                else ""
            )
            raise MessageError(
                f"{who}: received array {name!r} has dtype {arr.dtype}; DP mods need float parameters{hint}"
            )


@dataclass(frozen=True)
class FixedClippingMod:
    """Clip the client's update to L2 norm ``clip_norm`` (McMahan et al., ICLR 2018, DP-FedAvg).

    For plain Flower-style use, where the client chooses its clip norm. Under
    :class:`~privfl.dp.central.CentralDp` the server sends the clip norm it accounts for
    in the round config (:data:`~privfl.core.names.DP_CLIP_NORM`) and the SecAgg+ and
    CKKS client mods clip to it themselves; this mod then checks that it agrees and
    refuses the round (:class:`~privfl.errors.ConfigError`) if it does not. Coordinates
    are rounded toward the received parameters when the reply is cast
    back to their dtype, so the update the server reconstructs has norm <= ``clip_norm``.

    Args:
        clip_norm: L2 bound C on the update (> 0).
        report_norm: add the pre-clip norm to the reply metrics (it is not private: off by default).
    """

    clip_norm: float
    report_norm: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "clip_norm", check_clip_norm(self.clip_norm))

    def __call__(self, message: Message, context: Context, call_next: App) -> Message:
        if message.metadata.kind is not MessageKind.TRAIN:
            return call_next(message, context)
        _check_train_input(message, "fixed clipping")
        announced = round_clip_norm(message.config)
        if announced is not None and not math.isclose(announced, self.clip_norm, rel_tol=1e-12):
            raise ConfigError(
                f"FixedClippingMod clips at {self.clip_norm:g} but the server accounts for clip norm "
                f"{announced:g} ({DP_CLIP_NORM}); one value must hold on both sides"
            )
        reply = call_next(message, context)
        clipped, norm = clip_l2(train_update(message.arrays, reply, "fixed clipping"), self.clip_norm)
        metrics = dict(reply.metrics)
        if self.report_norm:
            metrics[PRE_CLIP_NORM] = norm
        return reply.replace(arrays=add_update_toward(message.arrays, clipped), metrics=metrics)


@dataclass(frozen=True)
class LocalDpMod:
    """Local DP: clip the update to ``clip_norm`` and add Gaussian noise calibrated to (epsilon, delta) per release.

    Each training reply is one (epsilon, delta)-DP release of the client's update, private
    against everyone, the server included. In the local model the neighbouring inputs are
    any two datasets of this client, whose clipped updates can be any two points of the
    radius-C ball: the L2 sensitivity is the diameter 2C, not C. The noise std is
    calibrated to 2C by the analytic Gaussian mechanism (Balle & Wang 2018) or the classic
    formula. Each release is recorded in a client-side
    :class:`~privfl.accounting.PrivacyLedger` kept in the client's Context under
    :data:`LOCAL_LEDGER_KEY`, so it is checkpointed and restored on resume; the ledger
    composes the releases over rounds (RDP of ``GaussianEvent(sigma / 2C)``).

    The reply's other fit metrics (training loss, accuracy, ...) are computed on the private
    data without noise, so they are dropped; only ``num_examples`` (which weighting needs;
    it is not covered by the guarantee) and the mod's own ``local_dp_noise_std`` and
    ``local_dp_epsilon`` go out.

    Args:
        clip_norm: L2 bound C on the update (> 0).
        epsilon: per-release epsilon (> 0).
        delta: per-release delta, in (0, 1).
        mechanism: "analytic" (default) or "classic" (epsilon < 1 only).
        budget: optional total budget of the client; a release that would exceed it is
            refused (BudgetExceededError) before the client trains or sends anything.
        rng: explicitly injected generator for tests only; the default is the CSPRNG of
            :mod:`privfl.dp.noise`.
    """

    clip_norm: float
    epsilon: float
    delta: float
    mechanism: str = "analytic"
    budget: PrivacyBudget | None = None
    rng: np.random.Generator | None = field(default=None, repr=False, compare=False)
    noise_std: float = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "clip_norm", check_clip_norm(self.clip_norm))
        check_epsilon_delta(self.epsilon, self.delta)
        if self.mechanism not in MECHANISMS:
            raise ConfigError(f"mechanism must be one of {MECHANISMS}, got {self.mechanism!r}")
        if self.budget is not None and not isinstance(self.budget, PrivacyBudget):
            raise ConfigError(f"budget must be a PrivacyBudget or None, got {self.budget!r}")
        sigma = gaussian_sigma(self.epsilon, self.delta, self.sensitivity, mechanism=self.mechanism)
        object.__setattr__(self, "noise_std", sigma)

    @property
    def sensitivity(self) -> float:
        """L2 sensitivity of one release: 2C, the diameter of the clipping ball (replace-one)."""
        return 2.0 * self.clip_norm

    @property
    def event(self) -> GaussianEvent:
        """The event of one release: a Gaussian with noise multiplier sigma / (2C)."""
        return GaussianEvent(self.noise_std / self.sensitivity)

    def ledger(self, context: Context) -> PrivacyLedger:
        """This client's local-DP ledger (created on first use, restored from a checkpoint on resume)."""
        return context.get_or_create(LOCAL_LEDGER_KEY, lambda: PrivacyLedger(budget=self.budget))

    def __call__(self, message: Message, context: Context, call_next: App) -> Message:
        if message.metadata.kind is not MessageKind.TRAIN:
            return call_next(message, context)
        _check_train_input(message, "local DP")
        ledger = self.ledger(context)
        ledger.check(self.event)
        reply = call_next(message, context)
        clipped, _ = clip_l2(train_update(message.arrays, reply, "local DP"), self.clip_norm)
        noisy = add_gaussian_noise(clipped, self.noise_std, rng=self.rng)
        ledger.record(
            self.event,
            server_round=message.metadata.server_round,
            scope="client",
            locality="local",
            note=f"{self.mechanism} Gaussian, per release epsilon={self.epsilon:g} delta={self.delta:g}",
        )
        metrics = {key: reply.metrics[key] for key in (NUM_EXAMPLES,) if key in reply.metrics}
        metrics["local_dp_noise_std"] = self.noise_std
        epsilon = ledger.epsilon(self.delta)
        if math.isfinite(epsilon):
            metrics[LOCAL_DP_EPSILON] = epsilon
        return reply.replace(arrays=add_update_toward(message.arrays, noisy), metrics=metrics)
