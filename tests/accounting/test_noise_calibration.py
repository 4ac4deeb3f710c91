"""Noise calibration: round trips, the final check, and unreachable targets."""

import pytest

from privfl.accounting import calibrate_noise_multiplier, epsilon_for
from privfl.errors import AccountingError, ConfigError


@pytest.mark.parametrize(
    ("epsilon", "delta", "q", "rounds"),
    [
        (6.0, 1e-5, 0.01, 10_000),
        (1.0, 1e-5, 1e-3, 10_000),
        (1.0, 1e-6, 0.01, 100),
        (3.0, 1e-5, 1.0, 10),
        (8.0, 1e-5, 0.1, 50),
    ],
)
def test_calibrate_then_budget_round_trips(epsilon, delta, q, rounds):
    z = calibrate_noise_multiplier(epsilon=epsilon, delta=delta, sampling_rate=q, rounds=rounds)
    got = epsilon_for(noise_multiplier=z, sampling_rate=q, rounds=rounds, delta=delta)
    assert got <= epsilon  # never misses the target
    assert got == pytest.approx(epsilon, rel=1e-2)
    # ... and is the smallest such noise: a little less misses it.
    assert epsilon_for(noise_multiplier=z * (1 - 1e-4), sampling_rate=q, rounds=rounds, delta=delta) > epsilon


def _pld_round_trip(epsilon, q, rounds):
    kwargs = {"epsilon": epsilon, "delta": 1e-5, "sampling_rate": q, "rounds": rounds}
    z_pld = calibrate_noise_multiplier(**kwargs, accountant="pld")
    got = epsilon_for(noise_multiplier=z_pld, sampling_rate=q, rounds=rounds, delta=1e-5, accountant="pld")
    assert got <= epsilon
    assert got == pytest.approx(epsilon, rel=1e-2)
    if q == 1.0:  # un-subsampled Gaussians: the RDP accountant reports the exact epsilon, PLD a hair above
        assert z_pld == pytest.approx(calibrate_noise_multiplier(**kwargs), rel=1e-3)
    else:
        assert z_pld < calibrate_noise_multiplier(**kwargs)


def test_pld_calibration_round_trips_and_needs_less_noise():
    _pld_round_trip(3.0, 1.0, 10)  # unsampled Gaussian: cheap PLD


@pytest.mark.slow
def test_pld_calibration_round_trips_with_sampling():
    _pld_round_trip(2.0, 0.01, 200)


def test_unreachable_targets_raise():
    with pytest.raises(AccountingError, match="no noise multiplier up to"):
        calibrate_noise_multiplier(epsilon=1e-3, delta=1e-5, sampling_rate=1.0, rounds=1_000_000)
    with pytest.raises(AccountingError, match="too loose"):
        calibrate_noise_multiplier(epsilon=500.0, delta=0.1, sampling_rate=1e-6, rounds=1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"epsilon": 0.0}, "epsilon must be"),
        ({"delta": 1.0}, r"delta must be in \(0, 1\), got 1.0"),
        ({"sampling_rate": 0.0}, r"\(0, 1\], got 0.0"),
        ({"rounds": 0}, "rounds must be an integer >= 1, got 0"),
        ({"accountant": "gdp"}, "'gdp'"),
    ],
)
def test_bad_arguments(kwargs, message):
    args = {"epsilon": 1.0, "delta": 1e-5, "sampling_rate": 0.01, "rounds": 10, **kwargs}
    with pytest.raises(ConfigError, match=message):
        calibrate_noise_multiplier(**args)
