"""Sample-level DP inside a client with Opacus DP-SGD (Abadi et al., CCS 2016), accounted in a privfl ledger.

Two pieces, so a torch client keeps its training code:

- :func:`fit_dp_sgd` trains a torch model in place on one client's tensors with Opacus'
  ``PrivacyEngine`` (Poisson-sampled batches, per-example clipping to ``max_grad_norm``,
  Gaussian noise ``noise_multiplier * max_grad_norm``) and returns fit metrics that
  describe the mechanism it ran: sampling rate, noise multiplier, number of steps.
- :class:`DpSgdLedgerMod`, a client mod, turns those metrics into one ledger entry per
  fit, ``ComposedEvent(PoissonSampledEvent(q, GaussianEvent(z)), steps)`` with
  scope "record" and locality "local", in a :class:`~privfl.accounting.PrivacyLedger`
  kept in the client's Context (checkpointed, restored on resume), and adds the
  client's cumulative ``dp_sgd_epsilon`` to the reply.

Randomness: both random choices that the accounting assumes secret come from privfl's
CSPRNG (a ChaCha20 keystream under fresh ``os.urandom`` keys, :mod:`privfl.dp.noise`), never
from torch's global generator, so seeding torch (``torch.manual_seed``) changes neither:

- the DP-SGD noise (:func:`privfl.dp.noise.gaussian_noise`): the optimizer's ``add_noise`` is
  replaced after ``make_private``, since Opacus' own cryptographic mode needs the
  ``torchcsprng`` package, which has no build for current torch;
- the Poisson batch sampling (Abadi et al. 2016; the sampled Gaussian of Mironov, Talwar &
  Zhang 2019): each example joins each batch independently with probability q, decided by
  CSPRNG uniforms (:class:`PoissonBatches`), where Opacus' own sampler draws them from torch.

Metrics: under DP-SGD the training loss and any other metric computed on the private data
without noise is not covered by the guarantee, so :class:`DpSgdLedgerMod` lets only the
mechanism's own metrics leave the client unless the user names others in ``unnoised_metrics``.

torch and opacus are imported when these functions run, never at import time (``privfl[torch]``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from privfl.accounting import ComposedEvent, GaussianEvent, PoissonSampledEvent, PrivacyLedger
from privfl.accounting.conversion import check_delta
from privfl.core.context import Context
from privfl.core.extras import require_all
from privfl.core.message import Message, MessageKind
from privfl.core.mods import App
from privfl.core.names import DP_SGD_EPSILON, NUM_EXAMPLES
from privfl.dp.calibration import check_positive
from privfl.dp.noise import gaussian_noise, uniform_open
from privfl.errors import ConfigError, MessageError

SAMPLE_RATE = "dp_sgd_sample_rate"
NOISE_MULTIPLIER = "dp_sgd_noise_multiplier"
STEPS = "dp_sgd_steps"
EPSILON = DP_SGD_EPSILON
TRAIN_LOSS = "train_loss"
"""Fit metric of :func:`fit_dp_sgd`: mean training loss, computed without noise (stays on the client by default)."""
MECHANISM_METRICS = (NUM_EXAMPLES, SAMPLE_RATE, NOISE_MULTIPLIER, STEPS, EPSILON)
"""The metrics a DP-SGD reply carries without the user's opt-in: the mechanism's parameters and its epsilon."""
LEDGER_KEY = "privfl.integrations.opacus.ledger"
"""Context key of the client's sample-level DP ledger."""


@dataclass(frozen=True)
class DpSgdSettings:
    """DP-SGD hyperparameters of one client's local training.

    Attributes:
        noise_multiplier: z (> 0): noise std over the per-example clip norm.
        max_grad_norm: per-example L2 clip norm of gradients (> 0).
        batch_size: expected batch size; the Poisson sampling rate is batch_size / dataset size.
        epochs: local passes over the data per fit (>= 1).
        lr: SGD learning rate (> 0).
    """

    noise_multiplier: float
    max_grad_norm: float
    batch_size: int
    epochs: int = 1
    lr: float = 0.1

    def __post_init__(self) -> None:
        for name in ("noise_multiplier", "max_grad_norm", "lr"):
            check_positive(name, getattr(self, name))
        for name in ("batch_size", "epochs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")


