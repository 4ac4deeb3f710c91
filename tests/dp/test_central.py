"""Central-DP aggregators: noise scale, denominators, refusals, ledger timing, adaptive clipping."""

from __future__ import annotations

import math

import numpy as np
import pytest
from dp_helpers import FakeSecAgg, fixed_trainer, round_spec, run_exchange

from privfl.accounting import GaussianEvent, PoissonSampledEvent, PrivacyBudget, epsilon_for
from privfl.core.context import Context
from privfl.core.exchange import Aggregate
from privfl.core.names import NUM_EXAMPLES
from privfl.core.plain import PlainAggregator
from privfl.dp.central import AdaptiveClippingDp, CentralDp
from privfl.dp.client_mods import FixedClippingMod
from privfl.dp.noise import gaussian_noise
from privfl.errors import BudgetExceededError, ConfigError

BIG = {"w": np.zeros((500, 400), np.float32)}


def echo(message):
    """A client that returns the model unchanged (a zero update)."""
    return message.reply(arrays=message.arrays, metrics={NUM_EXAMPLES: 1})


@pytest.mark.parametrize(("z", "clip"), [(1.0, 1.0), (0.7, 0.05), (3.0, 2.0)])
def test_noise_std_on_the_sum_is_z_times_c(z: float, clip: float) -> None:
    dp = CentralDp.with_server_clipping(noise_multiplier=z, clip_norm=clip, delta=1e-5)
    agg = run_exchange(dp.aggregate(round_spec(BIG, (1, 2, 3), rate=0.05, population=200)), echo)
    noise = agg.update_sum["w"].ravel()
    # OS CSPRNG noise: 5.5 standard errors, a two-sided tail of 3.8e-8 per check.
    assert abs(noise.std() - z * clip) < 5.5 * z * clip / math.sqrt(2 * noise.size)
    assert abs(noise.mean()) < 5.5 * z * clip / math.sqrt(noise.size)
    assert agg.weight_sum == pytest.approx(0.05 * 200)  # the expected, not the actual, number of clients
    assert agg.num_clients == 3
    assert agg.metrics["dp_noise_std"] == pytest.approx(z * clip)
    assert agg.metrics["dp_epsilon"] == pytest.approx(
        epsilon_for(noise_multiplier=z, sampling_rate=0.05, rounds=1, delta=1e-5)
    )
    assert dp.ledger.entries[0].event == PoissonSampledEvent(0.05, GaussianEvent(z))


def test_server_clipping_bounds_each_contribution() -> None:
    params = {"w": np.zeros(4, np.float32)}
    dp = CentralDp.with_server_clipping(noise_multiplier=1.0, clip_norm=1.0, rng=np.random.default_rng(0))
    updates = {1: np.array([30.0, 40.0, 0, 0]), 2: np.array([0, 0, 0.3, 0.4])}

    def client(message):
        return fixed_trainer({"w": updates[message.metadata.dst_node]})(message, Context(0))

    agg = run_exchange(dp.aggregate(round_spec(params, (1, 2))), client)
    # Each update clipped to norm 1 at most, then the same noise the injected generator gives.
    expected = np.array([0.6, 0.8, 0.3, 0.4]) + gaussian_noise(4, 1.0, rng=np.random.default_rng(0))
    np.testing.assert_allclose(agg.update_sum["w"], expected, rtol=1e-6)


def test_empty_poisson_round_still_releases_noise() -> None:
    dp = CentralDp.with_server_clipping(noise_multiplier=1.0, clip_norm=1.0)
    agg = run_exchange(dp.aggregate(round_spec(BIG, ())), echo)
    assert agg.num_clients == 0 and agg.weight_sum == pytest.approx(10.0)
    assert agg.update_sum["w"].std() > 0.9
    assert len(dp.ledger.entries) == 1


def test_wrapping_a_secagg_like_aggregator_with_client_clipping() -> None:
    params = {"w": np.ones((100, 50), np.float32)}
    inner = FakeSecAgg()
    dp = CentralDp(inner, noise_multiplier=0.5, clip_norm=0.1, delta=1e-5, rng=np.random.default_rng(5))
    clip = FixedClippingMod(0.1)
    stages = []

    def client(message):
        stages.append(message.metadata.stage)
        # Each client would move far; its mod clips to 0.1 before anything leaves it.
        return clip(message, Context(message.metadata.dst_node), fixed_trainer({"w": np.full((100, 50), 1.0)}))

    agg = run_exchange(dp.aggregate(round_spec(params, (1, 2, 3, 4), rate=0.2, population=40)), client)
    assert stages.count("fake.setup") == 4 and stages.count("fake.masked_input") == 4
    assert agg.weight_sum == pytest.approx(8.0)
    # Sum of four updates of norm 0.1 along the all-ones direction, plus noise of std 0.5 * 0.1 = 0.05.
    signal = 4 * 0.1 / math.sqrt(5000)
    residual = agg.update_sum["w"] - signal
    assert abs(residual.mean()) < 5 * 0.05 / math.sqrt(5000)
    assert residual.std() == pytest.approx(0.05, rel=0.05)
    assert dp.state_dict()["inner"] == {"rounds": 1}
    assert len(dp.ledger.entries) == 1


