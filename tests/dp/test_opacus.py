"""Sample-level DP inside a client with Opacus: the ledger matches Opacus' own accountant; no torch at import."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from dp_helpers import train_message

from privfl.accounting import ComposedEvent, GaussianEvent, PoissonSampledEvent
from privfl.core.context import Context
from privfl.core.names import NUM_EXAMPLES
from privfl.errors import ConfigError, MessageError
from privfl.integrations.opacus import (
    EPSILON,
    STEPS,
    DpSgdLedgerMod,
    DpSgdSettings,
    fit_dp_sgd,
    get_weights,
    set_weights,
)


def test_privfl_imports_without_torch() -> None:
    code = (
        "import sys, privfl, privfl.dp, privfl.dp.central, privfl.dp.client_mods, privfl.integrations.opacus; "
        "assert 'torch' not in sys.modules and 'opacus' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_dp_sgd_fit_is_recorded_per_round_and_matches_opacus() -> None:
    import opacus  # noqa: F401
    import torch as torch
    from opacus.accountants import RDPAccountant

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(120, 5)).astype(np.float32), rng.integers(0, 3, 120)
    settings = DpSgdSettings(noise_multiplier=1.3, max_grad_norm=1.0, batch_size=12, epochs=2, lr=0.2)

    def client_app(message, context):
        model = torch.nn.Linear(5, 3)
        set_weights(model, list(message.arrays.values()))
        metrics = fit_dp_sgd(model, x, y, settings)
        arrays = dict(zip(message.arrays, get_weights(model), strict=True))
        return message.reply(arrays=arrays, metrics={**metrics, NUM_EXAMPLES: len(y)})

    mod = DpSgdLedgerMod(delta=1e-5)
    params = {"weight": np.zeros((3, 5), np.float32), "bias": np.zeros(3, np.float32)}
    ctx = Context(1)
    replies = [mod(train_message(params, server_round=r), ctx, client_app) for r in (1, 2)]
    assert all(r.metrics[STEPS] == 20 for r in replies)  # 2 epochs of 1 / q = 10 Poisson batches
    assert not np.allclose(replies[0].arrays["weight"], 0)
    ledger = mod.ledger(ctx)
    assert [e.server_round for e in ledger.entries] == [1, 2]
    assert ledger.entries[0].event == ComposedEvent(PoissonSampledEvent(0.1, GaussianEvent(1.3)), 20)
    assert {(e.scope, e.locality) for e in ledger.entries} == {("record", "local")}
    opacus_rdp = RDPAccountant()
    opacus_rdp.history = [(1.3, 0.1, 40)]
    assert replies[1].metrics[EPSILON] == pytest.approx(opacus_rdp.get_epsilon(1e-5), rel=1e-3)
    assert replies[1].metrics[EPSILON] > replies[0].metrics[EPSILON]


def test_a_fit_without_dp_sgd_is_refused() -> None:
    def plain(message, context):
        return message.reply(arrays=message.arrays, metrics={NUM_EXAMPLES: 1})

    with pytest.raises(MessageError, match="dp_sgd_sample_rate"):
        DpSgdLedgerMod(1e-5)(train_message({"w": np.zeros(2, np.float32)}), Context(1), plain)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"noise_multiplier": 0.0, "max_grad_norm": 1.0, "batch_size": 8}, r"noise_multiplier .* got 0\.0"),
        ({"noise_multiplier": 1.0, "max_grad_norm": -1.0, "batch_size": 8}, r"max_grad_norm .* got -1\.0"),
        ({"noise_multiplier": 1.0, "max_grad_norm": 1.0, "batch_size": 0}, "batch_size .* got 0"),
    ],
)
def test_settings_refuse_bad_values(kwargs: dict, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        DpSgdSettings(**kwargs)


def test_dp_sgd_noise_comes_from_privfls_csprng(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    import privfl.integrations.opacus as dp_sgd

    stds: list[float] = []

    def spy(shape, std, *, rng=None):
        stds.append(std)
        return np.zeros(shape)  # no noise: the step must then be the plain clipped-gradient step

    monkeypatch.setattr(dp_sgd, "gaussian_noise", spy)
    x, y = np.ones((8, 2), np.float32), np.zeros(8, dtype=np.int64)
    model = torch.nn.Linear(2, 2)
    before = [p.detach().clone() for p in model.parameters()]
    metrics = fit_dp_sgd(model, x, y, DpSgdSettings(noise_multiplier=1.5, max_grad_norm=0.5, batch_size=8))
    assert len(stds) == 2 * metrics[STEPS] and set(stds) == {1.5 * 0.5}  # weight and bias, every step
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True))


def _batches_of_one_fit(seed: int) -> list[list[int]]:
    """The example indices of each batch of one DP-SGD fit, after ``torch.manual_seed(seed)``."""
    import torch

    n = 40
    x = np.zeros((n, 3), dtype=np.float32)
    y = np.arange(n)  # each label names its example
    batches: list[list[int]] = []

    def loss_fn(output, target):
        batches.append(sorted(target.tolist()))
        return torch.nn.functional.cross_entropy(output, target)

    torch.manual_seed(seed)
    settings = DpSgdSettings(noise_multiplier=1.0, max_grad_norm=1.0, batch_size=8, epochs=3)
    fit_dp_sgd(torch.nn.Linear(3, n), x, y, settings, loss_fn=loss_fn)
    return batches


def test_poisson_batches_are_secret_whatever_torch_is_seeded_with() -> None:
    """Issue 13: Opacus drew batches from torch's global RNG, so torch.manual_seed(0) before a fit repeated them."""
    first, second = _batches_of_one_fit(0), _batches_of_one_fit(0)
    assert first != second
    sizes = [len(b) for b in first + second]  # Poisson with q = 1/5 of 40: mean 8 (empty batches skip the loss)
    assert 5 < np.mean(sizes) < 11


