"""The server side of distributed DP: :class:`DistributedDp`, an aggregator around SecAgg+.

Each round (Kairouz, Liu & Steinke, ICML 2021; Agarwal, Kairouz & Liu, NeurIPS 2021):

1. Refuse fixed-size sampling, and check against the budget the round as planned (noise
   shares of ``min_clients`` survivors) before any message is sent.
2. Run SecAgg+ with the round's :class:`~privfl.ddp.params.DdpParams` in the config; clients
   encode with :func:`~privfl.ddp.client.ddp_mod` (clip, rotate, scale, round, add noise, wrap).
3. Once the masked inputs are in and *before* any unmask request: refuse the round
   (:class:`~privfl.errors.ProtocolAbort`) if fewer than ``min_clients`` survived, and check
   the round accounted with the noise shares actually in the sum (the survivors) against the
   budget (:class:`~privfl.errors.BudgetExceededError`). Nothing is unmasked otherwise.
4. Unmask, decode (unwrap, rescale, rotate back), divide by the expected client count.
5. Record ``PoissonSampledEvent(q, event(survivors))`` in the ledger (locality "distributed").

Two guarantees are reported. ``ledger`` amplifies by Poisson sampling: it holds toward
anyone who sees the released models but not who took part (as in both papers). The server
sees who sent a masked input, so toward the server itself only the unamplified guarantee
holds: ``server_ledger`` records the same releases with q = 1, and the round metrics carry
both epsilons. Accounting counts the survivors' noise shares as the sum's noise and one
client's rounded vector as what changes (the papers' analysis).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from privfl.accounting import PoissonSampledEvent, PrivacyBudget, PrivacyLedger
from privfl.accounting.checks import check_delta, integer
from privfl.core.exchange import Aggregate, ClientResult, Exchange, RoundSpec
from privfl.ddp.mechanism import decode_sum
from privfl.ddp.params import DdpParams, plan_ddp
from privfl.ddp.rotation import rotation_seed
from privfl.errors import ConfigError, ProtocolAbort
from privfl.secagg.config import RoundParams, SecAggConfig
from privfl.secagg.identity import SignedRoster
from privfl.secagg.server import secagg_exchange


class DistributedDp:
    """Distributed DP on SecAgg+: the sum the server unmasks already holds every survivor's noise share.

    ``FedAvg(aggregator=DistributedDp(params, min_clients=80, semi_honest=True))`` with clients
    wrapped in ``ddp_mod(semi_honest=True)`` (:func:`privfl.ddp.client.ddp_mod`), or with a
    ``roster`` and ``ddp_mod(trust=...)`` against an active server, as for
    :class:`~privfl.secagg.SecAggPlusAggregator`; :meth:`from_targets` chooses ``params``.

    Args:
        params: the encoding (mechanism, clip norm, gamma, local noise, bits).
        min_clients: fewest survivors a round may have; the noise shares are sized so that
            this many reach the target, and a round with fewer is refused before unmasking.
        budget: optional total (epsilon, delta); a round that would exceed it is refused.
        delta: delta for the reported epsilons (default: the budget's).
        roster, semi_honest: the SecAgg+ trust model (exactly one of them).
        secagg: further :class:`SecAggConfig` settings (``dropout``, ``corruption``,
            ``num_neighbours``, ``threshold``, ...); its quantiser fields are fixed by the encoding.
    """

    weighting = "uniform"

    def __init__(
        self,
        params: DdpParams,
        *,
        min_clients: int,
        budget: PrivacyBudget | None = None,
        delta: float | None = None,
        roster: SignedRoster | None = None,
        semi_honest: bool = False,
        **secagg: Any,
    ) -> None:
        if (roster is None) != semi_honest:
            raise ConfigError(
                "choose the SecAgg+ trust model: DistributedDp(..., roster=signed_roster) against an active "
                "server, or DistributedDp(..., semi_honest=True) to trust the server to follow the protocol"
            )
        self.roster = roster
        if not isinstance(params, DdpParams):
            raise ConfigError(f"params must be DdpParams, got {params!r}")
        self.params = params
        self.min_clients = integer(min_clients, "min_clients", 2)
        self.delta = check_delta(delta) if delta is not None else (budget.delta if budget is not None else None)
        self.ledger = PrivacyLedger(budget=budget)
        self.server_ledger = PrivacyLedger()
        # The quantiser fields are unused (the DDP encoder replaces it); m = bits of the encoding.
        fixed = {"coordinate_bound", "bits", "max_weight", "weighting", "modulus_bits"} & set(secagg)
        if fixed:
            raise ConfigError(f"{sorted(fixed)} are set by the distributed-DP encoding, not by the caller")
        self.secagg = SecAggConfig(
            coordinate_bound=params.clip,
            bits=1,
            max_weight=1,
            weighting="uniform",
            modulus_bits=params.bits,
            **secagg,
        )

    @classmethod
    def from_targets(
        cls,
        *,
        mechanism: str,
        dimension: int,
        clip: float,
        bits: int,
        epsilon: float,
        delta: float,
        rounds: int,
        sampling_rate: float,
        expected_clients: int,
        min_clients: int,
        enforce_budget: bool = True,
        **kwargs: Any,
    ) -> DistributedDp:
        """Plan the parameters with :func:`~privfl.ddp.params.plan_ddp` (shares sized for ``min_clients``)."""
        plan = plan_ddp(
            mechanism=mechanism,
            dimension=dimension,
            clip=clip,
            bits=bits,
            epsilon=epsilon,
            delta=delta,
            rounds=rounds,
            sampling_rate=sampling_rate,
            expected_clients=expected_clients,
            min_clients=min_clients,
        )
        budget = PrivacyBudget(epsilon, delta) if enforce_budget else None
        return cls(plan.params, min_clients=min_clients, budget=budget, delta=delta, **kwargs)

    def _check_survivors(self, spec: RoundSpec, survivors: tuple[int, ...]) -> None:
        """Called before unmasking: refuse a round whose survivors cannot carry the budget."""
        if len(survivors) < self.min_clients:
            raise ProtocolAbort(
                f"round {spec.server_round}: {len(survivors)} survivors hold too little noise (the shares are sized "
                f"for at least {self.min_clients}); refusing to unmask"
            )
        self.ledger.check(PoissonSampledEvent(spec.sampling.rate, self.params.event(len(survivors))))

    def aggregate(self, spec: RoundSpec) -> Exchange[Aggregate]:
        if not spec.sampling.poisson:
            raise ConfigError("distributed DP is accounted for Poisson client sampling (e.g. PoissonSampler(q))")
        size = sum(int(np.size(v)) for v in spec.parameters.values())
        if size != self.params.dimension:
            raise ConfigError(f"the model has {size} values, the distributed-DP parameters {self.params.dimension}")
        q = spec.sampling.rate
        self.ledger.check(PoissonSampledEvent(q, self.params.event(self.min_clients)))
        round_spec = dataclasses.replace(spec, config={**spec.config, **self.params.to_config()})

        def before_unmask(_: RoundParams, survivors: tuple[int, ...]) -> None:
            self._check_survivors(spec, survivors)

        result = yield from secagg_exchange(
            round_spec, self.secagg, self.roster, vector_length=self.params.padded, before_unmask=before_unmask
        )
        survivors = result.survivors
        flat = decode_sum(result.total, self.params, rotation_seed(spec.run_id, spec.server_round, spec.parameters))
        event = self.params.event(len(survivors))
        note = f"{self.params.mechanism}, {len(survivors)} noise shares, {self.params.bits} bits"
        self.ledger.record(
            PoissonSampledEvent(q, event), server_round=spec.server_round, locality="distributed", note=note
        )
        self.server_ledger.record(event, server_round=spec.server_round, locality="distributed", note=note)
        update_sum, offset = {}, 0
        for name, value in spec.parameters.items():
            update_sum[name] = flat[offset : offset + int(np.size(value))].reshape(np.shape(value))
            offset += int(np.size(value))
        p = self.params
        metrics = {
            "ddp_noise_std": math.sqrt(len(survivors) * p.local_variance) * p.gamma,
            "ddp_gamma": p.gamma,
            "ddp_bits": float(p.bits),
            "ddp_expected_clients": spec.sampling.expected_clients,
            "secagg.active_server": 0.0 if self.roster is None else 1.0,
        }
        if self.delta is not None:
            metrics["dp_epsilon"] = self.ledger.epsilon(self.delta)
            metrics["ddp_epsilon_vs_server"] = self.server_ledger.epsilon(self.delta)
        for stage, lost in result.dropped.items():
            metrics[f"{stage}.dropped"] = float(len(lost))
        return Aggregate(
            update_sum=update_sum,
            weight_sum=spec.sampling.expected_clients,
            num_clients=len(survivors),
            results=[ClientResult(u, 0, {}) for u in survivors],
            dropped=tuple(u for u in spec.nodes if u not in set(survivors)),
            metrics=metrics,
        )

    def state_dict(self) -> dict[str, Any]:
        return {"ledger": self.ledger.state_dict(), "server_ledger": self.server_ledger.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.ledger.load_state_dict(state["ledger"])
        self.server_ledger.load_state_dict(state["server_ledger"])
