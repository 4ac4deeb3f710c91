"""Statistics of privacy audits: distinguishing experiments turned into epsilon lower bounds.

An (epsilon, delta)-DP mechanism bounds every test that tries to tell a neighbouring
pair of inputs apart: its false-positive rate (FPR) and false-negative rate (FNR)
satisfy ``FPR + e^epsilon FNR >= 1 - delta`` and ``FNR + e^epsilon FPR >= 1 - delta``
(Kairouz, Oh & Viswanath, ICML 2015, Thm 2.1). Any measured test therefore gives

    epsilon >= max(log((1 - delta - FPR) / FNR), log((1 - delta - FNR) / FPR)),

and with one-sided Clopper-Pearson upper confidence bounds in place of the measured
rates the bound holds with the stated confidence (Jagielski, Ullman & Oprea, NeurIPS
2020; Nasr et al., IEEE S&P 2021). The threshold of the test is chosen on one half of
the trials and the bound is evaluated on the other half, so choosing it does not bias
the bound.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import betaincinv

from privfl.errors import ConfigError


def _check_level(alpha: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise ConfigError(f"alpha (one minus the confidence) must be in (0, 1), got {alpha!r}")


def clopper_pearson_upper(successes: ArrayLike, trials: ArrayLike, alpha: float) -> NDArray[np.float64]:
    """One-sided Clopper-Pearson upper bound on a binomial proportion, at confidence ``1 - alpha``.

    Clopper & Pearson (Biometrika 1934): the ``1 - alpha`` quantile of Beta(k + 1, n - k); 1 when k = n.
    """
    _check_level(alpha)
    k = np.asarray(successes, dtype=np.float64)
    n = np.broadcast_to(np.asarray(trials, dtype=np.float64), k.shape)
    if np.any(k < 0) or np.any(k > n):
        raise ConfigError("need 0 <= successes <= trials")
    full = k >= n
    upper = betaincinv(k + 1.0, np.where(full, 1.0, n - k), 1.0 - alpha)
    return np.where(full, 1.0, upper)


def epsilon_from_rates(fpr: ArrayLike, fnr: ArrayLike, delta: float) -> NDArray[np.float64]:
    """The epsilon that the error rates (FPR, FNR) of one test force at ``delta`` (0 if none).

    Kairouz, Oh & Viswanath (2015), Thm 2.1, solved for epsilon in both directions.
    """
    if not 0.0 <= delta < 1.0:
        raise ConfigError(f"delta must be in [0, 1), got {delta!r}")
    fpr = np.asarray(fpr, dtype=np.float64)
    fnr = np.asarray(fnr, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.log(1.0 - delta - fpr) - np.log(fnr)
        b = np.log(1.0 - delta - fnr) - np.log(fpr)
    best = np.fmax(
        np.nan_to_num(a, nan=0.0, neginf=0.0, posinf=np.inf), np.nan_to_num(b, nan=0.0, neginf=0.0, posinf=np.inf)
    )
    return np.maximum(best, 0.0)


def error_counts(
    negatives: NDArray[np.float64], positives: NDArray[np.float64], thresholds: NDArray[np.float64]
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """False positives and false negatives of the tests "canary present iff score > t", one per threshold.

    ``negatives`` are scores without the canary and ``positives`` with it; both must be sorted.
    """
    fp = negatives.size - np.searchsorted(negatives, thresholds, side="right")
    fn = np.searchsorted(positives, thresholds, side="right")
    return fp.astype(np.int64), fn.astype(np.int64)


def _bounds(
    negatives: NDArray[np.float64],
    positives: NDArray[np.float64],
    thresholds: NDArray[np.float64],
    delta: float,
    alpha: float,
) -> tuple[NDArray[np.float64], NDArray[np.int64], NDArray[np.int64], NDArray[np.float64], NDArray[np.float64]]:
    fp, fn = error_counts(negatives, positives, thresholds)
    # Union bound: each rate's one-sided bound at alpha/2 makes the pair hold jointly at 1 - alpha.
    fpr_up = clopper_pearson_upper(fp, negatives.size, alpha / 2.0)
    fnr_up = clopper_pearson_upper(fn, positives.size, alpha / 2.0)
    return epsilon_from_rates(fpr_up, fnr_up, delta), fp, fn, fpr_up, fnr_up


@dataclass(frozen=True)
class EpsilonBound:
    """An epsilon lower bound from one threshold test, with the counts it rests on.

    Attributes:
        epsilon: lower bound on epsilon (nats) holding with probability ``confidence``.
        point_estimate: the epsilon the measured rates give without confidence bounds.
        threshold: the test says "canary present" when the score exceeds it.
        false_positives, negatives: errors and trials without the canary (evaluation half).
        false_negatives, positives: errors and trials with the canary (evaluation half).
        fpr_upper, fnr_upper: one-sided Clopper-Pearson upper bounds on the rates.
        delta: the delta the bound is stated at.
        confidence: joint confidence of the bound.
    """

    epsilon: float
    point_estimate: float
    threshold: float
    false_positives: int
    negatives: int
    false_negatives: int
    positives: int
    fpr_upper: float
    fnr_upper: float
    delta: float
    confidence: float


def epsilon_lower_bound(
    negatives: ArrayLike,
    positives: ArrayLike,
    *,
    delta: float,
    confidence: float = 0.95,
    max_thresholds: int = 4096,
    rng: np.random.Generator | None = None,
) -> EpsilonBound:
    """Lower-bound epsilon from scores of trials without (``negatives``) and with (``positives``) the canary.

    A larger score must mean "more likely with the canary". The trials are shuffled and
    split in half: the threshold maximising the confidence bound on the first half is
    applied to the second half, whose Clopper-Pearson bounds give the reported epsilon.

    Args:
        negatives, positives: one score per trial (at least 2 each).
        delta: the delta of the claim under audit.
        confidence: joint confidence of the bound (e.g. 0.95).
        max_thresholds: thresholds tried on the selection half (quantiles of its scores, dense
            in both tails); every distinct score is tried when there are fewer.
        rng: shuffles the trials before splitting (the experiment's own generator).
    """
    if not 0.0 < confidence < 1.0:
        raise ConfigError(f"confidence must be in (0, 1), got {confidence!r}")
    neg = np.asarray(negatives, dtype=np.float64).ravel()
    pos = np.asarray(positives, dtype=np.float64).ravel()
    if neg.size < 2 or pos.size < 2:
        raise ConfigError(f"need at least 2 trials per hypothesis, got {neg.size} and {pos.size}")
    if not (np.all(np.isfinite(neg)) and np.all(np.isfinite(pos))):
        raise ConfigError("scores must be finite")
    rng = np.random.default_rng(0) if rng is None else rng
    neg, pos = rng.permutation(neg), rng.permutation(pos)
    sel_neg, ev_neg = np.sort(neg[: neg.size // 2]), np.sort(neg[neg.size // 2 :])
    sel_pos, ev_pos = np.sort(pos[: pos.size // 2]), np.sort(pos[pos.size // 2 :])
    alpha = 1.0 - confidence
    pooled = np.concatenate([sel_neg, sel_pos])
    if pooled.size > max_thresholds:
        # Half the thresholds evenly spaced in probability, half log-spaced toward both tails,
        # where the strongest tests of a Gaussian live (small FPR or small FNR).
        tail = np.logspace(-math.log10(pooled.size), math.log10(0.5), max_thresholds // 4)
        levels = np.concatenate([np.linspace(0.0, 1.0, max_thresholds // 2), tail, 1.0 - tail])
        pooled = np.quantile(pooled, np.clip(levels, 0.0, 1.0))
    candidates = np.unique(pooled)
    selection, *_ = _bounds(sel_neg, sel_pos, candidates, delta, alpha)
    threshold = candidates[int(np.argmax(selection))]
    eps, fp, fn, fpr_up, fnr_up = _bounds(ev_neg, ev_pos, np.array([threshold]), delta, alpha)
    point = epsilon_from_rates(fp / ev_neg.size, fn / ev_pos.size, delta)
    return EpsilonBound(
        epsilon=float(eps[0]),
        point_estimate=float(point[0]),
        threshold=float(threshold),
        false_positives=int(fp[0]),
        negatives=int(ev_neg.size),
        false_negatives=int(fn[0]),
        positives=int(ev_pos.size),
        fpr_upper=float(fpr_up[0]),
        fnr_upper=float(fnr_up[0]),
        delta=float(delta),
        confidence=float(confidence),
    )


def roc_curve(
    negatives: ArrayLike, positives: ArrayLike, points: int = 512
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(FPR, TPR) of the threshold tests, thresholds at log-spaced false-positive rates (for log-log plots)."""
    neg = np.sort(np.asarray(negatives, dtype=np.float64).ravel())
    pos = np.sort(np.asarray(positives, dtype=np.float64).ravel())
    levels = np.logspace(-math.log10(neg.size), 0.0, points)
    fp, fn = error_counts(neg, pos, np.quantile(neg, 1.0 - levels))
    return fp / neg.size, 1.0 - fn / pos.size


def max_certifiable_epsilon(trials: int, delta: float, confidence: float = 0.95) -> float:
    """The largest epsilon lower bound ``trials`` per hypothesis can certify (a perfect test, half held out).

    Useful to read a bound: a mechanism that leaks everything still only reaches this value.
    """
    half = trials - trials // 2
    rate = float(clopper_pearson_upper(0, half, (1.0 - confidence) / 2.0))
    return math.log((1.0 - delta - rate) / rate)
