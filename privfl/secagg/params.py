"""SecAgg+ parameters (k, t) from n, the dropout rate and the corrupted fraction.

Bell et al., "Secure Single-Server Aggregation with (Poly)Logarithmic Overhead",
CCS'20 (ePrint 2020/704), Section 3, show SecAgg+ is secure and correct on a graph
of degree k with Shamir threshold t unless one of the bad events below happens;
Google's deployed parameter finder (federated-compute, ``graph_parameter_finder.cc``)
applies the same analysis to a Harary graph under a random relabelling of clients.
(The paper's lemma numbers could not be checked against its text here, so sections
and events are cited, not numbers.) Here both are computed from
exact binomial and hypergeometric tails, with a union bound over clients:

* **security** (probability <= 2^-security_bits): a fraction ``corruption`` of the
  n clients, chosen before the graph is drawn, colludes with a server that may send
  different survivor lists to different clients. The server learns an honest
  client's input if (E1) it holds t shares of both its self-mask seed and its mask
  key: the honest neighbours reveal one of the two each, the c corrupted ones both,
  so this needs c + (k - c) / 2 >= t, i.e. c >= 2t - k (the semi-malicious
  condition of Bell et al., Section 3; with c = 0 it is the familiar t > k / 2); or
  (E2) the graph of honest clients left after corrupted clients and dropouts are
  removed is disconnected, which reveals the partial sum of each component (Bell
  et al., Section 3, the connectivity property of their graphs).
* **availability** (probability <= ``abort_target``): with no adversary and each
  client dropping independently with probability ``dropout`` at any stage, the
  round aborts. The server recovers every client whose masks are in the sum as long
  as it has at least t surviving neighbours holding shares: a survivor's self-mask
  seed and a dropout's mask key each need t shares. Every client having at least t
  neighbours that answer the last stage (unmasking; they then also answered the
  consistency round, which needs t) is therefore sufficient for the round to finish,
  for the server's recovery from the t-core of live clients (``privfl.secagg.server``)
  as for any server that aborts only when a needed secret lacks t shares. The abort
  probability is bounded by the union over clients of P[Bin(k, 1 - dropout) < t]; for
  the complete graph it is exact: P[Bin(n, 1 - dropout) <= t]. The bound is
  conservative: it treats a client dropping at any stage as if it dropped at the last,
  while the server excludes early dropouts at no cost.

The dropout rate enters the security bound only through E2, assuming dropouts are
independent of the graph (Bell et al. make the same assumption for E2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from privfl.errors import ConfigError
from privfl.secagg.protocol import CIPHERTEXT_BYTES
from privfl.secagg.shamir import SHARE_BYTES

MIN_THRESHOLD = 2
"""t >= 2: with t = 1 a single share is a secret (and k = 1 leaves no t > k/2 above it)."""


# --- pure tail probabilities --------------------------------------------------------------


def _log_choose(n: int, r: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(r + 1) - math.lgamma(n - r + 1)


def binomial_pmf(trials: int, p: float, successes: int) -> float:
    """P[Bin(trials, p) = successes], computed in log space."""
    if not 0 <= successes <= trials:
        return 0.0
    if p in (0.0, 1.0):
        return float(successes == (trials if p == 1.0 else 0))
    log = _log_choose(trials, successes) + successes * math.log(p) + (trials - successes) * math.log1p(-p)
    return math.exp(log)


def binomial_tail(trials: int, p: float, at_least: int) -> float:
    """P[Bin(trials, p) >= at_least], the exact sum of the upper tail."""
    low = max(at_least, 0)
    if low > trials:
        return 0.0
    return min(1.0, math.fsum(binomial_pmf(trials, p, j) for j in range(low, trials + 1)))


def hypergeometric_pmf(population: int, marked: int, draws: int, hits: int) -> float:
    """P[X = hits] for X the marked items among ``draws`` drawn without replacement."""
    if not max(0, draws - (population - marked)) <= hits <= min(draws, marked):
        return 0.0
    return math.exp(
        _log_choose(marked, hits) + _log_choose(population - marked, draws - hits) - _log_choose(population, draws)
    )


def hypergeometric_tail(population: int, marked: int, draws: int, at_least: int) -> float:
    """P[X >= at_least] for the hypergeometric X of :func:`hypergeometric_pmf`."""
    low = max(at_least, 0)
    high = min(draws, marked)
    if low > high:
        return 0.0
    return min(1.0, math.fsum(hypergeometric_pmf(population, marked, draws, j) for j in range(low, high + 1)))


def corrupted_neighbour_bound(num_clients: int, num_neighbours: int, threshold: int, corrupted: int) -> float:
    """Union bound on E1: some honest client has at least 2t - k corrupted neighbours.

    An honest client's k neighbours are a uniformly random k-subset of the other n - 1
    clients (the graph is relabelled by a uniform permutation), so its corrupted
    neighbours are hypergeometric (n - 1, corrupted, k). Bell et al. CCS'20, Section 3.
    """
    honest = num_clients - corrupted
    if honest <= 0:
        return 1.0
    tail = hypergeometric_tail(num_clients - 1, corrupted, num_neighbours, 2 * threshold - num_neighbours)
    return min(1.0, honest * tail)


def harary_disconnection_bound(num_clients: int, num_neighbours: int, corrupted: int, dropout: float) -> float:
    """Union bound on E2: the honest survivors of a randomly relabelled Harary graph H(n, k) are disconnected.

    In H(n, k) (k even: each position joined to the k/2 nearest on either side of a
    ring; Harary 1962) two remaining positions within k/2 of each other on the ring
    are adjacent, so the remaining clients are disconnected only if the removed ones
    fill two disjoint runs of k/2 consecutive positions with a remaining position
    between them on both sides. There are n (n - k - 1) / 2 such pairs of runs; under
    a uniform relabelling each pair is a uniform k-subset of clients, all removed
    with probability E[dropout^(k - J)], J ~ hypergeometric(n, corrupted, k) the
    corrupted clients in it (each other client drops independently). The union
    bound follows Bell et al. CCS'20, Section 3; the run-pair count matches Google's
    federated-compute parameter finder. The complete graph (k = n - 1) never
    disconnects: returns 0.
    """
    n, k = num_clients, num_neighbours
    if k >= n - 1:
        return 0.0
    pairs = n * (n - k - 1) / 2
    all_removed = math.fsum(
        hypergeometric_pmf(n, corrupted, k, j) * (dropout ** (k - j) if k > j else 1.0)
        for j in range(max(0, k - (n - corrupted)), min(k, corrupted) + 1)
    )
    return min(1.0, pairs * all_removed)


def sparse_abort_bound(num_clients: int, num_neighbours: int, threshold: int, dropout: float) -> float:
    """Union bound on an honest abort: some client has fewer than t of its k neighbours left.

    A neighbour answers the last stage with probability 1 - dropout, independently, so
    a client lacks t of them with probability P[Bin(k, dropout) >= k - t + 1].
    """
    tail = binomial_tail(num_neighbours, dropout, num_neighbours - threshold + 1)
    return min(1.0, num_clients * tail)


def complete_abort_probability(num_clients: int, threshold: int, dropout: float) -> float:
    """Exact honest-abort probability on the complete graph: at most t of the n clients are left.

    With r clients answering the last stage, each client has r or r - 1 answering
    neighbours: every secret is recoverable if r >= t + 1, and a survivor's self-mask
    seed is not if r <= t. So P[abort] = P[Bin(n, 1 - dropout) <= t].
    """
    return min(1.0, binomial_tail(num_clients, dropout, num_clients - threshold))


# --- checks and choice --------------------------------------------------------------------


def _check_count(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{name} must be an int >= {low}, got {value!r}")
    return value


def _check_fraction(name: str, value: object, *, high: float = 1.0) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value < high:
        raise ConfigError(f"{name} must be a number in [0, {high}), got {value!r}")
    return float(value)


def _check_security_bits(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 1 <= value <= 256:
        raise ConfigError(f"security_bits must be a number in [1, 256], got {value!r}")
    return float(value)


def _corrupted(num_clients: int, corruption: float) -> int:
    # The adversary's clients, rounded up: a bound for ceil(corruption * n) covers any fewer.
    return min(num_clients, math.ceil(corruption * num_clients - 1e-12))


def check_targets(*, dropout: float, corruption: float, abort_target: float, security_bits: float) -> None:
    """Raise :class:`ConfigError` naming the first argument outside its range.

    dropout and corruption in [0, 1), abort_target in (0, 1), security_bits in [1, 256].
    """
    _check_fraction("dropout", dropout)
    _check_fraction("corruption", corruption)
    if isinstance(abort_target, bool) or not isinstance(abort_target, int | float) or not 0 < abort_target < 1:
        raise ConfigError(f"abort_target must be a number in (0, 1), got {abort_target!r}")
    _check_security_bits(security_bits)


def check_structure(num_clients: int, num_neighbours: int, threshold: int) -> None:
    """Raise :class:`ConfigError` unless (n, k, t) is a buildable, non-degenerate SecAgg+ setting.

    Requires 2 <= k <= n - 1, k even or n even (a k-regular graph exists), and
    k / 2 < t <= k with t >= 2: with t <= k / 2 a server could ask one half of a
    neighbourhood for self-mask shares and the other half for mask-key shares and
    unmask an individual input (Bell et al. CCS'20, Section 3), and t = 1 makes
    every single share the secret.
    """
    _check_count("num_clients", num_clients, 3)
    _check_count("num_neighbours", num_neighbours, 1)
    _check_count("threshold", threshold, 1)
    n, k, t = num_clients, num_neighbours, threshold
    if not 2 <= k <= n - 1:
        raise ConfigError(f"num_neighbours must be in [2, n - 1] = [2, {n - 1}], got {k}")
    if k % 2 and n % 2:
        raise ConfigError(f"no {k}-regular graph on {n} nodes (odd k and odd n): use an even k")
    low = max(k // 2 + 1, MIN_THRESHOLD)
    if not low <= t <= k:
        raise ConfigError(
            f"threshold must be in [max(floor(k/2) + 1, 2), k] = [{low}, {k}] for k = {k}, got t = {t}: "
            "t <= k/2 lets a malicious server unmask individual inputs"
        )


def security_failure_probability(
    num_clients: int, num_neighbours: int, threshold: int, *, corruption: float, dropout: float = 0.0
) -> float:
    """Upper bound on P[E1 or E2] (module docstring) for a structurally valid (n, k, t)."""
    corrupted = _corrupted(num_clients, corruption)
    e1 = corrupted_neighbour_bound(num_clients, num_neighbours, threshold, corrupted)
    e2 = harary_disconnection_bound(num_clients, num_neighbours, corrupted, dropout)
    return min(1.0, e1 + e2)


def abort_probability(num_clients: int, num_neighbours: int, threshold: int, *, dropout: float) -> float:
    """Honest-abort probability: exact for the complete graph, a union bound otherwise."""
    if num_neighbours == num_clients - 1:
        return complete_abort_probability(num_clients, threshold, dropout)
    return sparse_abort_bound(num_clients, num_neighbours, threshold, dropout)


def _log2(p: float) -> float:
    return math.log2(p) if p > 0 else -math.inf


def _smallest_secure_threshold(
    n: int, k: int, corruption: float, dropout: float, target: float
) -> tuple[int, float] | None:
    """The smallest t in [k/2 + 1, k] whose security failure bound is <= target, with that bound.

    E2 does not depend on t and E1 falls as t grows, so one pass over the tail of the
    corrupted-neighbour distribution finds it (O(k) rather than O(k^2)).
    """
    corrupted = _corrupted(n, corruption)
    e2 = harary_disconnection_bound(n, k, corrupted, dropout)
    if e2 > target:
        return None
    honest = n - corrupted
    pmf = [hypergeometric_pmf(n - 1, corrupted, k, j) for j in range(k + 1)]
    tail = [0.0] * (k + 2)  # tail[j] = P[corrupted neighbours >= j]
    for j in range(k, -1, -1):
        tail[j] = tail[j + 1] + pmf[j]
    for t in range(max(k // 2 + 1, MIN_THRESHOLD), k + 1):
        e1 = min(1.0, honest * min(1.0, tail[2 * t - k])) if honest > 0 else 1.0
        failure = min(1.0, e1 + e2)
        if failure <= target:
            return t, failure
    return None


def smallest_secure_threshold(
    num_clients: int, num_neighbours: int, *, corruption: float, security_bits: float = 40, dropout: float = 0.0
) -> int:
    """The smallest t that :func:`check_secure` accepts for (n, k).

    Raises:
        ConfigError: a bad argument, or no threshold is secure for this k.
    """
    check_structure(num_clients, num_neighbours, num_neighbours)
    corruption = _check_fraction("corruption", corruption)
    dropout = _check_fraction("dropout", dropout)
    bits = _check_security_bits(security_bits)
    found = _smallest_secure_threshold(num_clients, num_neighbours, corruption, dropout, 2.0**-bits)
    if found is None:
        raise ConfigError(
            f"no threshold is secure for k = {num_neighbours} at n = {num_clients} with corruption {corruption:g} "
            f"and dropout {dropout:g} (security failure above 2^-{bits:g}); use a larger k (see choose_parameters)"
        )
    return found[0]


def check_secure(
    num_clients: int,
    num_neighbours: int,
    threshold: int,
    *,
    corruption: float,
    security_bits: float = 40,
    dropout: float = 0.0,
) -> None:
    """Raise :class:`ConfigError` unless (n, k, t) keeps the security failure below 2^-security_bits.

    This is the check a client can run on parameters the server sends: it needs only
    n and the declared corrupted fraction. ``dropout`` (default 0) adds random
    dropouts to the connectivity event E2 (module docstring).

    Raises:
        ConfigError: a bad argument, a degenerate (n, k, t), or one whose failure bound
            is too large; the message names the smallest secure threshold for this k,
            or that no threshold is secure for this k.
    """
    check_structure(num_clients, num_neighbours, threshold)
    corruption = _check_fraction("corruption", corruption)
    dropout = _check_fraction("dropout", dropout)
    bits = _check_security_bits(security_bits)
    target = 2.0**-bits
    failure = security_failure_probability(
        num_clients, num_neighbours, threshold, corruption=corruption, dropout=dropout
    )
    if failure <= target:
        return
    n, k, t = num_clients, num_neighbours, threshold
    best = _smallest_secure_threshold(n, k, corruption, dropout, target)
    allowed = (
        f"t >= {best[0]} is secure for k = {k}"
        if best is not None
        else f"no threshold is secure for k = {k}; use a larger k (see choose_parameters)"
    )
    raise ConfigError(
        f"k = {k}, t = {t} at n = {n} with corruption {corruption:g} and dropout {dropout:g}: "
        f"security failure probability 2^{_log2(failure):.1f} exceeds 2^-{bits:g}; {allowed}"
    )


@dataclass(frozen=True)
class SecAggParameters:
    """A SecAgg+ setting for n clients and what it guarantees and costs.

    Attributes:
        num_clients: n.
        num_neighbours: k (n - 1 for the complete graph).
        threshold: t.
        complete_graph: True when every client neighbours every other.
        log2_security_failure: log2 of the bound on P[E1 or E2] (module docstring);
            -inf when it is exactly 0.
        abort_probability: probability that an honest round aborts under independent
            dropouts at the given rate (exact on the complete graph, a union bound otherwise).
        meets_abort_target: False when even the complete graph misses ``abort_target``:
            (k, t) are then the most dropout-tolerant secure choice.
        key_agreements: X25519 agreements per client per round (share encryption and
            mask seed with each neighbour).
        mask_expansions: PRG expansions of a d-word vector per client (k pairwise + 1 self).
        share_bytes_sent: encrypted share bytes a client uploads in the share-keys stage.
        share_bytes_revealed: most share bytes a client uploads when unmasking.
    """

    num_clients: int
    num_neighbours: int
    threshold: int
    complete_graph: bool
    log2_security_failure: float
    abort_probability: float
    meets_abort_target: bool

    def __post_init__(self) -> None:
        check_structure(self.num_clients, self.num_neighbours, self.threshold)
        if self.complete_graph != (self.num_neighbours == self.num_clients - 1):
            raise ConfigError("complete_graph must be True exactly when k = n - 1")

    @property
    def key_agreements(self) -> int:
        return 2 * self.num_neighbours

    @property
    def mask_expansions(self) -> int:
        return self.num_neighbours + 1

    @property
    def share_bytes_sent(self) -> int:
        return self.num_neighbours * CIPHERTEXT_BYTES

    @property
    def share_bytes_revealed(self) -> int:
        return self.num_neighbours * SHARE_BYTES


def choose_parameters(
    num_clients: int,
    *,
    dropout: float,
    corruption: float,
    abort_target: float = 1e-6,
    security_bits: float = 40,
) -> SecAggParameters:
    """The smallest secure (k, t) whose honest-abort probability is at most ``abort_target``.

    Tries even k = 2, 4, ... below n - 1 on the (Harary-analysed) sparse graph, taking
    for each k the smallest secure t (a larger t only raises the abort probability),
    then falls back to the complete graph k = n - 1. If the complete graph misses
    ``abort_target`` too, it is returned with ``meets_abort_target=False``: it is the
    most dropout-tolerant secure choice, and the caller decides.

    Raises:
        ConfigError: a bad argument, or no (k, t) at all meets the security target
            (too many corrupted clients for n).
    """
    n = _check_count("num_clients", num_clients, 3)
    check_targets(dropout=dropout, corruption=corruption, abort_target=abort_target, security_bits=security_bits)
    bits = float(security_bits)
    target = 2.0**-bits

    def make(k: int, t: int, failure: float, abort: float) -> SecAggParameters:
        return SecAggParameters(n, k, t, k == n - 1, _log2(failure), abort, abort <= abort_target)

    for k in range(2, n - 1, 2):
        found = _smallest_secure_threshold(n, k, corruption, dropout, target)
        if found is None:
            continue
        t, failure = found
        abort = sparse_abort_bound(n, k, t, dropout)
        if abort <= abort_target:
            return make(k, t, failure, abort)
    k = n - 1
    found = _smallest_secure_threshold(n, k, corruption, dropout, target)
    if found is None:
        raise ConfigError(
            f"no SecAgg+ parameters for n = {n} keep the security failure below 2^-{bits:g} with corruption "
            f"{corruption:g}: even the complete graph fails; lower the corrupted fraction or add clients"
        )
    t, failure = found
    return make(k, t, failure, complete_abort_probability(n, t, dropout))
