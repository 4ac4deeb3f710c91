"""Client-level central DP around aggregation: DP-FedAvg (McMahan et al., ICLR 2018) and adaptive clipping.

The wrappers are :class:`~privfl.core.exchange.Aggregator`\\ s, so ``FedAvg(aggregator=CentralDp(...))``
runs DP-FedAvg and :class:`CentralDp` can wrap any inner aggregator, SecAgg+ included. Each round:

1. Refuse fixed-size sampling (its replace-one neighbouring relation has sensitivity 2C,
   which Poisson-subsampled accounting would under-report) and check the round's event
   against the budget, before any message is yielded: an overspending round sends
   nothing and draws no noise (:class:`~privfl.errors.BudgetExceededError`). Both checks
   depend on the configuration only, never on who was sampled.
2. Send the clip norm and the DP mode in the round config (:data:`~privfl.core.names.DP_CLIP_NORM`,
   :data:`~privfl.core.names.DP_MODE`): the one value the noise is calibrated to is the
   one the SecAgg+ and CKKS clients clip to (:func:`privfl.dp.clipping.clip_to_round_config`).
3. Collect the sum of clipped updates with uniform weights (the sensitivity of a sum of
   clipped updates is C only when every weight is 1).
4. Add N(0, (z Delta)^2) to every coordinate of the sum and set the denominator to the
   *expected* number of clients q N (McMahan et al. 2018, the fixed-denominator estimator),
   so the number of participants is not released through the scaling.
5. Record ``PoissonSampledEvent(q, GaussianEvent(z))`` in the wrapper's ledger once the
   round's aggregate exists; the ledger is in ``state_dict()``, so the loop's
   snapshot/restore and its checkpoints neither lose nor double-count it.

**No silent aborts: every round releases and is charged.** Whether a round aborts is
observable (the model does not move), and a count-based abort depends on whether the
target client was sampled, so an abort that is rolled back out of the ledger leaks without
being charged (issue 13: N = 10, q = 0.05, z = 1, 200 rounds reported epsilon 3.8 where
the truth is at least 9.7). The wrappers therefore never abort on the client count: the
aggregate is marked ``dp_release`` (a strategy applies it whatever the count), and when the
inner aggregator cannot produce a sum the round releases *noise only* and is charged like
any other round. The argument, for add/remove-one neighbours D' = D + {t} and the release
f(S) + N(0, sigma^2) with S the Poisson sample:

- The Poisson-subsampled Gaussian bound (Mironov, Talwar & Zhang 2019, Sec. 3.3) holds with
  noise multiplier sigma / Delta whenever ||f(S + t) - f(S)|| <= Delta for *every* sample S
  of the other clients (joint convexity reduces the mixture to that pair).
- Plain aggregation (floor 1): f(S) is the sum of the clipped updates in S, the empty sum
  being 0, so Delta = C exactly as without the fallback.
- An inner aggregator with a client floor m (:class:`~privfl.core.exchange.ClientFloor`;
  SecAgg+: the smallest n its parameters resolve for, 3 with the defaults) releases
  f(S) = sum(S) if |S| >= m else 0. For |S| = m - 1 the target's arrival turns 0 into the
  sum of m clipped updates, so Delta = m C: the noise std is z * m * C, and the recorded
  event keeps its meaning (noise multiplier z in units of the true sensitivity). With
  default SecAgg+ this triples the noise; it is the price of releasing (rather than
  leaking) the rounds where fewer than m clients were sampled.
- An inner protocol that fails *after* it started (SecAgg+ with dropouts beyond its
  tolerance) also releases noise only. That case is covered by the argument above only if
  the failure does not depend on whether t was sampled; SecAgg+ parameters (Bell et al.
  2020) make an honest round fail with negligible probability, and that probability
  belongs in delta. Such rounds are counted in the ``dp_noise_only`` metric.

Per-client metrics (:class:`~privfl.core.exchange.ClientResult`, e.g. training loss and
example counts) pass through to the server unchanged: they are not covered by the
guarantee, which protects the model updates released by the server.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Any

import numpy as np

from privfl.accounting import DpEvent, GaussianEvent, PoissonSampledEvent, PrivacyBudget, PrivacyLedger
from privfl.accounting.conversion import check_delta
from privfl.core.exchange import (
    Aggregate,
    Aggregator,
    BoundedDistortion,
    ClientFloor,
    Exchange,
    RoundSpec,
    zeros_like,
)
from privfl.core.message import ArrayDict
from privfl.core.names import DP_CLIP_NORM, DP_MODE, DP_MODE_CENTRAL
from privfl.core.plain import PlainAggregator
from privfl.dp.calibration import check_positive
from privfl.dp.clipping import check_clip_norm, clip_l2
from privfl.dp.noise import add_gaussian_noise, gaussian_noise
from privfl.errors import ConfigError, MessageError, ProtocolError


class ClipEachUpdate:
    """A server-side update transform: clip each update to L2 norm ``clip_norm`` (float64 result).

    ``within`` counts the updates whose norm was already <= ``clip_norm`` (adaptive clipping
    makes one transform per round and reads it).
    """

    def __init__(self, clip_norm: float) -> None:
        self.clip_norm = check_clip_norm(clip_norm)
        self.within = 0

    def __call__(self, update: ArrayDict) -> ArrayDict:
        clipped, norm = clip_l2(update, self.clip_norm)
        self.within += norm <= self.clip_norm
        return clipped


class _LedgeredDp:
    """What the central-DP wrappers share: the ledger, the round's admission and the noisy release."""

    def __init__(
        self,
        *,
        budget: PrivacyBudget | None,
        delta: float | None,
        accountant: str,
        rng: np.random.Generator | None,
        ledger_key: bytes | None,
    ) -> None:
        if delta is not None:
            delta = check_delta(delta)
        self.ledger = PrivacyLedger(budget=budget, accountant=accountant, key=ledger_key)
        self.delta = delta if delta is not None else (budget.delta if budget is not None else None)
        self._rng = rng

    def _admit(self, spec: RoundSpec, event: DpEvent) -> None:
        """Refuse the round unless it is Poisson-sampled and ``event`` fits the budget (changes nothing)."""
        if not spec.sampling.poisson:
            raise ConfigError(
                "central DP needs Poisson client sampling (e.g. PoissonSampler(q)); fixed-size sampling is "
                "replace-one with sensitivity 2C and is not accounted as a Poisson-subsampled Gaussian"
            )
        self.ledger.check(event)

    @staticmethod
    def _sum_or_nothing(inner: Aggregator, spec: RoundSpec, floor: int) -> Exchange[tuple[Aggregate, str]]:
        """The inner aggregate, or an empty one (noise-only release) when the inner protocol cannot run.

        Returns ``(aggregate, why it is empty or "")``. Below the floor no client is contacted.
        """
        sampled = len(spec.nodes)
        if sampled < floor:
            why = f"{sampled} client(s) sampled, below the inner aggregator's floor of {floor}"
        else:
            try:
                agg = yield from inner.aggregate(spec)
            except (ProtocolError, MessageError, ConfigError) as exc:
                # A ConfigError here depends on the sampled count too (e.g. no SecAgg+ parameters
                # for this n): crashing would leak it, so it is released as noise only, and loudly.
                why = f"inner aggregation failed ({type(exc).__name__}: {exc})"
                if isinstance(exc, ConfigError):
                    warnings.warn(f"round {spec.server_round}: noise-only DP release: {why}", stacklevel=2)
            else:
                return agg, ""
        empty = Aggregate(update_sum=zeros_like(spec.parameters), weight_sum=0.0, num_clients=0, dropped=spec.nodes)
        return empty, why

    def _release(
        self, spec: RoundSpec, agg: Aggregate, *, std: float, event: DpEvent, note: str, metrics: dict[str, float]
    ) -> Aggregate:
        """The noised aggregate over the expected client count, marked ``dp_release``; records ``event``."""
        if not math.isclose(agg.weight_sum, agg.num_clients, rel_tol=1e-9, abs_tol=1e-9):
            raise ConfigError(
                f"the inner aggregator weighted the updates (weight sum {agg.weight_sum} for {agg.num_clients} "
                "clients); DP noise is calibrated to a sum of clipped updates with weight 1 each"
            )
        noised = add_gaussian_noise(agg.update_sum, std, rng=self._rng)
        self.ledger.record(event, server_round=spec.server_round, scope="client", locality="central", note=note)
        out = {**agg.metrics, **metrics, "dp_noise_std": std, "dp_expected_clients": spec.sampling.expected_clients}
        if self.delta is not None:
            out["dp_epsilon"] = self.ledger.epsilon(self.delta)
        return Aggregate(
            update_sum=noised,
            weight_sum=spec.sampling.expected_clients,
            num_clients=agg.num_clients,
            results=agg.results,
            dropped=agg.dropped,
            metrics=out,
            rejected=agg.rejected,
            dp_release=True,
        )


