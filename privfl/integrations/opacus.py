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

Randomness: the DP-SGD noise comes from privfl's CSPRNG (:func:`privfl.dp.noise.gaussian_noise`,
a ChaCha20 keystream under fresh ``os.urandom`` keys): the optimizer's ``add_noise`` is
replaced after ``make_private``, since Opacus' own cryptographic mode needs the
``torchcsprng`` package, which has no build for current torch. Poisson batch sampling
uses a torch generator seeded from ``os.urandom`` (unpredictable seed, Mersenne Twister
stream): it hides who is in a batch from an observer of the updates, not from one who
can read the generator's state.

torch and opacus are imported when these functions run, never at import time (``privfl[torch]``).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from privfl.accounting import ComposedEvent, GaussianEvent, PoissonSampledEvent, PrivacyLedger
from privfl.accounting.conversion import check_delta
from privfl.core.context import Context
from privfl.core.extras import require_all
from privfl.core.message import Message, MessageKind
from privfl.core.mods import App
from privfl.dp.calibration import check_positive
from privfl.dp.noise import gaussian_noise
from privfl.errors import ConfigError, MessageError

SAMPLE_RATE = "dp_sgd_sample_rate"
NOISE_MULTIPLIER = "dp_sgd_noise_multiplier"
STEPS = "dp_sgd_steps"
EPSILON = "dp_sgd_epsilon"
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


def fit_dp_sgd(
    model: Any, features: np.ndarray, labels: np.ndarray, settings: DpSgdSettings, *, loss_fn: Any = None
) -> dict[str, float]:
    """Train ``model`` in place with Opacus DP-SGD on (features, labels); return fit metrics.

    The metrics include :data:`SAMPLE_RATE`, :data:`NOISE_MULTIPLIER` and :data:`STEPS`
    (what :class:`DpSgdLedgerMod` records) and the mean training loss.
    """
    require_all(("torch", "opacus"), "fit_dp_sgd (DP-SGD in clients)")
    import torch
    from opacus import PrivacyEngine
    from torch.utils.data import DataLoader, TensorDataset

    if len(features) != len(labels) or len(labels) == 0:
        raise ConfigError(f"need as many labels as examples, at least one: got {len(features)} and {len(labels)}")
    dataset = TensorDataset(torch.as_tensor(features, dtype=torch.float32), torch.as_tensor(labels))
    loader = DataLoader(dataset, batch_size=min(settings.batch_size, len(dataset)))
    optimizer = torch.optim.SGD(model.parameters(), lr=settings.lr)
    sampling_generator = torch.Generator().manual_seed(int.from_bytes(os.urandom(8), "little") >> 1)
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
            poisson_sampling=True,
            noise_generator=sampling_generator,
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
                # An empty Poisson batch is still a step: the optimizer adds noise to a zero gradient.
                private_optimizer.step()
                steps += 1
    private_model.remove_hooks()
    return {
        SAMPLE_RATE: sample_rate,
        NOISE_MULTIPLIER: settings.noise_multiplier,
        STEPS: steps,
        "train_loss": total_loss / max(seen, 1),
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
    that skipped DP-SGD cannot go out unaccounted.

    Args:
        delta: delta at which ``dp_sgd_epsilon`` is reported, in (0, 1).
    """

    delta: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "delta", check_delta(self.delta))

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
        return reply.replace(metrics={**reply.metrics, EPSILON: ledger.epsilon(self.delta)})
