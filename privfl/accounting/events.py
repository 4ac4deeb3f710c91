"""Privacy events: immutable descriptions of noisy releases, in the style of dp_accounting.

Mods emit events; only an accountant turns them into epsilon. Events are frozen
dataclasses (hashable, compared by value) and serialise to plain JSON dicts with
:meth:`DpEvent.to_dict` / :func:`event_from_dict`; they are never pickled.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from privfl.accounting.checks import check_count, check_noise_multiplier, check_sampling_rate, integer, real
from privfl.errors import ConfigError


def check_event(value: Any, name: str) -> DpEvent:
    """``value`` if it is a DpEvent."""
    if not isinstance(value, DpEvent):
        raise ConfigError(f"{name} must be a DpEvent, got {value!r}")
    return value


class DpEvent:
    """Base class of privacy events. Subclasses are frozen dataclasses with a ``kind`` tag."""

    kind: ClassVar[str]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict ``{"kind": ..., <fields>}``; nested events become dicts."""
        out: dict[str, Any] = {"kind": self.kind}
        for field in fields(self):  # type: ignore[arg-type]
            value = getattr(self, field.name)
            out[field.name] = value.to_dict() if isinstance(value, DpEvent) else value
        return out


@dataclass(frozen=True)
class GaussianEvent(DpEvent):
    """A sum of sensitivity-1 (after clipping) values plus N(0, noise_multiplier^2) noise.

    ``noise_multiplier`` is the noise std divided by the L2 sensitivity (z = sigma / C).
    """

    noise_multiplier: float
    kind: ClassVar[str] = "gaussian"

    def __post_init__(self) -> None:
        object.__setattr__(self, "noise_multiplier", check_noise_multiplier(self.noise_multiplier))


@dataclass(frozen=True)
class PoissonSampledEvent(DpEvent):
    """``event`` run on a Poisson sample: each record/client is in with probability ``sampling_rate``."""

    sampling_rate: float
    event: DpEvent
    kind: ClassVar[str] = "poisson_sampled"

    def __post_init__(self) -> None:
        object.__setattr__(self, "sampling_rate", check_sampling_rate(self.sampling_rate))
        check_event(self.event, "event")


@dataclass(frozen=True)
class ComposedEvent(DpEvent):
    """``event`` repeated ``count`` times (self-composition)."""

    event: DpEvent
    count: int
    kind: ClassVar[str] = "composed"

    def __post_init__(self) -> None:
        check_event(self.event, "event")
        check_count(self.count)


@dataclass(frozen=True)
class FixedSizeSampledEvent(DpEvent):
    """``event`` run on exactly ``sample_size`` of ``population_size`` units, drawn without replacement.

    Recorded so that a ledger says what happened; the accountants refuse it, because its
    neighbouring relation is replace-one, where the sensitivity of a clipped sum is 2C,
    not C, and Poisson-sampled-Gaussian accounting would under-report epsilon.
    """

    sample_size: int
    population_size: int
    event: DpEvent
    kind: ClassVar[str] = "fixed_size_sampled"

    def __post_init__(self) -> None:
        m = integer(self.sample_size, "sample_size", 1)
        n = integer(self.population_size, "population_size", 1)
        if m > n:
            raise ConfigError(f"need 1 <= sample_size <= population_size, got {m} of {n}")
        check_event(self.event, "event")


def _positive(value: Any, name: str) -> float:
    number = real(value, name)
    if not (math.isfinite(number) and number > 0):
        raise ConfigError(f"{name} must be a finite number > 0, got {value!r}")
    return number


@dataclass(frozen=True)
class DistributedDiscreteGaussianEvent(DpEvent):
    """A sum of integer vectors (one per client) plus ``num_clients`` independent N_Z(0, sigma^2)^d shares.

    The distributed discrete Gaussian of Kairouz, Liu & Steinke (ICML 2021). All quantities
    are in the integer domain the clients send: ``l2_sensitivity`` and ``l1_sensitivity``
    bound one client's rounded vector, ``local_sigma_sq`` is each share's sigma^2,
    ``num_clients`` the number of shares actually in the sum, ``dimension`` its length.
    """

    l2_sensitivity: float
    l1_sensitivity: float
    local_sigma_sq: float
    num_clients: int
    dimension: int
    kind: ClassVar[str] = "distributed_discrete_gaussian"

    def __post_init__(self) -> None:
        for name in ("l2_sensitivity", "l1_sensitivity", "local_sigma_sq"):
            object.__setattr__(self, name, _positive(getattr(self, name), name))
        object.__setattr__(self, "num_clients", integer(self.num_clients, "num_clients", 1))
        object.__setattr__(self, "dimension", integer(self.dimension, "dimension", 1))


@dataclass(frozen=True)
class SkellamEvent(DpEvent):
    """A sum of integer vectors plus symmetric Skellam noise of total ``variance`` per coordinate.

    The (distributed) Skellam mechanism of Agarwal, Kairouz & Liu (NeurIPS 2021): a sum of
    Skellam shares is Skellam, so only the total variance of the shares in the sum matters.
    Sensitivities and variance are in the integer domain.
    """

    l2_sensitivity: float
    l1_sensitivity: float
    variance: float
    kind: ClassVar[str] = "skellam"

    def __post_init__(self) -> None:
        for name in ("l2_sensitivity", "l1_sensitivity", "variance"):
            object.__setattr__(self, name, _positive(getattr(self, name), name))


_KINDS: dict[str, type[DpEvent]] = {
    cls.kind: cls
    for cls in (
        GaussianEvent,
        PoissonSampledEvent,
        ComposedEvent,
        FixedSizeSampledEvent,
        DistributedDiscreteGaussianEvent,
        SkellamEvent,
    )
}


def event_from_dict(data: Mapping[str, Any]) -> DpEvent:
    """Rebuild an event from :meth:`DpEvent.to_dict` output; raises ConfigError on anything else."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"an event must be a dict, got {type(data).__name__}")
    cls = _KINDS.get(data.get("kind"))  # type: ignore[arg-type]
    if cls is None:
        raise ConfigError(f"unknown event kind {data.get('kind')!r}; known: {sorted(_KINDS)}")
    names = {field.name for field in fields(cls)}  # type: ignore[arg-type]
    given = set(data) - {"kind"}
    if given != names:
        raise ConfigError(f"{cls.kind} event needs fields {sorted(names)}, got {sorted(given)}")
    kwargs = {k: event_from_dict(v) if k == "event" else v for k, v in data.items() if k != "kind"}
    return cls(**kwargs)