def get_weights(model: Any) -> list[np.ndarray]:
    """The model's parameters and buffers as numpy arrays, in ``state_dict`` order."""
    return [t.detach().cpu().numpy().copy() for t in model.state_dict().values()]


def set_weights(model: Any, weights: list[np.ndarray]) -> None:
    """Load numpy arrays (``state_dict`` order, as from :func:`get_weights`) into the model."""
    import torch

    keys = list(model.state_dict())
    if len(keys) != len(weights):
        raise MessageError(f"model has {len(keys)} tensors, got {len(weights)} arrays")
    model.load_state_dict({k: torch.as_tensor(np.asarray(w)) for k, w in zip(keys, weights, strict=True)})


class PoissonBatches:
    """Batch sampler of Poisson batches from privfl's CSPRNG: each example is in each batch with probability q.

    ``steps`` batches of the indices ``i`` with ``U_i < q`` for fresh CSPRNG uniforms U
    (:func:`privfl.dp.noise.uniform_open`); a batch may be empty. Torch's global generator
    is never used, so no seed can make the batches predictable or repeat them.
    """

    def __init__(self, num_samples: int, sample_rate: float, steps: int) -> None:
        if num_samples < 1 or steps < 1 or not 0.0 < sample_rate <= 1.0:
            raise ConfigError(
                f"need num_samples, steps >= 1 and q in (0, 1], got {num_samples}, {steps}, {sample_rate}"
            )
        self.num_samples, self.sample_rate, self.steps = num_samples, sample_rate, steps

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[list[int]]:
        for _ in range(self.steps):
            yield np.flatnonzero(uniform_open(self.num_samples) < self.sample_rate).tolist()


def fit_dp_sgd(
    model: Any, features: np.ndarray, labels: np.ndarray, settings: DpSgdSettings, *, loss_fn: Any = None
) -> dict[str, float]:
    """Train ``model`` in place with Opacus DP-SGD on (features, labels); return fit metrics.

    The metrics include :data:`SAMPLE_RATE`, :data:`NOISE_MULTIPLIER` and :data:`STEPS`
    (what :class:`DpSgdLedgerMod` records) and the unnoised mean training loss
    :data:`TRAIN_LOSS`, for local use (the mod keeps it on the client unless opted in).
    Each epoch runs ceil(n / batch_size) steps of Poisson batches with q = 1 / steps
    (Opacus' convention), sampled by :class:`PoissonBatches`.
    """
    require_all(("torch", "opacus"), "fit_dp_sgd (DP-SGD in clients)")
    import torch
    from opacus import PrivacyEngine
    from opacus.data_loader import dtype_safe, shape_safe, wrap_collate_with_empty
    from torch.utils.data import DataLoader, TensorDataset, default_collate

    if len(features) != len(labels) or len(labels) == 0:
        raise ConfigError(f"need as many labels as examples, at least one: got {len(features)} and {len(labels)}")
    dataset = TensorDataset(torch.as_tensor(features, dtype=torch.float32), torch.as_tensor(labels))
    steps = math.ceil(len(dataset) / min(settings.batch_size, len(dataset)))
    collate = wrap_collate_with_empty(
        collate_fn=default_collate,
        sample_empty_shapes=[(0, *shape_safe(x)) for x in dataset[0]],
        dtypes=[dtype_safe(x) for x in dataset[0]],
    )
    loader = DataLoader(dataset, batch_sampler=PoissonBatches(len(dataset), 1.0 / steps, steps), collate_fn=collate)
    optimizer = torch.optim.SGD(model.parameters(), lr=settings.lr)
    loss_fn = loss_fn if loss_fn is not None else torch.nn.CrossEntropyLoss()
    # Opacus warns that its secure_mode is off (our CSPRNG noise replaces it) and torch that a linear
    # first layer's inputs need no gradient; neither is actionable by the caller.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Secure RNG turned off")
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        engine = PrivacyEngine(accountant="rdp")
        private_model, private_optimizer, private_loader = engine.make_private(
            module=model,
            optimizer=optimizer,
            data_loader=loader,
            noise_multiplier=settings.noise_multiplier,
            max_grad_norm=settings.max_grad_norm,
            poisson_sampling=False,  # the loader already samples Poisson batches, from the CSPRNG
        )
        _use_csprng_noise(private_optimizer)
        sample_rate = 1.0 / len(private_loader)  # Opacus: expected batch size / dataset size
        steps, total_loss, seen = 0, 0.0, 0
        private_model.train()
        for _ in range(settings.epochs):
            for x, y in private_loader:
                private_optimizer.zero_grad()
                if len(y):
                    loss = loss_fn(private_model(x), y)
                    loss.backward()
                    total_loss += float(loss.detach()) * len(y)
                    seen += len(y)
                else:
                    # An empty Poisson batch is still a step: no per-example gradients, so the
                    # optimizer clips and sums nothing and adds its noise to a zero gradient.
                    for param in private_optimizer.params:
                        param.grad_sample = torch.zeros((0, *param.shape), dtype=param.dtype)
                private_optimizer.step()
                steps += 1
    private_model.remove_hooks()
    return {
        SAMPLE_RATE: sample_rate,
        NOISE_MULTIPLIER: settings.noise_multiplier,
        STEPS: steps,
        TRAIN_LOSS: total_loss / max(seen, 1),
    }


