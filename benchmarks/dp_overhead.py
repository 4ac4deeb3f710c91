"""Cost of the DP aggregation wrappers relative to plain FedAvg aggregation, side by side in one run.

For models of 10^6 and 10^7 float32 parameters and K client replies per round, times one
server-side FedAvg round (aggregation exchange plus applying the mean update; client
training and the wire codec are excluded, replies are prepared in advance) with:

- plain: ``PlainAggregator()`` (example-weighted, no DP);
- central DP, server clips: ``CentralDp.with_server_clipping`` (clip each update + noise on the sum);
- central DP, clients clip: ``CentralDp(PlainAggregator("uniform"))`` (noise on the sum only);
- adaptive clipping: ``AdaptiveClippingDp`` (clip + count + noise).

and, to separate the noise source's share, the time to draw d Gaussians from the ChaCha20
CSPRNG (privfl.dp.noise) and from numpy's PCG64 (not cryptographic). Medians of repeats.

    .venv/bin/python benchmarks/dp_overhead.py [--clients 10] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from functools import partial

import numpy as np

from privfl.core.exchange import RoundSpec, SamplingInfo
from privfl.core.message import Message
from privfl.core.names import NUM_EXAMPLES
from privfl.core.plain import PlainAggregator
from privfl.dp import AdaptiveClippingDp, CentralDp, gaussian_noise
from privfl.server.strategy import FedAvg


def round_spec(dim: int, clients: int) -> RoundSpec:
    params = {"w": np.zeros(dim, np.float32)}
    sampling = SamplingInfo(population=clients * 10, rate=0.1, poisson=True)
    return RoundSpec(0, 1, tuple(range(1, clients + 1)), params, {}, sampling)


def prepared_replies(spec: RoundSpec) -> dict[int, Message]:
    rng = np.random.default_rng(0)  # synthetic updates, not privacy noise
    dim = spec.parameters["w"].size
    return {
        node: spec.message_to(node).reply(
            arrays={"w": (rng.standard_normal(dim, dtype=np.float32) * 1e-3)}, metrics={NUM_EXAMPLES: 10 + node}
        )
        for node in spec.nodes
    }


def one_round(strategy: FedAvg, spec: RoundSpec, replies: dict[int, Message]) -> None:
    exchange = strategy.fit_round(spec)
    outbox = next(exchange)
    try:
        while True:
            outbox = exchange.send(iter([replies[m.metadata.dst_node] for m in outbox]))
    except StopIteration:
        pass


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=10, help="client replies per round (K)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    wrappers: dict[str, Callable[[], object]] = {
        "plain FedAvg aggregation": PlainAggregator,
        "central DP, server clips": lambda: CentralDp.with_server_clipping(noise_multiplier=1.0, clip_norm=1.0),
        "central DP, clients clip": lambda: CentralDp(
            PlainAggregator(weighting="uniform"), noise_multiplier=1.0, clip_norm=1.0
        ),
        "adaptive clipping": lambda: AdaptiveClippingDp(
            noise_multiplier=1.0, initial_clip_norm=1.0, count_noise_std=args.clients / 20 + 1
        ),
    }
    print(f"one server round, K={args.clients} client replies, float32 parameters, median of {args.repeats}")
    for dim in (10**6, 10**7):
        spec = round_spec(dim, args.clients)
        replies = prepared_replies(spec)
        times = {}
        for name, make in wrappers.items():
            strategy = FedAvg(aggregator=make(), min_clients=0)
            times[name] = median_seconds(partial(one_round, strategy, spec, replies), args.repeats)
        base = times["plain FedAvg aggregation"]
        print(f"\nd = {dim:,} parameters")
        print(f"  {'aggregation':<28} {'seconds':>9} {'vs plain':>9}")
        for name, seconds in times.items():
            print(f"  {name:<28} {seconds:9.3f} {seconds / base:8.2f}x")
        csprng = median_seconds(partial(gaussian_noise, dim, 1.0), args.repeats)
        numpy_time = median_seconds(partial(np.random.default_rng().standard_normal, dim), args.repeats)
        print(
            f"  noise alone: {dim:,} Gaussians from ChaCha20 {csprng:.3f} s, from numpy PCG64 {numpy_time:.3f} s "
            f"({csprng / numpy_time:.1f}x)"
        )


if __name__ == "__main__":
    main()
