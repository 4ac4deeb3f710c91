"""Client mods: fixed clipping and local DP (clip + calibrated noise + client-side ledger)."""

from __future__ import annotations

import numpy as np
import pytest
from dp_helpers import fixed_trainer, train_message

from privfl.accounting import GaussianEvent, PrivacyBudget
from privfl.core.context import Context
from privfl.core.message import Message, MessageKind, Metadata
from privfl.dp.calibration import analytic_gaussian_sigma
from privfl.dp.client_mods import LOCAL_LEDGER_KEY, PRE_CLIP_NORM, FixedClippingMod, LocalDpMod
from privfl.errors import BudgetExceededError, ConfigError, MessageError

PARAMS = {"w": np.full((20, 10), 300.0, np.float32), "b": np.linspace(-5, 5, 10).astype(np.float32)}


def test_fixed_clipping_bounds_the_update_the_server_sees() -> None:
    rng = np.random.default_rng(0)
    update = {k: rng.normal(size=v.shape) for k, v in PARAMS.items()}
    reply = FixedClippingMod(0.5, report_norm=True)(train_message(PARAMS), Context(1), fixed_trainer(update))
    seen = np.concatenate([(reply.arrays[k].astype(np.float64) - PARAMS[k]).ravel() for k in PARAMS])
    assert np.linalg.norm(seen) <= 0.5
    assert np.linalg.norm(seen) > 0.5 * (1 - 1e-3)  # clipped, not zeroed (rounding toward 300.0 loses ~ulp)
    assert reply.metrics[PRE_CLIP_NORM] == pytest.approx(np.sqrt(sum((u**2).sum() for u in update.values())))
    assert reply.arrays["w"].dtype == np.float32


def test_fixed_clipping_leaves_small_updates_and_other_messages_alone() -> None:
    update = {"w": np.full((20, 10), 1e-3), "b": np.zeros(10)}
    reply = FixedClippingMod(10.0)(train_message(PARAMS), Context(1), fixed_trainer(update))
    np.testing.assert_array_equal(reply.arrays["w"], (PARAMS["w"] + 1e-3).astype(np.float32))
    assert PRE_CLIP_NORM not in reply.metrics
    evaluate = Message(Metadata(0, 1, 0, 1, MessageKind.EVALUATE), arrays=dict(PARAMS))
    answer = evaluate.reply(metrics={"loss": 1.0})
    assert FixedClippingMod(1.0)(evaluate, Context(1), lambda m, c: answer) is answer


def test_fixed_clipping_refuses_a_reply_with_another_layout() -> None:
    def bad(message, context):
        return message.reply(arrays={"w": message.arrays["w"]})

    with pytest.raises(MessageError, match="array names"):
        FixedClippingMod(1.0)(train_message(PARAMS), Context(1), bad)


def test_local_dp_noise_and_ledger() -> None:
    mod = LocalDpMod(clip_norm=0.5, epsilon=2.0, delta=1e-5, rng=np.random.default_rng(1))
    # Sensitivity of one client's release in the local model is the diameter of the clipping ball, 2C.
    assert mod.noise_std == pytest.approx(analytic_gaussian_sigma(2.0, 1e-5, 1.0))
    big = {"w": np.zeros((200, 100), np.float32), "b": np.zeros(100, np.float32)}
    ctx = Context(3)
    update = {"w": np.zeros((200, 100)), "b": np.full(100, 0.1)}  # norm 1: clipped to 0.5
    for rnd in (1, 4):
        reply = mod(train_message(big, node=3, server_round=rnd), ctx, fixed_trainer(update))
    noise = reply.arrays["w"].astype(np.float64).ravel()
    assert abs(noise.std() - mod.noise_std) < 5 * mod.noise_std / np.sqrt(2 * noise.size)
    assert reply.arrays["b"].mean() == pytest.approx(0.05, abs=5 * mod.noise_std / 10)
    ledger = ctx.state[LOCAL_LEDGER_KEY]
    assert [e.server_round for e in ledger.entries] == [1, 4]
    assert {(e.scope, e.locality) for e in ledger.entries} == {("client", "local")}
    assert ledger.entries[0].event == GaussianEvent(mod.noise_std / 1.0)
    assert reply.metrics["local_dp_epsilon"] == pytest.approx(ledger.epsilon(1e-5))
    assert reply.metrics["local_dp_epsilon"] > 2.0  # two releases cost more than one


