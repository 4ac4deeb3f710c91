"""Privacy events: immutable descriptions of noisy releases, in the style of dp_accounting.

Mods emit events; only an accountant turns them into epsilon. Events are frozen
dataclasses (hashable, compared by value) and serialise to plain JSON dicts with
:meth:`DpEvent.to_dict` / :func:`event_from_dict`; they are never pickled.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from privfl.accounting.checks import check_count, check_noise_multiplier, check_sampling_rate, integer
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


_KINDS: dict[str, type[DpEvent]] = {
    cls.kind: cls for cls in (GaussianEvent, PoissonSampledEvent, ComposedEvent, FixedSizeSampledEvent)
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
