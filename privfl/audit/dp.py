"""Distinguishing experiments against privfl's DP mechanisms (black-box, through their public API).

Each experiment is a neighbouring pair of inputs to one noisy release: a run without
a canary and a run with it (central DP: a canary client whose clipped update sits at
the clip norm; local DP: a client's update at either end of a diameter of the
clipping ball). The attacker knows everything but the noise, so the optimal
(Neyman-Pearson) score of a Gaussian release is the projection of the released
vector on the canary's direction; :func:`privfl.audit.stats.epsilon_lower_bound`
turns the scores into an epsilon lower bound at the claim's delta (Jagielski et al.
2020; Nasr et al. 2021). A bound above the claimed epsilon proves, with the stated
confidence, that the claim is false.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from privfl.audit.stats import EpsilonBound, epsilon_lower_bound, roc_curve
from privfl.core.context import Context
from privfl.core.exchange import Aggregate, Aggregator, RoundSpec, SamplingInfo
from privfl.core.message import Message, MessageKind, Metadata
from privfl.core.mods import App, Mod, compose
from privfl.dp.noise import gaussian_noise
from privfl.server.transport import drive

_BULK_CHUNK = 1 << 20
"""Releases drawn per call of the noise primitive in bulk audits (bounds memory)."""


class Release(Protocol):
    """A noisy release under audit, runnable many times with or without the canary.

    Attributes:
        name: label of the mechanism (e.g. "LocalDpMod" or "LocalDpMod, noise missing").
        claimed_epsilon: the epsilon the mechanism claims for one release.
        delta: the delta of that claim.
    """

    name: str
    claimed_epsilon: float
    delta: float

    def scores(self, canary: bool, trials: int) -> NDArray[np.float64]:
        """One score per trial; larger means "more likely with the canary"."""
        ...


def _train_message(dim: int) -> Message:
    return Message(Metadata(0, 1, 0, 1, MessageKind.TRAIN), arrays={"w": np.zeros(dim, dtype=np.float64)})


@dataclass(frozen=True)
class LocalDpRelease:
    """One training reply through a local-DP client mod (e.g. :class:`privfl.dp.LocalDpMod`).

    Neighbouring inputs in the local model are any two updates of the client; after
    clipping to C the farthest apart are ``-C e`` and ``+C e``, so the trials feed the
    client updates ``-s C e`` (without canary) and ``+s C e`` (with), ``s`` =
    ``canary_scale`` >= 1 so that skipped clipping shows. The score is the released
    update's coordinate along ``e``.

    Args:
        mod: the mod under audit (the real one or a deliberately broken variant).
        name: label in the report.
        clip_norm: the mod's clip norm C.
        claimed_epsilon, delta: the per-release claim.
        dim: length of the update vector.
        canary_scale: norm of the raw update in units of C.
    """

    mod: Mod
    name: str
    clip_norm: float
    claimed_epsilon: float
    delta: float
    dim: int = 8
    canary_scale: float = 10.0

    def _train(self, canary: bool) -> App:
        update = np.zeros(self.dim)
        update[0] = (1.0 if canary else -1.0) * self.canary_scale * self.clip_norm

        def train(message: Message, context: Context) -> Message:
            return message.reply(arrays={"w": message.arrays["w"] + update})

        return train

    def scores(self, canary: bool, trials: int) -> NDArray[np.float64]:
        message, train, context = _train_message(self.dim), self._train(canary), Context(node_id=1)
        out = np.empty(trials)
        for i in range(trials):
            out[i] = self.mod(message, context, train).arrays["w"][0]
        return out

    def reply_metrics(self) -> dict[str, float]:
        """The metrics of one reply through the mod (e.g. the client ledger's epsilon)."""
        return dict(self.mod(_train_message(self.dim), Context(node_id=1), self._train(True)).metrics)


@dataclass(frozen=True)
class CentralRound:
    """One central-DP round as the auditor sets it up: known clients, optionally a canary, every client sampled.

    The ``others`` clients send fixed updates of norm ``clip_norm / 2`` that the attacker
    knows (the strongest attacker of add/remove client-level DP); the canary client, when
    present, sends ``canary_scale * clip_norm`` along the diagonal, which an L2 clip brings
    back to the clip norm (a per-coordinate clip alone would leave it sqrt(dim) times
    longer). Sampling is Poisson with rate 1 over ``others + 1`` clients, so one round is
    one Gaussian release (q = 1) and the denominator is the same with and without the canary.

    Args:
        clip_norm: the aggregator's clip norm C.
        others: number of non-canary clients.
        dim: length of the update vector.
        canary_scale: raw norm of the canary update in units of C.
        seed: seed of the known clients' updates.
        client_mods: mods every client runs (e.g. :class:`privfl.dp.FixedClippingMod` when
            the clients clip instead of the server).
    """

    clip_norm: float
    others: int = 4
    dim: int = 8
    canary_scale: float = 10.0
    seed: int = 0
    client_mods: tuple[Mod, ...] = ()

    @property
    def canary_node(self) -> int:
        return self.others + 1

    @property
    def direction(self) -> NDArray[np.float64]:
        """The canary's direction: the diagonal, so that per-coordinate clipping alone does not bound it."""
        return np.full(self.dim, 1.0 / np.sqrt(self.dim))

    def updates(self, canary: bool) -> dict[int, np.ndarray]:
        """Node id to raw update."""
        rng = np.random.default_rng(self.seed)
        known = rng.normal(size=(self.others, self.dim))
        known *= 0.5 * self.clip_norm / np.linalg.norm(known, axis=1, keepdims=True)
        out = {node: known[node - 1] for node in range(1, self.others + 1)}
        if canary:
            out[self.canary_node] = self.direction * self.canary_scale * self.clip_norm
        return out

    def known_sum(self) -> np.ndarray:
        """What the attacker subtracts: the sum of the other clients' (unclipped, in-ball) updates."""
        return np.sum(list(self.updates(False).values()), axis=0)

    def run(self, aggregator: Aggregator, canary: bool) -> Aggregate:
        """One round of ``aggregator`` on this setup, with clients answering in process (no wire)."""
        updates = self.updates(canary)
        spec = RoundSpec(
            run_id=0,
            server_round=1,
            nodes=tuple(updates),
            parameters={"w": np.zeros(self.dim)},
            config={},
            sampling=SamplingInfo(population=self.others + 1, rate=1.0, poisson=True),
        )

        def train(message: Message, context: Context) -> Message:
            arrays = {"w": message.arrays["w"] + updates[context.node_id]}
            return message.reply(arrays=arrays, metrics={"num_examples": 1})

        app = compose(train, self.client_mods)

        contexts = {node: Context(node_id=node) for node in updates}  # one round: fresh clients, state kept

        def deliver(outbox: list[Message]) -> list[Message]:
            return [app(m, contexts[m.metadata.dst_node]) for m in outbox]

        return drive(aggregator.aggregate(spec), deliver)

    def score(self, update_sum: np.ndarray) -> NDArray[np.float64]:
        """Projection of released sums (last axis) on the canary direction, after removing the known clients."""
        return (update_sum - self.known_sum()) @ self.direction


@dataclass(frozen=True)
class CentralDpRelease:
    """One round of a central-DP aggregator (e.g. :class:`privfl.dp.CentralDp`), run end to end per trial.

    Args:
        make_aggregator: builds the aggregator under audit; each trial is the first release
            of a fresh one (so an adaptive clip norm starts from its initial value and no
            ledger refuses a trial).
        name: label in the report.
        setup: the round's clients and canary.
        claimed_epsilon, delta: the claim for one release.
    """

    make_aggregator: Callable[[], Aggregator]
    name: str
    setup: CentralRound
    claimed_epsilon: float
    delta: float

    def scores(self, canary: bool, trials: int) -> NDArray[np.float64]:
        out = np.empty(trials)
        for i in range(trials):
            out[i] = self.setup.score(self.setup.run(self.make_aggregator(), canary).update_sum["w"])
        return out


@dataclass(frozen=True)
class CentralNoiseRelease:
    """The same release in bulk: the aggregator's exact noiseless clipped sum plus its noise, drawn at once.

    The clipped sum comes from the wrapper's inner aggregator (``inner``, deterministic),
    the noise from :func:`privfl.dp.noise.gaussian_noise` at the standard deviation the
    wrapper reports using (``dp_noise_std``), shape ``(trials, dim)``. This tests the
    calibration and the noise primitive with many more trials than the end-to-end loop.

    Args:
        inner: the wrapper's inner aggregator (clipping, summing, no noise).
        noise_std: the std the wrapper adds to the sum.
        name, setup, claimed_epsilon, delta: as for :class:`CentralDpRelease`.
    """

    inner: Aggregator
    noise_std: float
    name: str
    setup: CentralRound
    claimed_epsilon: float
    delta: float

    def scores(self, canary: bool, trials: int) -> NDArray[np.float64]:
        clipped_sum = self.setup.run(self.inner, canary).update_sum["w"]
        out = np.empty(trials)
        for start in range(0, trials, _BULK_CHUNK):
            rows = min(_BULK_CHUNK, trials - start)
            out[start : start + rows] = self.setup.score(
                clipped_sum + gaussian_noise((rows, self.setup.dim), self.noise_std)
            )
        return out


@dataclass(frozen=True, eq=False)
class DistinguishingRun:
    """The scores of one audit experiment and the epsilon lower bound they give.

    Attributes:
        name: the release audited.
        claimed_epsilon: epsilon the release claims (at ``bound.delta``).
        bound: the lower bound and the counts behind it.
        negatives, positives: scores without and with the canary.
        reference_epsilon: the exact epsilon of the calibrated Gaussian, if known, to
            separate the audit's own slack from the accountant's.
    """

    name: str
    claimed_epsilon: float
    bound: EpsilonBound
    negatives: NDArray[np.float64] = field(repr=False)
    positives: NDArray[np.float64] = field(repr=False)
    reference_epsilon: float | None = None

    @property
    def violated(self) -> bool:
        """The lower bound exceeds the claim: the claim is false at the bound's confidence."""
        return self.bound.epsilon > self.claimed_epsilon

    @property
    def ratio(self) -> float:
        """Lower bound over the claimed epsilon (1 is a perfectly tight audit of a correct claim)."""
        return self.bound.epsilon / self.claimed_epsilon


def run_distinguishing(
    release: Release,
    trials: int,
    *,
    confidence: float = 0.95,
    seed: int = 0,
    reference_epsilon: float | None = None,
) -> DistinguishingRun:
    """Run ``trials`` releases with and without the canary and bound epsilon at the release's delta."""
    negatives = release.scores(False, trials)
    positives = release.scores(True, trials)
    bound = epsilon_lower_bound(
        negatives, positives, delta=release.delta, confidence=confidence, rng=np.random.default_rng(seed)
    )
    return DistinguishingRun(release.name, release.claimed_epsilon, bound, negatives, positives, reference_epsilon)


def plot_run(run: DistinguishingRun, path: Path) -> Path:
    """Score histograms with the chosen threshold, and the ROC curve on log axes (low FPR matters)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (hist, roc) = plt.subplots(1, 2, figsize=(10, 3.8))
    lo = float(np.quantile(np.concatenate([run.negatives, run.positives]), 0.0005))
    hi = float(np.quantile(np.concatenate([run.negatives, run.positives]), 0.9995))
    bins = np.linspace(lo, hi, 80) if hi > lo else 80
    hist.hist(run.negatives, bins=bins, alpha=0.55, label="without canary", density=True)
    hist.hist(run.positives, bins=bins, alpha=0.55, label="with canary", density=True)
    hist.axvline(run.bound.threshold, color="k", lw=1, ls="--", label="threshold")
    hist.set_xlabel("score (projection on the canary)")
    hist.set_ylabel("density")
    hist.legend(fontsize=8)
    fpr, tpr = roc_curve(run.negatives, run.positives)
    floor = 0.5 / max(run.negatives.size, 1)
    roc.loglog(np.maximum(fpr, floor), np.maximum(tpr, floor), label="empirical ROC")
    grid = np.logspace(math.log10(floor), 0, 200)
    roc.loglog(
        grid,
        np.minimum(1.0, math.exp(run.claimed_epsilon) * grid + run.bound.delta),
        "r--",
        lw=1,
        label=f"max TPR allowed by eps={run.claimed_epsilon:.2f}",
    )
    roc.set_xlabel("false-positive rate")
    roc.set_ylabel("true-positive rate")
    roc.set_ylim(floor, 1.05)
    roc.legend(fontsize=8, loc="lower right")
    fig.suptitle(
        f"{run.name}: eps lower bound {run.bound.epsilon:.2f} vs claimed {run.claimed_epsilon:.2f}", fontsize=10
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


@dataclass(frozen=True)
class DpSgdRelease:
    """One full-batch DP-SGD step of :func:`privfl.integrations.opacus.fit_dp_sgd`, with or without a canary record.

    A zero-initialised linear model (no bias, two classes) trains on ``records`` examples
    for one epoch with batch size = dataset size, so Poisson sampling has rate q = 1 and
    there is exactly one noisy step. The canary (label 0) is the only record with a
    non-zero first feature, so only its clipped gradient moves the first weight column;
    without the canary it is replaced by an all-zero record, whose gradient is zero (as if
    removed, with the same batch normalisation). The score is that column's movement
    along the canary's gradient direction times batch size / learning rate: C with the
    canary, 0 without, plus noise of std z C (Jagielski et al. 2020's gradient canary,
    white-box: the auditor sees the model after the step).

    Args:
        settings: the :class:`~privfl.integrations.opacus.DpSgdSettings` audited
            (``batch_size`` must equal ``records``, ``epochs`` 1).
        name, claimed_epsilon, delta: label and the claim (what the client's ledger reports).
        records: examples in the client's dataset.
        features: input features.
    """

    settings: Any
    name: str
    claimed_epsilon: float
    delta: float
    records: int = 8
    features: int = 4

    def data(self, canary: bool) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        """The client's dataset: features and labels."""
        rng = np.random.default_rng(0)
        x = np.zeros((self.records, self.features), dtype=np.float32)
        x[1:, 1:] = rng.normal(size=(self.records - 1, self.features - 1))
        if canary:
            x[0, 0] = 100.0
        labels = rng.integers(0, 2, self.records)
        labels[0] = 0
        return x, labels

    def scores(self, canary: bool, trials: int) -> NDArray[np.float64]:
        import torch

        from privfl.integrations.opacus import fit_dp_sgd

        features, labels = self.data(canary)
        out = np.empty(trials)
        for i in range(trials):
            model = torch.nn.Linear(self.features, 2, bias=False)
            torch.nn.init.zeros_(model.weight)
            fit_dp_sgd(model, features, labels, self.settings)
            column = model.weight.detach().numpy()[:, 0].astype(np.float64)
            # The canary's clipped gradient on column 0 is C (-1, 1) / sqrt 2; SGD moves against it.
            out[i] = (column[0] - column[1]) / math.sqrt(2.0) * self.records / self.settings.lr
        return out

    def ledger_epsilon(self) -> float:
        """The epsilon the client's DP-SGD ledger reports after one fit (through ``DpSgdLedgerMod``)."""
        import torch

        from privfl.integrations.opacus import EPSILON, DpSgdLedgerMod, fit_dp_sgd

        def train(message: Message, context: Context) -> Message:
            model = torch.nn.Linear(self.features, 2, bias=False)
            metrics = fit_dp_sgd(model, *self.data(True), self.settings)
            return message.reply(arrays=message.arrays, metrics=metrics)

        reply = DpSgdLedgerMod(self.delta)(_train_message(self.features), Context(node_id=1), train)
        return float(reply.metrics[EPSILON])
