"""Accounting speed and tightness: privfl vs Opacus vs dp_accounting, side by side in one run.

For the same 10,000-round Poisson-subsampled Gaussian computation, times epsilon with
privfl's RDP accountant (cold: curves recomputed; warm: per-(q, z) curve cached), Opacus'
RDP accountant, dp_accounting's RDP accountant and, for reference, dp_accounting's PLD
accountant; then times noise calibration (privfl RDP and PLD, Opacus). Each library uses
its own default order grid. Times are medians of repeated runs on this machine.

    .venv/bin/python benchmarks/accounting.py
"""

from __future__ import annotations

import statistics
import time
import warnings
from collections.abc import Callable

import dp_accounting
from opacus.accountants import RDPAccountant
from opacus.accountants.utils import get_noise_multiplier

from privfl.accounting import GaussianEvent, PoissonSampledEvent, RdpAccountant, calibrate_noise_multiplier
from privfl.accounting.accountant import _step_rdp

ROUNDS = 10_000
DELTA = 1e-5
CASES = [("cross-silo", 0.01, 1.0, 2.0), ("cross-device", 1e-3, 1.0, 0.5)]  # name, q, z, calibration target eps


def timed(fn: Callable[[], float], repeats: int) -> tuple[float, float]:
    """(median seconds, result of the last call)."""
    times, result = [], 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def privfl_cold(q: float, z: float) -> float:
    _step_rdp.cache_clear()
    return privfl_warm(q, z)


def privfl_warm(q: float, z: float) -> float:
    """Epsilon of ROUNDS steps with privfl's RDP accountant (per-step curve from the cache if present)."""
    return RdpAccountant().compose(PoissonSampledEvent(q, GaussianEvent(z)), ROUNDS).get_epsilon(DELTA)


def opacus_rdp(q: float, z: float) -> float:
    acc = RDPAccountant()
    acc.history = [(z, q, ROUNDS)]
    return acc.get_epsilon(DELTA)


def google(accountant_cls: type) -> Callable[[float, float], float]:
    def run(q: float, z: float) -> float:
        acc = accountant_cls()
        acc.compose(dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(z)), ROUNDS)
        return acc.get_epsilon(DELTA)

    return run


ROWS: list[tuple[str, Callable[[float, float], float], int]] = [
    ("privfl RDP (cold)", privfl_cold, 15),
    ("privfl RDP (cached curve)", privfl_warm, 15),
    ("Opacus RDP", opacus_rdp, 7),
    ("dp_accounting RDP", google(dp_accounting.rdp.RdpAccountant), 7),
    ("dp_accounting PLD (reference)", google(dp_accounting.pld.PLDAccountant), 3),
]


CALIBRATORS: list[tuple[str, Callable[[float, float], float]]] = [
    (
        "privfl RDP (Brent)",
        lambda q, eps: calibrate_noise_multiplier(epsilon=eps, delta=DELTA, sampling_rate=q, rounds=ROUNDS),
    ),
    (
        "privfl PLD (Brent)",
        lambda q, eps: calibrate_noise_multiplier(
            epsilon=eps, delta=DELTA, sampling_rate=q, rounds=ROUNDS, accountant="pld"
        ),
    ),
    (
        "Opacus get_noise_multiplier",
        lambda q, eps: get_noise_multiplier(
            target_epsilon=eps, target_delta=DELTA, sample_rate=q, steps=ROUNDS, accountant="rdp"
        ),
    ),
]


def main() -> None:
    warnings.simplefilter("ignore")  # Opacus warns that its grid stops at 63
    print(f"epsilon of {ROUNDS} rounds of the Poisson-subsampled Gaussian at delta={DELTA:g}")
    for name, q, z, _ in CASES:
        print(f"\n{name}: q={q:g}, z={z:g}")
        print(f"  {'accountant':<30} {'time (ms)':>10} {'x privfl':>9} {'epsilon':>10} {'eps / privfl':>13}")
        base_t = base_eps = 0.0
        for label, fn, repeats in ROWS:
            t, eps = timed(lambda fn=fn, q=q, z=z: fn(q, z), repeats)
            if not base_t:
                base_t, base_eps = t, eps
            print(f"  {label:<30} {t * 1e3:>10.2f} {t / base_t:>9.3g} {eps:>10.5f} {eps / base_eps:>13.6f}")

    print(f"\nnoise calibration ({ROUNDS} rounds, delta={DELTA:g})")
    print(
        f"  {'case':<14} {'target eps':>10} {'method':<30} {'time (s)':>9} {'noise mult.':>12} {'eps (privfl RDP)':>17}"
    )
    for name, q, _, target in CASES:
        for label, calibrate in CALIBRATORS:
            _step_rdp.cache_clear()
            t, noise = timed(lambda calibrate=calibrate, q=q, target=target: calibrate(q, target), 1)
            print(f"  {name:<14} {target:>10g} {label:<30} {t:>9.3f} {noise:>12.6f} {privfl_warm(q, noise):>17.6f}")


if __name__ == "__main__":
    main()
