"""The bad-event probability of a client floor, charged to delta instead of to the noise.

An inner aggregator with a client floor m (:class:`~privfl.core.exchange.ClientFloor`)
releases the sum of the sampled clients' clipped updates when at least m are sampled and
noise only otherwise (:mod:`privfl.dp.central`). With S' the Poisson sample of the clients
other than the target t, the target's presence moves the release by more than one clipped
update only when |S'| = m - 1 (0 turns into a sum of m updates); for |S'| <= m - 2 both
releases are noise only and for |S'| >= m both are sums. So the bad event is
B = {|S'| = m - 1}, of probability P[Binomial(N', q) = m - 1] with N' other clients, and
it has the same law with and without t. :func:`floor_slack` bounds it from above.
"""

from __future__ import annotations

import math
import sys

from privfl.accounting.checks import check_sampling_rate, integer

FLOOR_ACCOUNTING = ("delta", "sensitivity")
"""How a client floor m > 1 is paid for: a per-round delta slack, or noise for sensitivity m C."""

_ULP = sys.float_info.epsilon


def binomial_pmf_upper_bound(k: int, n: int, q: float) -> float:
    """An upper bound in float64 on P[Binomial(n, q) = k] = C(n, k) q^k (1 - q)^(n - k).

    Computed in log space (no underflow of (1 - q)^n for large n) and raised by a bound on
    the floating-point error: each of the three log terms is within a few ulp of its value
    (``math.log`` of an exact integer, ``log``, ``log1p``), so their sum is within
    8 ulp * (sum of their magnitudes); ``exp`` adds at most 1 ulp relative.
    """
    k = integer(k, "k", 0)
    n = integer(n, "n", 0)
    q = check_sampling_rate(q, "q")
    if k > n:
        return 0.0
    if q == 1.0:
        return 1.0 if k == n else 0.0
    terms = (math.log(math.comb(n, k)), k * math.log(q), (n - k) * math.log1p(-q))
    log_p = math.fsum(terms)
    slack = 8 * _ULP * math.fsum(abs(t) for t in terms)
    return min(1.0, math.exp(log_p + slack) * (1 + 4 * _ULP))


def floor_slack(population: int, rate: float, floor: int) -> float:
    """Upper bound on the probability, per round, of the bad event of a client floor (module docstring).

    ``population`` is N, the clients the sampler draws from (public, like q N). Add/remove-one
    neighbours of that population have N - 1 other clients (t removed) or N (t added), so
    the bound is the larger of P[Bin(N - 1, q) = m - 1] and P[Bin(N, q) = m - 1].
    A floor of 1 has no bad event: below it the empty sum, 0, is what is released.
    """
    population = integer(population, "population", 0)
    floor = integer(floor, "floor", 1)
    if floor == 1:
        return 0.0
    return max(binomial_pmf_upper_bound(floor - 1, others, rate) for others in (max(population - 1, 0), population))