class CentralDp(_LedgeredDp):
    """Client-level central DP with a fixed clip norm around any inner aggregator.

    Clipping happens either on the server (:meth:`with_server_clipping`: a plain inner
    aggregator must clip each update at ``clip_norm``) or on the clients (a SecAgg+ inner
    aggregator, whose unmasked sum the server noises). The
    noise std is ``noise_multiplier * sensitivity`` on the sum (McMahan et al. 2018), where the
    sensitivity is the clip norm raised by the inner aggregator's
    :class:`~privfl.core.exchange.BoundedDistortion` bound if it has one (SecAgg+ rounding),
    times the inner aggregator's :class:`~privfl.core.exchange.ClientFloor` (SecAgg+: 3 with its
    default parameters; see the module docstring for why a noise-only fallback below the floor
    costs that factor).

    The clip norm and the DP mode go to the clients in the round config; the SecAgg+ and
    CKKS client mods clip to that value, and a :class:`~privfl.dp.client_mods.FixedClippingMod`
    at another norm refuses the round, so the norm accounted and the norm applied cannot differ.

    Args:
        inner: the aggregator producing the sum of clipped updates with uniform weights; a
            ``PlainAggregator(weighting="examples")`` is refused (use "uniform").
        noise_multiplier: z (> 0), e.g. from :func:`privfl.accounting.calibrate_noise_multiplier`.
        clip_norm: L2 bound C each update was clipped to (> 0).
        budget: optional total (epsilon, delta); a round that would exceed it is refused.
        delta: delta at which round metrics report ``dp_epsilon`` (default: the budget's).
        accountant: accountant of the ledger ("rdp" or "pld").
        rng: explicitly injected generator for tests only; the default is the CSPRNG of
            :mod:`privfl.dp.noise`.
        ledger_key: operator key (>= 32 bytes) under which the ledger's state, in checkpoints
            too, is authenticated (HMAC-SHA256, see :mod:`privfl.accounting.ledger`); a
            resumed run refuses a checkpoint whose ledger was edited or truncated.
    """

    def __init__(
        self,
        inner: Aggregator,
        *,
        noise_multiplier: float,
        clip_norm: float,
        budget: PrivacyBudget | None = None,
        delta: float | None = None,
        accountant: str = "rdp",
        rng: np.random.Generator | None = None,
        ledger_key: bytes | None = None,
    ) -> None:
        if getattr(inner, "weighting", "uniform") != "uniform":
            raise ConfigError(
                f"central DP needs uniform client weights, got weighting={inner.weighting!r}: the noise is "
                "calibrated to one clipped update per client, not to example-weighted updates"
            )
        super().__init__(budget=budget, delta=delta, accountant=accountant, rng=rng, ledger_key=ledger_key)
        self.inner = inner
        self.noise_multiplier = check_positive("noise_multiplier", noise_multiplier)
        self.clip_norm = check_clip_norm(clip_norm)
        if isinstance(inner, PlainAggregator):
            # The server sees plain updates, so it clips them itself, at the accounted norm.
            transform = inner.transform
            if not isinstance(transform, ClipEachUpdate) or transform.clip_norm != self.clip_norm:
                raise ConfigError(
                    f"central DP over plain aggregation needs the server to clip each update at the accounted "
                    f"clip norm {self.clip_norm:g} (got transform {transform!r}); use CentralDp.with_server_clipping"
                )
        self.floor = inner.min_clients if isinstance(inner, ClientFloor) else 1
        if isinstance(self.floor, bool) or not isinstance(self.floor, int) or self.floor < 1:
            raise ConfigError(f"the inner aggregator's min_clients must be an int >= 1, got {self.floor!r}")

    @classmethod
    def with_server_clipping(cls, *, noise_multiplier: float, clip_norm: float, **kwargs: Any) -> CentralDp:
        """Central DP where the server clips each update in the clear (plain aggregation, uniform weights)."""
        inner = PlainAggregator(weighting="uniform", transform=ClipEachUpdate(clip_norm))
        return cls(inner, noise_multiplier=noise_multiplier, clip_norm=clip_norm, **kwargs)

    def aggregate(self, spec: RoundSpec) -> Exchange[Aggregate]:
        event = PoissonSampledEvent(spec.sampling.rate, GaussianEvent(self.noise_multiplier))
        self._admit(spec, event)
        # Sensitivity: the clip norm, plus any distortion the inner aggregator adds to a
        # client's contribution (SecAgg+ rounding), times the client floor of the noise-only
        # fallback (module docstring), so N(0, (z * sensitivity)^2) is z-private.
        per_client = self.clip_norm
        if isinstance(self.inner, BoundedDistortion):
            per_client += self.inner.contribution_error_bound(spec)
        sensitivity = self.floor * per_client
        config = {**spec.config, DP_CLIP_NORM: self.clip_norm, DP_MODE: DP_MODE_CENTRAL}
        agg, empty = yield from self._sum_or_nothing(self.inner, dataclasses.replace(spec, config=config), self.floor)
        return self._release(
            spec,
            agg,
            std=self.noise_multiplier * sensitivity,
            event=event,
            note=f"DP-FedAvg, clip norm {self.clip_norm:g}, sensitivity {sensitivity:g}"
            + (f"; noise only: {empty}" if empty else ""),
            metrics={
                "dp_clip_norm": self.clip_norm,
                "dp_sensitivity": sensitivity,
                "dp_noise_only": float(bool(empty)),
            },
        )

    def state_dict(self) -> dict[str, Any]:
        return {"ledger": self.ledger.state_dict(), "inner": self.inner.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.ledger.load_state_dict(state["ledger"])
        self.inner.load_state_dict(state["inner"])


class AdaptiveClippingDp(_LedgeredDp):
    """Central DP with a clip norm that tracks a quantile of update norms (Andrew et al., NeurIPS 2021).

    Each round the server clips at the current norm C_t, counts the clients whose update
    norm is <= C_t, releases that count with Gaussian noise of std ``count_noise_std``
    (sigma_b), and moves the norm geometrically toward the ``target_quantile`` gamma:
    C_{t+1} = C_t exp(-eta (b_t - gamma)), with b_t the noisy fraction (Andrew et al. Alg. 1).

    Both releases are one Gaussian mechanism on the same Poisson sample: the update sum
    has sensitivity C_t and noise z_delta C_t, the centred count sum_i (b_i - 1/2) has
    sensitivity 1/2 and noise sigma_b. Their joint noise multiplier is
    z = (z_delta^-2 + (2 sigma_b)^-2)^(-1/2) (Andrew et al. Thm 1), so the user gives the
    total z (the one accounted and calibrated) and the update noise is
    z_delta = (z^-2 - (2 sigma_b)^-2)^(-1/2) times the norm *applied* this round, C_t.
    One ``PoissonSampledEvent(q, GaussianEvent(z))`` per round accounts for both.

    Clipping is done by the server (plain aggregation, uniform weights); with SecAgg+,
    use :class:`CentralDp` with a fixed norm.

    Args:
        noise_multiplier: total z (> 0), covering update and count.
        initial_clip_norm: C_1 (> 0).
        count_noise_std: sigma_b (> z / 2); Andrew et al. suggest about expected clients / 20.
        target_quantile: gamma in (0, 1), the fraction of updates meant to be unclipped.
        clip_learning_rate: eta (> 0); Andrew et al. use 0.2.
        budget, delta, accountant, rng, ledger_key: as for :class:`CentralDp`.
    """

    def __init__(
        self,
        *,
        noise_multiplier: float,
        initial_clip_norm: float,
        count_noise_std: float,
        target_quantile: float = 0.5,
        clip_learning_rate: float = 0.2,
        budget: PrivacyBudget | None = None,
        delta: float | None = None,
        accountant: str = "rdp",
        rng: np.random.Generator | None = None,
        ledger_key: bytes | None = None,
    ) -> None:
        super().__init__(budget=budget, delta=delta, accountant=accountant, rng=rng, ledger_key=ledger_key)
        self.noise_multiplier = check_positive("noise_multiplier", noise_multiplier)
        self.clip_norm = check_clip_norm(initial_clip_norm)
        if not (math.isfinite(count_noise_std) and 2.0 * count_noise_std > self.noise_multiplier):
            raise ConfigError(
                f"count_noise_std must exceed noise_multiplier / 2 = {self.noise_multiplier / 2:g} so the update "
                f"keeps some of the noise budget, got {count_noise_std!r}"
            )
        if not 0.0 < target_quantile < 1.0:
            raise ConfigError(f"target_quantile must be in (0, 1), got {target_quantile!r}")
        check_positive("clip_learning_rate", clip_learning_rate)
        self.count_noise_std = float(count_noise_std)
        self.target_quantile = float(target_quantile)
        self.clip_learning_rate = float(clip_learning_rate)
        # Andrew et al. (2021), Theorem 1: z^-2 = z_delta^-2 + (2 sigma_b)^-2.
        self.update_noise_multiplier = (self.noise_multiplier**-2 - (2.0 * self.count_noise_std) ** -2) ** -0.5

    def aggregate(self, spec: RoundSpec) -> Exchange[Aggregate]:
        event = PoissonSampledEvent(spec.sampling.rate, GaussianEvent(self.noise_multiplier))
        self._admit(spec, event)
        applied = self.clip_norm
        clip = ClipEachUpdate(applied)
        config = {**spec.config, DP_CLIP_NORM: applied, DP_MODE: DP_MODE_CENTRAL}
        inner = PlainAggregator(weighting="uniform", transform=clip)
        agg, empty = yield from self._sum_or_nothing(inner, dataclasses.replace(spec, config=config), 1)
        expected = spec.sampling.expected_clients
        # Andrew et al. (2021), Alg. 1: b_t = (sum_i (b_i - 1/2) + N(0, sigma_b^2)) / expected + 1/2.
        centred = clip.within - agg.num_clients / 2.0
        fraction = (centred + float(gaussian_noise(1, self.count_noise_std, rng=self._rng)[0])) / expected + 0.5
        release = self._release(
            spec,
            agg,
            std=self.update_noise_multiplier * applied,
            event=event,
            note=f"adaptive clipping, clip norm {applied:g}, count noise std {self.count_noise_std:g}"
            + (f"; noise only: {empty}" if empty else ""),
            metrics={"dp_clip_norm": applied, "dp_unclipped_fraction": fraction, "dp_noise_only": float(bool(empty))},
        )
        # Andrew et al. (2021), geometric update: C <- C exp(-eta (b_t - gamma)); used from the next round on.
        self.clip_norm = applied * math.exp(-self.clip_learning_rate * (fraction - self.target_quantile))
        return release

    def state_dict(self) -> dict[str, Any]:
        return {"ledger": self.ledger.state_dict(), "clip_norm": self.clip_norm}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.ledger.load_state_dict(state["ledger"])
        self.clip_norm = check_clip_norm(state["clip_norm"])
