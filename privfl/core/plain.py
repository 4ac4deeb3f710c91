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
from privfl.core.names import LOSS, NUM_EXAMPLES, REJECTED, WORST_CASE_METRICS, check_num_examples
from privfl.errors import ConfigError, MessageError, ProtocolError

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
            except (MessageError, ProtocolError) as exc:  # invalid or misrouted: the sender is a dropout
                rejected.append(Rejection.of(reply, spec.kind.value, exc))
                continue
            weight = float(num_examples) if self.weighting == "examples" else 1.0
            self._accumulate(total, reply.arrays, spec.parameters, weight)
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

    def _accumulate(self, total: ArrayDict, arrays: ArrayDict, reference: ArrayDict, weight: float) -> None:
        """``total += weight * transform(arrays - reference)``, name by name (1.0 * x == x: no multiply)."""
        if self.transform is None:
            for name, ref in reference.items():
                _add_scaled_difference(total[name], arrays[name], ref, weight)
            return
        update = self.transform({name: np.subtract(arrays[name], ref) for name, ref in reference.items()})
        for name, value in update.items():
            total[name] += value if weight == 1.0 else weight * value

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        del state


_CHUNK = 1 << 16
"""Elements per step of :func:`_add_scaled_difference`: a float32 scratch of 256 KiB stays in cache."""


def _add_scaled_difference(total: np.ndarray, new: np.ndarray, ref: np.ndarray, weight: float) -> None:
    """``total += weight * (new - ref)`` for float arrays, in cache-sized steps.

    Large models are bound by memory traffic: one pass over ``new``, ``ref`` and
    ``total`` instead of three, with no model-sized temporary. Every element goes
    through the same operations in the same dtypes as the whole-array expression, so
    the sums are the same bit for bit.
    """
    dtype = np.result_type(new, ref)
    if dtype.kind != "f" or new.shape != total.shape:
        total += weight * np.subtract(new, ref) if weight != 1.0 else np.subtract(new, ref)
        return
    out, new, ref = total.reshape(-1), new.reshape(-1), ref.reshape(-1)
    scratch = np.empty(min(_CHUNK, out.size), dtype=dtype)
    for start in range(0, out.size, _CHUNK):
        stop = min(start + _CHUNK, out.size)
        diff = np.subtract(new[start:stop], ref[start:stop], out=scratch[: stop - start])
        if weight != 1.0:
            diff *= weight
        out[start:stop] += diff


def validate_fit_reply(reply: Message, spec: RoundSpec, seen: set[int]) -> tuple[int, int]:
    """Check a plain fit reply against the round; return (node id, number of examples).

    Raises:
        ProtocolError: the header (run, round, kind, stage, addressee, sender) does not fit the round.
        MessageError: the array layout or values, or ``num_examples``, is invalid.
    """
    node = check_reply(reply, spec, seen)
    check_same_layout(spec.parameters, reply.arrays, f"reply from node {node}")
    for name, arr in reply.arrays.items():
        if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
            raise MessageError(f"reply from node {node}: array {name!r} has non-finite values")
    return node, check_num_examples(reply.metrics.get(NUM_EXAMPLES), f"reply from node {node}")


def weighted_client_metrics(results: list[tuple[int, dict[str, float]]]) -> dict[str, float]:
    """Example-weighted means of numeric client metrics (``num_examples`` itself is summed).

    Per-client privacy guarantees (:data:`~privfl.core.names.WORST_CASE_METRICS`, e.g. local
    epsilons) are reported as their maximum: the run protects every client only as well as
    it protects the worst-off one, so an average would overstate the guarantee.
    """
    total = sum(n for n, _ in results)
    out: dict[str, float] = {NUM_EXAMPLES: float(total)}
    if total <= 0:
        return out
    keys = {k for _, m in results for k in m if k != NUM_EXAMPLES}
    for key in sorted(keys):
        pairs = [(n, m[key]) for n, m in results if key in m]
        if key in WORST_CASE_METRICS:
            out[key] = float(max(v for _, v in pairs))
            continue
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
        except (MessageError, ProtocolError):
            rejected += 1
    metrics = weighted_client_metrics(results)
    if rejected:
        metrics[REJECTED] = float(rejected)
    return metrics


def _validate_evaluate_reply(reply: Message, spec: RoundSpec, seen: set[int]) -> tuple[int, dict[str, float]]:
    node = check_reply(reply, spec, seen)
    n = check_num_examples(reply.metrics.get(NUM_EXAMPLES), f"evaluate reply from node {node}")
    loss = reply.metrics.get(LOSS)
    if isinstance(loss, bool) or not isinstance(loss, int | float) or not np.isfinite(loss):
        raise MessageError(f"evaluate reply from node {node}: {LOSS} must be a finite number, got {loss!r}")
    return n, dict(reply.metrics)
