"""Plain (non-secure) protocols: summing updates in the clear, and federated evaluation.

Other aggregators (SecAgg+, CKKS, DP wrappers) produce the same :class:`Aggregate`,
so a strategy does not care how the sum was obtained.

A reply that fails validation (wrong header, layout, dtype, non-finite values, a
bad ``num_examples``, a second reply from the same node) is recorded as a
:class:`~privfl.core.exchange.Rejection` and its sender counts as dropped; it never
aborts the round by itself. Whether enough clients remain is the strategy's call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from privfl.core.exchange import Aggregate, ClientResult, Exchange, Rejection, RoundSpec, check_reply, zeros_like
from privfl.core.message import ArrayDict, Message, check_same_layout
from privfl.core.names import LOSS, NUM_EXAMPLES, REJECTED
from privfl.errors import ConfigError, MessageError

UpdateTransform = Callable[[ArrayDict], ArrayDict]
"""Applied by the server to each client's update (local minus global) before summing."""

WEIGHTINGS = ("examples", "uniform")


@dataclass(frozen=True)
class PlainAggregator:
    """Sum client updates in the clear, weighted by example count or uniformly.

    Args:
        weighting: ``"examples"`` (FedAvg, McMahan et al. 2017) or ``"uniform"``.
        transform: optional per-update transform applied before weighting (e.g.
            server-side clipping for central DP).
    """

    weighting: str = "examples"
    transform: UpdateTransform | None = None

    def __post_init__(self) -> None:
        if self.weighting not in WEIGHTINGS:
            raise ConfigError(f"weighting must be one of {WEIGHTINGS}, got {self.weighting!r}")

    def aggregate(self, spec: RoundSpec) -> Exchange[Aggregate]:
        replies = yield [spec.message_to(node) for node in spec.nodes]
        total = zeros_like(spec.parameters)
        weight_sum = 0.0
        results: list[ClientResult] = []
        rejected: list[Rejection] = []
        seen: set[int] = set()
        for reply in replies:
            try:
                node, num_examples = validate_fit_reply(reply, spec, seen)
            except MessageError as exc:
                rejected.append(Rejection.of(reply, spec.kind.value, exc))
                continue
            update = {name: reply.arrays[name] - spec.parameters[name] for name in spec.parameters}
            if self.transform is not None:
                update = self.transform(update)
            weight = float(num_examples) if self.weighting == "examples" else 1.0
            for name, value in update.items():
                total[name] += weight * value
            weight_sum += weight
            results.append(ClientResult(node, num_examples, dict(reply.metrics)))
        contributed = {r.node_id for r in results}
        return Aggregate(
            update_sum=total,
            weight_sum=weight_sum,
            num_clients=len(results),
            results=results,
            dropped=tuple(n for n in spec.nodes if n not in contributed),
            metrics={REJECTED: float(len(rejected))} if rejected else {},
            rejected=tuple(rejected),
        )

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        del state


def validate_fit_reply(reply: Message, spec: RoundSpec, seen: set[int]) -> tuple[int, int]:
    """Check a plain fit reply against the round; return (node id, number of examples).

    Raises:
        MessageError: the header, array layout or values, or ``num_examples`` is invalid.
    """
    node = check_reply(reply, spec, seen)
    check_same_layout(spec.parameters, reply.arrays, f"reply from node {node}")
    for name, arr in reply.arrays.items():
        if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
            raise MessageError(f"reply from node {node}: array {name!r} has non-finite values")
    return node, _num_examples(reply, node)


def _num_examples(reply: Message, node: int) -> int:
    """The reply's ``num_examples``: a non-negative int (a bool is not a count)."""
    value = reply.metrics.get(NUM_EXAMPLES)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise MessageError(f"reply from node {node}: {NUM_EXAMPLES} must be a non-negative int, got {value!r}")
    return value


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


def evaluate_exchange(spec: RoundSpec) -> Exchange[dict[str, float]]:
    """Federated evaluation: send the model, return example-weighted mean loss and metrics.

    Invalid replies are left out and counted under ``rejected`` (see the module docstring).
    """
    replies = yield [spec.message_to(node) for node in spec.nodes]
    results: list[tuple[int, dict[str, float]]] = []
    rejected = 0
    seen: set[int] = set()
    for reply in replies:
        try:
            results.append(_validate_evaluate_reply(reply, spec, seen))
        except MessageError:
            rejected += 1
    metrics = weighted_client_metrics(results)
    if rejected:
        metrics[REJECTED] = float(rejected)
    return metrics


def _validate_evaluate_reply(reply: Message, spec: RoundSpec, seen: set[int]) -> tuple[int, dict[str, float]]:
    node = check_reply(reply, spec, seen)
    n = _num_examples(reply, node)
    loss = reply.metrics.get(LOSS)
    if isinstance(loss, bool) or not isinstance(loss, int | float) or not np.isfinite(loss):
        raise MessageError(f"evaluate reply from node {node}: {LOSS} must be a finite number, got {loss!r}")
    return n, dict(reply.metrics)
