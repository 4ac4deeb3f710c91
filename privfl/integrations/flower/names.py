"""privfl metric names on the Flower side: one style (Flower's kebab-case), epsilons aggregated as a maximum.

privfl's protocols name metrics ``dp_epsilon`` or ``secagg.setup.dropped``; in
Flower's history and logs they appear as ``dp-epsilon`` and
``secagg-setup-dropped``, the style of Flower's own ``num-examples``. Per-client
epsilons (e.g. local DP's) are a privacy statement about each client: the run's is
the largest, never Flower's example-weighted average.
"""

from __future__ import annotations

from collections.abc import Mapping

from flwr.common import Metrics

from privfl.core.names import NUM_EXAMPLES


def flower_name(key: str) -> str:
    """``dp_epsilon`` -> ``dp-epsilon``; ``secagg.setup.dropped`` -> ``secagg-setup-dropped``."""
    return key.replace("_", "-").replace(".", "-")


def flower_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    """``metrics`` with Flower-style names."""
    return {flower_name(k): v for k, v in metrics.items()}


def round_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    """A protocol's round metrics for Flower's history, Flower-style; an example count that SecAgg+
    hides under uniform weights (reported as 0) is left out rather than shown as ``num-examples`` 0."""
    return flower_metrics({k: v for k, v in metrics.items() if not (k == NUM_EXAMPLES and v == 0)})


def is_epsilon(key: str) -> bool:
    return "epsilon" in flower_name(key).split("-")


def aggregate_client_metrics(results: list[tuple[int, Metrics]]) -> Metrics:
    """Client metrics for a strategy's ``fit_metrics_aggregation_fn``: epsilons by maximum, numbers by
    example-weighted mean, all under Flower-style names.

    Example::

        FedAvg(..., fit_metrics_aggregation_fn=aggregate_client_metrics)
    """
    total = sum(n for n, _ in results)
    out: Metrics = {}
    for key in sorted({k for _, m in results for k in m}):
        values = [(n, m[key]) for n, m in results if isinstance(m.get(key), (int, float))]
        values = [(n, v) for n, v in values if not isinstance(v, bool)]
        if not values:
            continue
        if is_epsilon(key):
            out[flower_name(key)] = max(v for _, v in values)
        elif total > 0:
            out[flower_name(key)] = sum(n * v for n, v in values) / max(sum(n for n, _ in values), 1)
    return out
