"""Inverse accounting: the smallest noise multiplier that meets a target (epsilon, delta)."""

from __future__ import annotations

import math
import warnings

from scipy import optimize

from privfl.accounting.accountant import check_accountant_name, make_accountant
from privfl.accounting.checks import check_count, check_delta, check_epsilon, check_sampling_rate
from privfl.accounting.events import GaussianEvent, PoissonSampledEvent
from privfl.errors import AccountingError

#: Noise multipliers searched; below 0.02 the mechanism is essentially noiseless, above 1e5
#: the utility is nil.
NOISE_BRACKET = (0.02, 1e5)
_LOG_Z_TOL = {"rdp": 1e-8, "pld": 1e-4}  # Brent tolerance on log(z); PLD epsilons are slow to compute


def epsilon_for(
    *, noise_multiplier: float, sampling_rate: float, rounds: int, delta: float, accountant: str = "rdp"
) -> float:
    """Epsilon of ``rounds`` Poisson-sampled Gaussian steps (q = sampling_rate) at ``delta``."""
    event = PoissonSampledEvent(sampling_rate, GaussianEvent(noise_multiplier))
    return make_accountant(accountant).compose(event, check_count(rounds, "rounds")).get_epsilon(delta)


def calibrate_noise_multiplier(
    *, epsilon: float, delta: float, sampling_rate: float, rounds: int, accountant: str = "rdp"
) -> float:
    """Smallest noise multiplier z such that ``rounds`` steps of the Poisson-sampled Gaussian
    (sampling rate q, noise std z times the sensitivity) are (epsilon, delta)-DP.

    Brent's method on log(z) inside :data:`NOISE_BRACKET` (to 1e-8 relative in z with RDP,
    1e-4 with the slower PLD), then a check that the returned z meets the target, nudging
    it up by at most 16 tolerances if the root landed just below. Raises AccountingError
    when no z in the bracket meets the target.
    """
    target = check_epsilon(epsilon)
    delta = check_delta(delta)
    q = check_sampling_rate(sampling_rate)
    rounds = check_count(rounds, "rounds")
    check_accountant_name(accountant)

    def excess(log_z: float) -> float:
        with warnings.catch_warnings():  # grid-edge warnings while searching are noise
            warnings.simplefilter("ignore")
            eps = epsilon_for(
                noise_multiplier=math.exp(log_z), sampling_rate=q, rounds=rounds, delta=delta, accountant=accountant
            )
        return eps - target

    # Grow a bracket outward from a start (epsilon falls as z grows). PLD is slow and needs
    # a little less noise than RDP, so it starts from the RDP answer with finer steps.
    if accountant == "pld":
        start = math.log(calibrate_noise_multiplier(epsilon=target, delta=delta, sampling_rate=q, rounds=rounds))
        step = math.log(1.25)
    else:
        start, step = 0.0, math.log(2.0)
    lo = hi = start
    f_lo = f_hi = excess(start)
    while f_hi > 0:
        lo, f_lo, hi = hi, f_hi, hi + step
        if hi > math.log(NOISE_BRACKET[1]):
            raise AccountingError(
                f"no noise multiplier up to {NOISE_BRACKET[1]:g} reaches epsilon={target} at delta={delta} "
                f"with q={q} over {rounds} rounds"
            )
        f_hi = excess(hi)
    while f_lo <= 0:
        hi, f_hi, lo = lo, f_lo, lo - step
        if lo < math.log(NOISE_BRACKET[0]):
            raise AccountingError(
                f"epsilon={target} at delta={delta} with q={q} over {rounds} rounds is met even with "
                f"noise multiplier {NOISE_BRACKET[0]:g}; the target is too loose to calibrate"
            )
        f_lo = excess(lo)
    log_z = optimize.brentq(excess, lo, hi, xtol=_LOG_Z_TOL[accountant], rtol=1e-12)
    for step in (0.0, 1.0, 4.0, 16.0):  # final check: never return noise that misses the target
        z = math.exp(log_z + step * _LOG_Z_TOL[accountant])
        if excess(math.log(z)) <= 0:
            return z
    raise AccountingError(f"calibration did not converge for epsilon={target}, delta={delta}, q={q}")