def _use_csprng_noise(optimizer: Any) -> None:
    """Make an Opacus ``DPOptimizer`` draw N(0, (z C)^2) from privfl's CSPRNG (same math as its ``add_noise``)."""
    import torch
    from opacus.optimizers.optimizer import _check_processed_flag, _mark_as_processed

    def add_noise() -> None:
        std = optimizer.noise_multiplier * optimizer.max_grad_norm
        for p in optimizer.params:
            _check_processed_flag(p.summed_grad)
            noise = torch.from_numpy(gaussian_noise(tuple(p.summed_grad.shape), std))
            p.grad = (p.summed_grad + noise.to(p.summed_grad.dtype)).view_as(p)
            _mark_as_processed(p.summed_grad)

    optimizer.add_noise = add_noise


@dataclass(frozen=True)
class DpSgdLedgerMod:
    """Record each fit's DP-SGD in the client's sample-level ledger and report its cumulative epsilon.

    Reads the mechanism from the reply metrics written by :func:`fit_dp_sgd` (the client's
    own code, in the same process); a training reply without them is refused, so a fit
    that skipped DP-SGD cannot go out unaccounted. Only :data:`MECHANISM_METRICS` leave the
    client: the training loss and every other metric computed on the private data without
    noise are dropped unless named in ``unnoised_metrics``.

    Args:
        delta: delta at which ``dp_sgd_epsilon`` is reported, in (0, 1).
        unnoised_metrics: names of metrics computed without noise that the user chooses to
            send anyway (e.g. ``("train_loss",)``); they are not covered by the guarantee.
    """

    delta: float
    unnoised_metrics: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "delta", check_delta(self.delta))
        if isinstance(self.unnoised_metrics, str) or not all(isinstance(k, str) for k in self.unnoised_metrics):
            raise ConfigError(f"unnoised_metrics must be a tuple of metric names, got {self.unnoised_metrics!r}")
        object.__setattr__(self, "unnoised_metrics", tuple(self.unnoised_metrics))

    @staticmethod
    def ledger(context: Context) -> PrivacyLedger:
        """The client's DP-SGD ledger (restored from a checkpoint on resume)."""
        return context.get_or_create(LEDGER_KEY, PrivacyLedger)

    def __call__(self, message: Message, context: Context, call_next: App) -> Message:
        reply = call_next(message, context)
        if message.metadata.kind is not MessageKind.TRAIN:
            return reply
        try:
            q, z, steps = (reply.metrics[k] for k in (SAMPLE_RATE, NOISE_MULTIPLIER, STEPS))
        except KeyError:
            raise MessageError(f"DP-SGD fit reply lacks {SAMPLE_RATE}, {NOISE_MULTIPLIER} or {STEPS}") from None
        ledger = self.ledger(context)
        if steps:
            ledger.record(
                ComposedEvent(PoissonSampledEvent(float(q), GaussianEvent(float(z))), int(steps)),
                server_round=message.metadata.server_round,
                scope="record",
                locality="local",
                note="Opacus DP-SGD",
            )
        shared = (*MECHANISM_METRICS, *self.unnoised_metrics)
        metrics = {k: v for k, v in reply.metrics.items() if k in shared}
        return reply.replace(metrics={**metrics, EPSILON: ledger.epsilon(self.delta)})
