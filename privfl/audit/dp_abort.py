"""Audit of the abort channel: can an observer tell from *which rounds released* whether a client took part?

A round that aborts leaves the global model where it was, so every observer of the models
sees it. If the abort depends on who was sampled (too few clients for ``min_clients``, for
SecAgg+'s floor of 2 or 3, ...) and the aborted round is rolled back out of the ledger, the
pattern of aborts is an unaccounted release (issue 13). This audit measures that channel
on a small population, through the real bundled loop:

1. Neighbouring populations: ``others`` clients without the target, and the same plus the
   target. Each round Poisson-samples every client with probability q.
2. For every distinct sampled set, one real round of a fresh strategy runs through
   :func:`privfl.server.simulation.run_rounds` (rollback on abort included); the audit
   records whether it released (status ``ok``; an abort or an error means the model did not
   move) and how many ledger entries it left.
   Everything else about the round is a function of the sampled set, so Monte Carlo trials
   of ``rounds`` rounds just replay those outcomes on freshly sampled sets.
3. The score of a trial is its number of released rounds (the target's presence makes
   more clients, hence fewer count-based aborts); :func:`privfl.audit.stats.epsilon_lower_bound`
   turns the scores of both populations into a Clopper-Pearson epsilon lower bound
   (Kairouz et al. 2015; Jagielski et al. 2020).
4. The claim audited is the ledger's own: the largest epsilon any trial's ledger reports
   at ``delta``, delta slack included (:func:`privfl.accounting.ledger.epsilon_with_slack`;
   inf when a trial's slack reaches ``delta``). The audit passes when the lower bound
   does not exceed it.

The audit sees only the abort channel (not the noise in the released models), so on sound
code its bound is 0: every round releases. It is meant to fail on code that aborts.
"""

from __future__ import annotations

import itertools
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from privfl.accounting import DpEvent, PrivacyLedger, epsilon_with_slack, make_accountant
from privfl.audit.stats import EpsilonBound, epsilon_lower_bound
from privfl.core.exchange import SamplingInfo, Strategy
from privfl.core.message import ArrayDict
from privfl.core.mods import App
from privfl.errors import ConfigError, PrivflError
from privfl.server.run_config import RunConfig
from privfl.server.simulation import run_rounds
from privfl.server.transport import InProcessClients

MAX_POPULATION = 12
"""Largest audited population (every one of its 2^N sampled sets runs one real round)."""


@dataclass(frozen=True)
class _Replay:
    """A sampler that returns one preset set of clients but reports Poisson sampling at ``rate``."""

    nodes: tuple[int, ...]
    rate: float

    def sample(self, population: tuple[int, ...], rng: np.random.Generator) -> tuple[int, ...]:
        del population, rng
        return self.nodes

    def info(self, population: int) -> SamplingInfo:
        return SamplingInfo(population=population, rate=self.rate, poisson=True)


@dataclass(frozen=True)
class RoundOutcome:
    """What one round with a given sampled set showed: did it release, and what did the ledger keep."""

    released: bool
    charged: tuple[DpEvent, ...]
    slack: float = 0.0
    """Total ``delta_slack`` of the round's ledger entries."""


@dataclass(frozen=True)
class AbortAudit:
    """Result of :func:`audit_abort_channel`.

    Attributes:
        bound: epsilon lower bound from the released-round counts (with its error counts).
        ledger_epsilon: largest epsilon a trial's ledger reported at the bound's delta.
        release_rate_without, release_rate_with: mean fraction of rounds that released.
    """

    bound: EpsilonBound
    ledger_epsilon: float
    release_rate_without: float
    release_rate_with: float

    @property
    def passed(self) -> bool:
        """The ledger's epsilon is at least the measured lower bound."""
        return self.bound.epsilon <= self.ledger_epsilon


def round_outcomes(
    make_strategy: Callable[[], Strategy],
    client_app: App,
    *,
    population: int,
    rate: float,
    initial_parameters: ArrayDict,
    ledger_of: Callable[[Strategy], PrivacyLedger],
) -> dict[tuple[int, ...], RoundOutcome]:
    """One real round per sampled subset of clients ``1..population``, by subset."""
    outcomes: dict[tuple[int, ...], RoundOutcome] = {}
    ids = tuple(range(1, population + 1))
    for size in range(population + 1):
        for nodes in itertools.combinations(ids, size):
            strategy = make_strategy()
            clients = InProcessClients(client_app)
            try:
                with warnings.catch_warnings():  # the loop warns about each aborted round
                    warnings.simplefilter("ignore")
                    config = RunConfig(num_rounds=1, strategy=strategy, sampler=_Replay(nodes, rate), progress=False)
                    result = run_rounds(clients, ids, initial_parameters, config)
                released = bool(result.history.rounds) and result.history.rounds[0].status == "ok"
            except PrivflError:
                released = False  # the run stopped on an error: the model did not move either
            finally:
                clients.close()
            ledger = ledger_of(strategy)
            outcomes[nodes] = RoundOutcome(released, tuple(e.event for e in ledger.entries), ledger.delta_slack)
    return outcomes


