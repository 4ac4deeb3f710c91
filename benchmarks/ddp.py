"""Client-side cost of distributed DP: the exact samplers and the whole encoder, side by side.

Run: ``python benchmarks/ddp.py [--dim 1024] [--repeats 5]``

Prints, for one client's vector of ``--dim`` values: the exact discrete Gaussian sampler
(integer arithmetic, :func:`privfl.ddp.samplers.discrete_gaussian_exact`) against the
float-decided one of :func:`privfl.dp.noise.discrete_gaussian` and against Skellam; and the
whole distributed-DP encoder (clip, rotate, round, noise, wrap) against the plain SecAgg+
quantiser. Best of ``--repeats`` timings, all in one run.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

from privfl.ddp.mechanism import encode
from privfl.ddp.params import DdpParams
from privfl.ddp.samplers import discrete_gaussian_exact, skellam
from privfl.dp.noise import discrete_gaussian
from privfl.secagg.quantization import Quantizer


def best(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    d, r = args.dim, args.repeats
    variance = 246150.0  # the per-client sigma^2 planned for digits at 16 bits, epsilon 3 (integer units)
    rows = [
        ("discrete Gaussian, float-decided (dp.noise)", best(lambda: discrete_gaussian(d, variance**0.5), r)),
        ("discrete Gaussian, exact (ddp.samplers)", best(lambda: discrete_gaussian_exact(d, variance), r)),
        ("Skellam (ddp.samplers)", best(lambda: skellam(d, variance), r)),
    ]
    update = np.random.default_rng(0).normal(size=d) * 0.03
    quantizer = Quantizer(8.0, 16)
    for mechanism in ("ddg", "skellam"):
        params = DdpParams(mechanism, d, 1.0, 5e-4, variance, 16)
        rows.append((f"distributed-DP encoder ({mechanism})", best(lambda p=params: encode(update, p, bytes(32)), r)))
    rows.append(("SecAgg+ quantiser (no DP)", best(lambda: quantizer.quantize(update, np.dtype(np.uint32)), r)))
    base = rows[0][1]
    print(f"one client vector of {d} values, best of {r} (a shared, loaded machine: compare ratios)")
    print(f"{'':48s} {'ms':>9s} {'x float DG':>11s}")
    for name, seconds in rows:
        print(f"{name:48s} {seconds * 1e3:9.2f} {seconds / base:11.1f}")


if __name__ == "__main__":
    main()