def test_local_dp_drops_metrics_computed_on_private_data() -> None:
    def app(message, context):
        return fixed_trainer({k: 0 * v for k, v in PARAMS.items()}, num_examples=7)(message, context).replace(
            metrics={"num_examples": 7, "train_loss": 0.25, "train_accuracy": 1.0}
        )

    reply = LocalDpMod(clip_norm=1.0, epsilon=1.0, delta=1e-5)(train_message(PARAMS), Context(1), app)
    assert set(reply.metrics) == {"num_examples", "local_dp_noise_std", "local_dp_epsilon"}
    assert reply.metrics["num_examples"] == 7


def test_local_dp_ledger_is_checkpointed_and_restored_by_the_context() -> None:
    mod = LocalDpMod(clip_norm=1.0, epsilon=1.0, delta=1e-5)
    ctx = Context(2)
    for rnd in (1, 2, 3):
        mod(train_message(PARAMS, node=2, server_round=rnd), ctx, fixed_trainer({k: 0 * v for k, v in PARAMS.items()}))
    saved = ctx.checkpoint_state()
    fresh = Context(2)
    fresh.restore_state(saved)
    mod(train_message(PARAMS, node=2, server_round=4), fresh, fixed_trainer({k: 0 * v for k, v in PARAMS.items()}))
    assert [e.server_round for e in mod.ledger(fresh).entries] == [1, 2, 3, 4]


def test_local_budget_refuses_before_training() -> None:
    mod = LocalDpMod(clip_norm=1.0, epsilon=1.0, delta=1e-6, budget=PrivacyBudget(3.0, 1e-5))
    ctx = Context(1)
    trained = []

    def app(message, context):
        trained.append(message.metadata.server_round)
        return fixed_trainer({k: 0 * v for k, v in PARAMS.items()})(message, context)

    with pytest.raises(BudgetExceededError):
        for rnd in range(1, 100):
            mod(train_message(PARAMS, server_round=rnd), ctx, app)
    assert trained == [e.server_round for e in mod.ledger(ctx).entries]
    assert mod.ledger(ctx).epsilon() <= 3.0


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"clip_norm": -1.0, "epsilon": 1.0, "delta": 1e-5}, "clip_norm .* got -1.0"),
        ({"clip_norm": 0.0, "epsilon": 1.0, "delta": 1e-5}, "clip_norm .* got 0.0"),
        ({"clip_norm": 1.0, "epsilon": 0.0, "delta": 1e-5}, "epsilon .* got 0.0"),
        ({"clip_norm": 1.0, "epsilon": -0.5, "delta": 1e-5}, "epsilon .* got -0.5"),
        ({"clip_norm": 1.0, "epsilon": 1.0, "delta": 1.0}, r"delta must be in \(0, 1\), got 1.0"),
        ({"clip_norm": 1.0, "epsilon": 1.0, "delta": -1e-5}, r"delta must be in \(0, 1\), got -1e-05"),
        ({"clip_norm": 1.0, "epsilon": 2.0, "delta": 1e-5, "mechanism": "classic"}, "epsilon=2.0"),
        ({"clip_norm": 1.0, "epsilon": 0.5, "delta": 1e-5, "mechanism": "laplace"}, "'laplace'"),
    ],
)
def test_local_dp_refuses_bad_parameters_at_construction(kwargs: dict, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        LocalDpMod(**kwargs)


def test_fixed_clipping_refuses_bad_norm() -> None:
    with pytest.raises(ConfigError, match=r"-0\.1"):
        FixedClippingMod(-0.1)