def audit_abort_channel(
    make_strategy: Callable[[], Strategy],
    client_app: App,
    *,
    population: int,
    rate: float,
    rounds: int,
    trials: int,
    delta: float,
    initial_parameters: ArrayDict,
    ledger_of: Callable[[Strategy], PrivacyLedger],
    accountant: str = "rdp",
    confidence: float = 0.95,
    rng: np.random.Generator | None = None,
) -> AbortAudit:
    """Measure the abort channel of ``make_strategy()`` and compare it with the ledger's epsilon.

    Args:
        make_strategy: a fresh strategy (e.g. ``FedAvg(aggregator=CentralDp(...))``).
        client_app: the clients' app, nodes ``1..population``; node ``population`` is the target.
        population: N, the population with the target (2 <= N <= :data:`MAX_POPULATION`).
        rate: Poisson sampling rate q of every round.
        rounds: rounds per trial.
        trials: trials per hypothesis (with / without the target).
        delta: delta of the ledger claim audited.
        initial_parameters: the model of every round.
        ledger_of: the strategy's privacy ledger (e.g. ``lambda s: s.aggregator.ledger``).
        accountant: accountant that turns a trial's charged events into epsilon.
        confidence: confidence of the lower bound.
        rng: the audit's own sampling generator (an audit is not a private computation).
    """
    if not 2 <= population <= MAX_POPULATION:
        raise ConfigError(f"population must be in [2, {MAX_POPULATION}], got {population}")
    if rounds < 1 or trials < 2:
        raise ConfigError(f"need rounds >= 1 and trials >= 2, got {rounds} and {trials}")
    rng = np.random.default_rng(0) if rng is None else rng
    outcomes = round_outcomes(
        make_strategy,
        client_app,
        population=population,
        rate=rate,
        initial_parameters=initial_parameters,
        ledger_of=ledger_of,
    )
    # Index every subset by its bit mask (bit i-1 for node i) for vectorised replay.
    released = np.zeros(1 << population, dtype=np.int64)
    charged: list[tuple[DpEvent, ...]] = [()] * (1 << population)
    slack = np.zeros(1 << population, dtype=np.float64)
    for nodes, outcome in outcomes.items():
        mask = sum(1 << (n - 1) for n in nodes)
        released[mask], charged[mask], slack[mask] = int(outcome.released), outcome.charged, outcome.slack
    weights = 1 << np.arange(population, dtype=np.int64)
    epsilons: dict[tuple[frozenset[tuple[DpEvent, int]], float], float] = {}

    def replay(size: int) -> tuple[np.ndarray, float]:
        sampled = rng.random((trials, rounds, population)) < rate
        sampled[:, :, size:] = False  # clients beyond ``size`` are not in this population
        masks = sampled.astype(np.int64) @ weights
        worst = 0.0
        for row in masks:
            counts: Counter[DpEvent] = Counter()
            for mask, n in zip(*np.unique(row, return_counts=True), strict=True):
                for event in charged[mask]:
                    counts[event] += int(n)
            key = (frozenset(counts.items()), float(slack[row].sum()))
            if key not in epsilons:
                composed = make_accountant(accountant)
                for event, n in counts.items():
                    composed.compose(event, n)
                epsilons[key] = epsilon_with_slack(composed, delta, key[1])
            worst = max(worst, epsilons[key])
        return released[masks].sum(axis=1).astype(np.float64), worst

    without, eps_without = replay(population - 1)
    with_target, eps_with = replay(population)
    bound = epsilon_lower_bound(without, with_target, delta=delta, confidence=confidence, rng=rng)
    return AbortAudit(
        bound=bound,
        ledger_epsilon=max(eps_without, eps_with),
        release_rate_without=float(without.mean() / rounds),
        release_rate_with=float(with_target.mean() / rounds),
    )