class RoundingFakeSecAgg(FakeSecAgg):
    """A SecAgg-like aggregator that declares a rounding distortion bound, as SecAgg+ does."""

    def contribution_error_bound(self, spec) -> float:
        return 0.25


def test_noise_covers_the_inner_aggregators_rounding_distortion() -> None:
    params = {"w": np.zeros((200, 100), np.float32)}
    dp = CentralDp(RoundingFakeSecAgg(), noise_multiplier=2.0, clip_norm=1.0, rng=np.random.default_rng(1))
    agg = run_exchange(dp.aggregate(round_spec(params, (1, 2), rate=0.2, population=10)), echo)
    assert agg.metrics["dp_sensitivity"] == pytest.approx(1.25)
    assert agg.metrics["dp_noise_std"] == pytest.approx(2.0 * 1.25)
    assert agg.update_sum["w"].std() == pytest.approx(2.5, rel=0.03)
    assert dp.ledger.entries[0].event == PoissonSampledEvent(0.2, GaussianEvent(2.0))


def test_secagg_rounding_bound_is_sqrt_d_quantisation_steps() -> None:
    from privfl.secagg import SecAggConfig, SecAggPlusAggregator

    params = {"w": np.zeros((30, 30), np.float32), "b": np.zeros(100, np.float32)}
    agg = SecAggPlusAggregator(SecAggConfig(coordinate_bound=2.0, bits=10, weighting="uniform"), semi_honest=True)
    assert agg.contribution_error_bound(round_spec(params, (1, 2, 3))) == pytest.approx(math.sqrt(1000) * 4.0 / 1023)


def test_budget_is_checked_before_any_message_and_nothing_is_recorded_early() -> None:
    one = epsilon_for(noise_multiplier=1.0, sampling_rate=0.5, rounds=1, delta=1e-5)
    two = epsilon_for(noise_multiplier=1.0, sampling_rate=0.5, rounds=2, delta=1e-5)
    dp = CentralDp.with_server_clipping(
        noise_multiplier=1.0, clip_norm=1.0, budget=PrivacyBudget((one + two) / 2, 1e-5)
    )
    spec = round_spec({"w": np.zeros(3, np.float32)}, (1,), rate=0.5, population=2)
    exchange = dp.aggregate(spec)
    outbox = next(exchange)
    assert len(outbox) == 1 and dp.ledger.entries == ()  # sent, but not yet released
    exchange.close()  # the round is abandoned (e.g. the loop aborts it): nothing was released
    assert dp.ledger.entries == ()
    run_exchange(dp.aggregate(spec), echo)
    assert len(dp.ledger.entries) == 1
    with pytest.raises(BudgetExceededError, match="budget"):
        next(dp.aggregate(spec))  # raised before the first message is yielded
    assert len(dp.ledger.entries) == 1


def test_state_dict_round_trip_keeps_the_ledger() -> None:
    dp = CentralDp.with_server_clipping(noise_multiplier=1.2, clip_norm=1.0)
    for _ in range(3):
        run_exchange(dp.aggregate(round_spec({"w": np.zeros(2, np.float32)}, (1,))), echo)
    other = CentralDp.with_server_clipping(noise_multiplier=1.2, clip_norm=1.0)
    other.load_state_dict(dp.state_dict())
    assert other.ledger.entries == dp.ledger.entries
    assert other.ledger.epsilon(1e-5) == pytest.approx(dp.ledger.epsilon(1e-5))


def test_refusals() -> None:
    with pytest.raises(ConfigError, match="weighting='examples'"):
        CentralDp(PlainAggregator(weighting="examples"), noise_multiplier=1.0, clip_norm=1.0)
    with pytest.raises(ConfigError, match=r"noise_multiplier .* got 0\.0"):
        CentralDp.with_server_clipping(noise_multiplier=0.0, clip_norm=1.0)
    with pytest.raises(ConfigError, match=r"clip_norm .* got -2\.0"):
        CentralDp.with_server_clipping(noise_multiplier=1.0, clip_norm=-2.0)
    with pytest.raises(ConfigError, match=r"delta must be in \(0, 1\), got 2"):
        CentralDp.with_server_clipping(noise_multiplier=1.0, clip_norm=1.0, delta=2)
    dp = CentralDp.with_server_clipping(noise_multiplier=1.0, clip_norm=1.0)
    with pytest.raises(ConfigError, match="fixed-size sampling"):
        next(dp.aggregate(round_spec({"w": np.zeros(2)}, (1,), poisson=False)))


