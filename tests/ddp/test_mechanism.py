"""Rotation, conditional rounding, encode/decode and parameter planning of distributed DP."""

from __future__ import annotations

import math

import numpy as np
import pytest

from privfl.ddp.mechanism import clip_flat, conditional_round, decode_sum, encode, unwrap, wrap
from privfl.ddp.params import DdpParams, epsilon_of, plan_ddp
from privfl.ddp.rotation import padded_dimension, rotate, rotation_seed, unrotate
from privfl.errors import ConfigError, MessageError

SEED = bytes(range(32))


def test_rotation_is_orthogonal_and_inverted() -> None:
    d = 64
    matrix = np.stack([rotate(np.eye(d)[i], SEED) for i in range(d)], axis=1)
    np.testing.assert_allclose(matrix.T @ matrix, np.eye(d), atol=1e-12)
    x = np.random.default_rng(0).normal(size=d)
    np.testing.assert_allclose(unrotate(rotate(x, SEED), SEED), x, atol=1e-12)
    assert math.isclose(np.linalg.norm(rotate(x, SEED)), np.linalg.norm(x), rel_tol=1e-12)


def test_rotation_flattens_a_spike() -> None:
    """KLS21 Sec. 4.2: after H D, a one-hot vector has every coordinate +-1/sqrt(d')."""
    y = rotate(np.eye(1024)[3], SEED)
    np.testing.assert_allclose(np.abs(y), 1 / 32, rtol=1e-12)


def test_rotation_seed_binds_run_round_and_model() -> None:
    model = {"w": np.zeros((2, 3), dtype=np.float32)}
    seed = rotation_seed(1, 5, model)
    assert seed == rotation_seed(1, 5, {"w": np.zeros((2, 3), dtype=np.float32)})
    assert seed != rotation_seed(1, 6, model)
    assert seed != rotation_seed(2, 5, model)
    assert seed != rotation_seed(1, 5, {"w": np.ones((2, 3), dtype=np.float32)})


def test_padding_adds_at_most_a_fifth_and_blocks_stay_orthogonal() -> None:
    assert [padded_dimension(d) for d in (1, 2, 3, 650, 1000, 1024, 1025)] == [1, 2, 3, 768, 1024, 1024, 1152]
    assert all(padded_dimension(d) <= 1.2 * d for d in range(1, 3000))
    for size in (768, 1152, 6):
        matrix = np.stack([rotate(np.eye(size)[i], SEED) for i in range(size)], axis=1)
        np.testing.assert_allclose(matrix.T @ matrix, np.eye(size), atol=1e-12)
    with pytest.raises(ConfigError):
        rotate(np.zeros(0), SEED)


def test_conditional_rounding_meets_the_norm_bound_where_plain_rounding_does_not() -> None:
    """Inputs of fractional part 1/2 put the rounded norm far from its mean; beta = 0.9 gives a tight bound."""
    params = DdpParams("ddg", 256, 8.0, 1.0, 1.0, 16, beta=0.9)
    x = np.full(256, 0.5)  # norm 8 = c / gamma
    bound = params.l2_bound
    rng = np.random.default_rng(4)
    plain = [np.linalg.norm(np.floor(x) + (rng.random(256) < 0.5)) for _ in range(200)]
    assert max(plain) > bound  # the weakened (unconditional) rounding breaks the sensitivity
    for _ in range(200):
        z = conditional_round(x, bound, _rng=rng)
        assert np.sum(z.astype(np.int64) ** 2) <= bound**2
        assert set(np.unique(z)) <= {0, 1}


def test_wrap_and_unwrap() -> None:
    z = np.array([-5, -1, 0, 1, 2**15 - 1, -(2**15)])
    assert wrap(z, 16).dtype == np.uint16 and wrap(z, 17).dtype == np.uint32
    np.testing.assert_array_equal(unwrap(wrap(z, 16), 16), z)


def _sum_of_encodings(params: DdpParams, updates: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    total = np.zeros(params.padded, dtype=np.uint64)
    for u in updates:
        total += encode(u, params, SEED, _rng=rng)
    return (total & np.uint64((1 << params.bits) - 1)).astype(np.uint32)


@pytest.mark.parametrize("mechanism", ["ddg", "skellam"])
def test_aggregate_noise_variance_matches_the_target(mechanism: str) -> None:
    n, d, var, gamma = 20, 4096, 400.0, 0.01
    params = DdpParams(mechanism, d, 1.0, gamma, var, 24)
    rng = np.random.default_rng(8)
    updates = [rng.normal(size=d) * 0.01 for _ in range(n)]
    true = sum(clip_flat(u, 1.0) for u in updates)
    error = decode_sum(_sum_of_encodings(params, updates, rng), params, SEED) - true
    # Noise n * var plus rounding (<= 1/4 per client) in integer units; the rounding term is below 0.3%.
    target = n * var * gamma**2
    assert abs(error.var() / target - 1.0) < 5 * math.sqrt(2.0 / d) + 0.003
    assert abs(error.mean()) < 5 * math.sqrt(target / d)


def test_encode_refuses_bad_input() -> None:
    params = DdpParams("ddg", 10, 1.0, 0.1, 4.0, 16)
    with pytest.raises(ConfigError):
        encode(np.zeros(9), params, SEED)
    with pytest.raises(ConfigError):
        encode(np.full(10, np.nan), params, SEED)


def test_params_validate_and_round_trip_through_config() -> None:
    params = DdpParams("skellam", 650, 1.0, 0.001, 1e5, 16)
    assert DdpParams.from_config(params.to_config()) == params
    bad = {**params.to_config(), "ddp.bits": 1}
    with pytest.raises(MessageError):
        DdpParams.from_config(bad)
    with pytest.raises(MessageError):
        DdpParams.from_config({k: v for k, v in params.to_config().items() if k != "ddp.gamma"})
    for kwargs in ({"mechanism": "laplace"}, {"gamma": 0.0}, {"local_variance": float("inf")}, {"beta": 1.0}):
        with pytest.raises(ConfigError):
            DdpParams(**{**params.__dict__, **kwargs})


@pytest.mark.parametrize("mechanism", ["ddg", pytest.param("skellam", marks=pytest.mark.slow)])
def test_plan_reaches_the_target_for_the_minimum_survivors(mechanism: str) -> None:
    plan = plan_ddp(
        mechanism=mechanism,
        dimension=200,
        clip=1.0,
        bits=16,
        epsilon=3.0,
        delta=1e-5,
        rounds=20,
        sampling_rate=0.1,
        expected_clients=50,
        min_clients=40,
    )
    eps = epsilon_of(plan.params, num_clients=40, sampling_rate=0.1, rounds=20, delta=1e-5)
    assert 2.97 < eps <= 3.0
    assert epsilon_of(plan.params, num_clients=50, sampling_rate=0.1, rounds=20, delta=1e-5) < eps
    # k = 4 standard deviations of the sum fit in half the modular range.
    assert 4 * plan.aggregate_std <= 2**15 * 1.001
    assert 0 < plan.wrap_probability < 1


def test_plan_refuses_a_bit_budget_that_cannot_hold_the_sum() -> None:
    with pytest.raises(ConfigError, match="bits"):
        plan_ddp(
            mechanism="ddg",
            dimension=200,
            clip=1.0,
            bits=6,
            epsilon=3.0,
            delta=1e-5,
            rounds=20,
            sampling_rate=0.1,
            expected_clients=500,
        )
