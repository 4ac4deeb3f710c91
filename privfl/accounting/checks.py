"""Argument checks shared by the accounting modules; each raises ConfigError naming the bad value."""

from __future__ import annotations

import math
import numbers
from typing import Any

from privfl.errors import ConfigError


def real(value: Any, name: str) -> float:
    """``value`` as a float; it must be a real number (not a bool or a string)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    return float(value)


def integer(value: Any, name: str, minimum: int) -> int:
    """``value`` as an int; it must be an integer (not a bool) >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_delta(delta: Any, name: str = "delta") -> float:
    """``delta`` in (0, 1)."""
    d = real(delta, name)
    if not 0.0 < d < 1.0:
        raise ConfigError(f"{name} must be in (0, 1), got {delta!r}")
    return d


def check_epsilon(epsilon: Any, name: str = "epsilon") -> float:
    """``epsilon`` finite and > 0 (nats)."""
    e = real(epsilon, name)
    if not (math.isfinite(e) and e > 0.0):
        raise ConfigError(f"{name} must be a finite number > 0, got {epsilon!r}")
    return e


def check_noise_multiplier(noise_multiplier: Any) -> float:
    """Noise std / sensitivity, finite and > 0."""
    return check_epsilon(noise_multiplier, "noise_multiplier")


def check_sampling_rate(q: Any, name: str = "sampling_rate") -> float:
    """Poisson sampling probability in (0, 1]."""
    value = real(q, name)
    if not 0.0 < value <= 1.0:
        raise ConfigError(f"{name} must be in (0, 1], got {q!r}")
    return value


MAX_COUNT = 2**53
"""Largest composition count (rounds, steps): beyond it counts are not exact in float64."""


def check_count(value: Any, name: str = "count") -> int:
    """``value`` as an int in [1, :data:`MAX_COUNT`]."""
    count = integer(value, name, 1)
    if count > MAX_COUNT:
        digits = len(str(count))
        raise ConfigError(f"{name} must be at most 2**53 = {MAX_COUNT} (exact in float64), got a {digits}-digit number")
    return count