def test_an_inner_aggregator_that_weights_updates_is_refused_before_noise() -> None:
    class Weighted(FakeSecAgg):
        def aggregate(self, spec):
            agg = yield from super().aggregate(spec)
            return Aggregate(agg.update_sum, weight_sum=agg.weight_sum * 7, num_clients=agg.num_clients)

    dp = CentralDp(Weighted(), noise_multiplier=1.0, clip_norm=1.0)
    with pytest.raises(ConfigError, match="weighted the updates"):
        run_exchange(dp.aggregate(round_spec({"w": np.zeros(2, np.float32)}, (1, 2))), echo)
    assert dp.ledger.entries == ()


def norms_client(norms: dict[int, float], dim: int = 8):
    def client(message):
        node = message.metadata.dst_node
        update = np.zeros(dim)
        update[node % dim] = norms[node]
        return fixed_trainer({"w": update})(message, Context(node))

    return client


def test_adaptive_clipping_moves_toward_the_target_quantile() -> None:
    population = 200
    nodes = tuple(range(1, population + 1))
    norms = {n: float(n) / 20 for n in nodes}  # norms 0.05 .. 10, uniform
    for target in (0.2, 0.8):
        dp = AdaptiveClippingDp(
            noise_multiplier=1.0,
            initial_clip_norm=0.1 if target > 0.5 else 10.0,
            count_noise_std=5.0,
            target_quantile=target,
            clip_learning_rate=0.2,
            rng=np.random.default_rng(1),
        )
        applied = []
        for _ in range(120):
            agg = run_exchange(
                dp.aggregate(round_spec({"w": np.zeros(8, np.float32)}, nodes, rate=1.0, population=population)),
                norms_client(norms),
            )
            applied.append(agg.metrics["dp_clip_norm"])
        quantile = np.quantile(list(norms.values()), target)
        assert np.mean(applied[-20:]) == pytest.approx(quantile, rel=0.1), (target, applied[-5:])


def test_adaptive_noise_uses_the_norm_applied_this_round() -> None:
    dp = AdaptiveClippingDp(noise_multiplier=1.0, initial_clip_norm=2.0, count_noise_std=1.0, delta=1e-5)
    # Andrew et al. Thm 1: z_delta = (1 - 1/4)^(-1/2).
    assert dp.update_noise_multiplier == pytest.approx(1 / math.sqrt(0.75))
    agg = run_exchange(dp.aggregate(round_spec({"w": np.zeros((300, 300), np.float32)}, (1, 2))), echo)
    assert agg.metrics["dp_clip_norm"] == 2.0
    assert agg.metrics["dp_noise_std"] == pytest.approx(2.0 / math.sqrt(0.75))
    assert agg.update_sum["w"].std() == pytest.approx(2.0 / math.sqrt(0.75), rel=0.02)
    # The next round's norm follows the geometric update from the noisy fraction (Andrew et al. 2021).
    fraction = agg.metrics["dp_unclipped_fraction"]
    assert dp.clip_norm == pytest.approx(2.0 * math.exp(-0.2 * (fraction - 0.5)))
    assert dp.clip_norm != 2.0
    assert [e.event for e in dp.ledger.entries] == [PoissonSampledEvent(0.1, GaussianEvent(1.0))]
    restored = AdaptiveClippingDp(noise_multiplier=1.0, initial_clip_norm=2.0, count_noise_std=1.0)
    restored.load_state_dict(dp.state_dict())
    assert restored.clip_norm == dp.clip_norm and restored.ledger.entries == dp.ledger.entries


def test_adaptive_refuses_count_noise_that_leaves_nothing_for_the_update() -> None:
    with pytest.raises(ConfigError, match=r"count_noise_std .* got 0\.4"):
        AdaptiveClippingDp(noise_multiplier=1.0, initial_clip_norm=1.0, count_noise_std=0.4)
    with pytest.raises(ConfigError, match=r"target_quantile .* got 1\.5"):
        AdaptiveClippingDp(noise_multiplier=1.0, initial_clip_norm=1.0, count_noise_std=2.0, target_quantile=1.5)