def test_poisson_batches_sampler() -> None:
    from privfl.integrations.opacus import PoissonBatches

    batches = list(PoissonBatches(1000, 0.1, 50))
    assert len(batches) == 50 and all(b == sorted(set(b)) and all(0 <= i < 1000 for i in b) for b in batches)
    assert abs(np.mean([len(b) for b in batches]) - 100) < 10
    with pytest.raises(ConfigError):
        PoissonBatches(10, 0.0, 5)


def test_unnoised_training_metrics_stay_on_the_client_unless_named() -> None:
    metrics = {"dp_sgd_sample_rate": 0.1, "dp_sgd_noise_multiplier": 1.0, STEPS: 3, NUM_EXAMPLES: 10}
    metrics |= {"train_loss": 0.7, "train_accuracy": 0.9}

    def app(message, context):
        return message.reply(arrays=message.arrays, metrics=metrics)

    message = train_message({"w": np.zeros(2, dtype=np.float32)})
    reply = DpSgdLedgerMod(1e-5)(message, Context(node_id=1), app)
    assert set(reply.metrics) == {"dp_sgd_sample_rate", "dp_sgd_noise_multiplier", STEPS, NUM_EXAMPLES, EPSILON}
    opted = DpSgdLedgerMod(1e-5, unnoised_metrics=("train_loss",))(message, Context(node_id=2), app)
    assert opted.metrics["train_loss"] == 0.7 and "train_accuracy" not in opted.metrics
    with pytest.raises(ConfigError):
        DpSgdLedgerMod(1e-5, unnoised_metrics="train_loss")


def test_empty_poisson_batches_are_noisy_steps() -> None:
    """With q = 1/3 over 3 examples about 30% of batches are empty; each is still a step (noise only)."""
    import torch

    seen: list[int] = []

    def loss_fn(output, target):
        seen.append(len(target))
        return torch.nn.functional.cross_entropy(output, target)

    x, y = np.ones((3, 3), dtype=np.float32), np.arange(3)
    settings = DpSgdSettings(noise_multiplier=1.0, max_grad_norm=1.0, batch_size=1, epochs=20)
    metrics = fit_dp_sgd(torch.nn.Linear(3, 3), x, y, settings, loss_fn=loss_fn)
    assert metrics[STEPS] == 60 and 0 < len(seen) < 60  # P(no empty batch in 60) is about 1e-9
