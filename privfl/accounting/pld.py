"""Optional privacy-loss-distribution (PLD) backend using Google's dp_accounting.

PLD accounting (Koskela et al. 2020; Doroshenko et al., "Connect the Dots", PETS 2022)
is tighter than RDP, most of all at small sampling rates. dp_accounting is imported
only when a :class:`PldAccountant` is created. Composition follows dp_accounting's
``PLDAccountant`` call for call, but the PLD of each (q, z) is built once and cached,
because building it costs far more than composing it.
"""

from __future__ import annotations

import functools
import math
from types import ModuleType
from typing import Any

from privfl.accounting.accountant import PrivacyAccountant
from privfl.accounting.checks import check_delta, check_epsilon
from privfl.accounting.events import ComposedEvent, DpEvent, GaussianEvent, PoissonSampledEvent
from privfl.errors import AccountingError


def _pld_module() -> ModuleType:
    try:
        from dp_accounting.pld import privacy_loss_distribution
    except ImportError as exc:
        raise AccountingError(
            "the PLD accountant needs Google's dp_accounting (pip install dp-accounting); "
            "use the built-in 'rdp' accountant otherwise"
        ) from exc
    return privacy_loss_distribution


MAX_PLD_POINTS = 2_000_000
"""Largest privacy-loss grid built for one Gaussian (16 MB per float64 array; tens of seconds to compose)."""


def _check_grid_size(noise_multiplier: float, interval: float) -> None:
    """Refuse a Gaussian PLD too fine to hold in memory, before dp_accounting allocates it.

    dp_accounting truncates the noise at about 10 standard deviations on each side
    (tail mass e^-50), where the privacy loss (1 - 2x) / (2 z^2) of sensitivity 1 spans
    about 20 / z nats; the grid then has about 20 / (z * interval) points (25 with margin).
    """
    points = 25.0 / (noise_multiplier * interval)
    if points > MAX_PLD_POINTS:
        raise AccountingError(
            f"noise multiplier {noise_multiplier:g} is too small for the PLD accountant at discretisation "
            f"{interval:g} (about {points:.2g} grid points, more than {MAX_PLD_POINTS:.0e}); use the rdp accountant"
        )


MAX_PLD_NOISE_MULTIPLIER = 1e4
"""Larger noise multipliers are accounted as this one: more noise is post-processing, so the bound stays sound."""


@functools.lru_cache(maxsize=32)
def _gaussian_pld(noise_multiplier: float, sampling_rate: float, interval: float) -> Any:
    """Pessimistic PLD of the (Poisson-subsampled if q < 1) Gaussian, add/remove-one neighbours.

    A noise multiplier above :data:`MAX_PLD_NOISE_MULTIPLIER` (where dp_accounting overflows) is
    replaced by it: adding more noise is post-processing, so its epsilon is an upper bound.
    """
    _check_grid_size(noise_multiplier, interval)
    noise_multiplier = min(noise_multiplier, MAX_PLD_NOISE_MULTIPLIER)
    return _pld_module().from_gaussian_mechanism(
        standard_deviation=noise_multiplier, value_discretization_interval=interval, sampling_prob=sampling_rate
    )


class PldAccountant(PrivacyAccountant):
    """dp_accounting's PLD accounting (add/remove-one neighbouring) behind privfl's interface.

    ``value_discretization_interval`` is the privacy-loss grid step (nats); dp_accounting's
    pessimistic discretisation keeps the reported epsilon an upper bound.
    """

    name = "pld"

    def __init__(self, value_discretization_interval: float = 1e-4) -> None:
        self._interval = check_epsilon(value_discretization_interval, "value_discretization_interval")
        self._pld = _pld_module().identity(value_discretization_interval=self._interval)

    def _event_pld(self, event: DpEvent, count: int) -> Any:
        if isinstance(event, ComposedEvent):
            return self._event_pld(event.event, count * event.count)
        if isinstance(event, GaussianEvent):
            # count Gaussian releases compose exactly into one with std z / sqrt(count).
            return _gaussian_pld(event.noise_multiplier / math.sqrt(count), 1.0, self._interval)
        assert isinstance(event, PoissonSampledEvent)  # guaranteed by unsupported_reason
        inner = event.event
        assert isinstance(inner, GaussianEvent)
        single = _gaussian_pld(inner.noise_multiplier, event.sampling_rate, self._interval)
        return single if count == 1 else single.self_compose(count)

    def _compose(self, event: DpEvent, count: int) -> None:
        # PLD objects are immutable: compose returns a new one, so copies never share updates.
        self._pld = self._pld.compose(self._event_pld(event, count))

    def get_epsilon(self, delta: float) -> float:
        return float(self._pld.get_epsilon_for_delta(check_delta(delta)))

    def get_delta(self, epsilon: float) -> float:
        return float(self._pld.get_delta_for_epsilon(check_epsilon(epsilon)))
