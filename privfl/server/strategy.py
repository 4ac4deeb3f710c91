"""Strategies: what the server does with a round's aggregate.

A strategy runs a round as a sans-IO exchange (see :mod:`privfl.core.exchange`)
and returns the next global model. :class:`FedAvg` delegates the collection of
updates to an :class:`~privfl.core.exchange.Aggregator` (plain, SecAgg+, or a
DP wrapper around either) and applies the mean update.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from privfl.core.exchange import Aggregator, Exchange, FitOutcome, RoundSpec
from privfl.core.plain import PlainAggregator, evaluate_exchange, weighted_client_metrics
from privfl.errors import ConfigError, ProtocolAbort


@dataclass
class FedAvg:
    """Federated averaging (McMahan et al., AISTATS 2017) over any aggregator.

    The new model is ``global + server_lr * update_sum / weight_sum``: with plain
    example weighting this is the example-weighted mean of the clients' models.

    Args:
        aggregator: how updates are collected (plain by default; SecAgg+ or a DP
            wrapper for privacy).
        server_lr: server learning rate applied to the mean update.
        min_clients: a round with fewer contributing clients is aborted (model kept).
            Not applied to a DP release (``Aggregate.dp_release``): whether a round aborts
            would then depend on who was sampled and leak it, so a DP round always releases.
    """

    aggregator: Aggregator = field(default_factory=PlainAggregator)
    server_lr: float = 1.0
    min_clients: int = 1

    def __post_init__(self) -> None:
        if not self.server_lr > 0:
            raise ConfigError(f"server_lr must be positive, got {self.server_lr}")
        if self.min_clients < 0:
            raise ConfigError(f"min_clients must be >= 0, got {self.min_clients}")

    def fit_round(self, spec: RoundSpec) -> Exchange[FitOutcome]:
        """One training round; aborts (ProtocolAbort) only when too few valid updates remain.

        Invalid replies are the aggregator's to reject; they reach the outcome as
        ``rejected`` and count as dropouts towards ``min_clients``.
        """
        agg = yield from self.aggregator.aggregate(spec)
        if not agg.dp_release and (agg.num_clients < self.min_clients or agg.weight_sum <= 0):
            raise ProtocolAbort(
                f"round {spec.server_round}: {agg.num_clients} client(s) contributed "
                f"(total weight {agg.weight_sum}), need at least {self.min_clients}"
                + (f"; {len(agg.rejected)} invalid repl(ies) rejected" if agg.rejected else "")
            )
        scale = self.server_lr / agg.weight_sum
        new = {
            name: (value + scale * agg.update_sum[name]).astype(value.dtype, copy=False)
            for name, value in spec.parameters.items()
        }
        metrics = weighted_client_metrics([(r.num_examples, r.metrics) for r in agg.results])
        metrics.update(agg.metrics)
        return FitOutcome(
            parameters=new, num_clients=agg.num_clients, dropped=agg.dropped, metrics=metrics, rejected=agg.rejected
        )

    def evaluate_round(self, spec: RoundSpec) -> Exchange[dict[str, float]]:
        return evaluate_exchange(spec)

    def state_dict(self) -> dict[str, Any]:
        return {"aggregator": self.aggregator.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.aggregator.load_state_dict(state.get("aggregator", {}))
