"""Strategies: what the server does with a round's aggregate.

A strategy runs a round as a sans-IO exchange (see :mod:`privfl.server.exchange`)
and returns the next global model. :class:`FedAvg` delegates the collection of
updates to an :class:`~privfl.server.exchange.Aggregator` (plain, SecAgg+, or a
DP wrapper around either) and applies the mean update.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from privfl.client.app import LOSS, NUM_EXAMPLES
from privfl.core.message import ArrayDict
from privfl.errors import ConfigError, MessageError, ProtocolAbort
from privfl.server.aggregation import PlainAggregator
from privfl.server.exchange import Aggregator, Exchange, RoundSpec, check_reply


@dataclass
class FitOutcome:
    """Result of a training round.

    Attributes:
        parameters: the new global model, sent to clients next round.
        num_clients: clients whose update is in the aggregate.
        dropped: clients selected but not counted.
        metrics: server-side metrics of the round (weighted means of client metrics,
            protocol metrics).
    """

    parameters: ArrayDict
    num_clients: int
    dropped: tuple[int, ...] = ()
    metrics: dict[str, float] = field(default_factory=dict)


class Strategy(Protocol):
    """What the bundled loop (or the Flower adapter) needs from a server strategy."""

    def fit_round(self, spec: RoundSpec) -> Exchange[FitOutcome]: ...

    def evaluate_round(self, spec: RoundSpec) -> Exchange[dict[str, float]]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def weighted_client_metrics(results: list[tuple[int, dict[str, float]]]) -> dict[str, float]:
    """Example-weighted means of numeric client metrics (``num_examples`` itself is summed)."""
    total = sum(n for n, _ in results)
    out: dict[str, float] = {NUM_EXAMPLES: float(total)}
    if total <= 0:
        return out
    keys = {k for _, m in results for k in m if k != NUM_EXAMPLES}
    for key in sorted(keys):
        pairs = [(n, m[key]) for n, m in results if key in m]
        weight = sum(n for n, _ in pairs)
        if weight > 0:
            out[key] = float(sum(n * v for n, v in pairs) / weight)
    return out


@dataclass
class FedAvg:
    """Federated averaging (McMahan et al., AISTATS 2017) over any aggregator.

    The new model is ``global + server_lr * update_sum / weight_sum``: with plain
    example weighting this is the example-weighted mean of the clients' models.

    Args:
        aggregator: how updates are collected (plain by default; SecAgg+ or a DP
            wrapper for privacy).
        server_lr: server learning rate applied to the mean update.
        min_clients: a round with fewer contributing clients is aborted (model kept);
            0 lets a DP round with no sampled client still release its noise.
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
        agg = yield from self.aggregator.aggregate(spec)
        if agg.num_clients < self.min_clients or agg.weight_sum <= 0:
            raise ProtocolAbort(
                f"round {spec.server_round}: {agg.num_clients} client(s) contributed "
                f"(total weight {agg.weight_sum}), need at least {self.min_clients}"
            )
        scale = self.server_lr / agg.weight_sum
        new = {
            name: (value + scale * agg.update_sum[name]).astype(value.dtype, copy=False)
            for name, value in spec.parameters.items()
        }
        metrics = weighted_client_metrics([(r.num_examples, r.metrics) for r in agg.results])
        metrics.update(agg.metrics)
        return FitOutcome(parameters=new, num_clients=agg.num_clients, dropped=agg.dropped, metrics=metrics)

    def evaluate_round(self, spec: RoundSpec) -> Exchange[dict[str, float]]:
        return evaluate_exchange(spec)

    def state_dict(self) -> dict[str, Any]:
        return {"aggregator": self.aggregator.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.aggregator.load_state_dict(state.get("aggregator", {}))


def evaluate_exchange(spec: RoundSpec) -> Exchange[dict[str, float]]:
    """Federated evaluation: send the model, return example-weighted mean loss and metrics."""
    replies = yield [spec.message_to(node) for node in spec.nodes]
    results: list[tuple[int, dict[str, float]]] = []
    seen: set[int] = set()
    for reply in replies:
        node = check_reply(reply, spec, seen)
        n = reply.metrics.get(NUM_EXAMPLES)
        if not isinstance(n, int) or n < 0 or LOSS not in reply.metrics:
            raise MessageError(f"evaluate reply from node {node} lacks {NUM_EXAMPLES} or {LOSS}")
        if not np.isfinite(reply.metrics[LOSS]):
            raise MessageError(f"evaluate reply from node {node} has a non-finite loss")
        results.append((n, dict(reply.metrics)))
    return weighted_client_metrics(results)
