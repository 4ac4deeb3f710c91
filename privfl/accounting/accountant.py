"""Privacy accountants: interpreters that turn composed events into (epsilon, delta).

One interface for every backend (``compose``, ``get_epsilon``, ``get_delta``,
``supports``), after dp_accounting's ``PrivacyAccountant``. :class:`RdpAccountant`
needs only numpy/scipy; the PLD backend (:mod:`privfl.accounting.pld`) needs
Google's dp_accounting. Epsilon and delta are in nats / probability.
"""

from __future__ import annotations

import copy
import functools
import warnings
from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

from privfl.accounting.checks import integer
from privfl.accounting.conversion import delta_from_rdp, epsilon_from_rdp
from privfl.accounting.distributed import rdp_distributed_discrete_gaussian, rdp_poisson_subsampled, rdp_skellam
from privfl.accounting.events import (
    ComposedEvent,
    DistributedDiscreteGaussianEvent,
    DpEvent,
    FixedSizeSampledEvent,
    GaussianEvent,
    PoissonSampledEvent,
    SkellamEvent,
)
from privfl.accounting.rdp import DEFAULT_ORDERS, rdp_poisson_subsampled_gaussian, validate_orders
from privfl.errors import AccountingError, ConfigError

ACCOUNTANTS = ("rdp", "pld")

FIXED_SIZE_REFUSAL = (
    "fixed-size sampling without replacement (exactly m of N per round) is not supported: its "
    "neighbouring relation is replace-one, where a clipped sum has sensitivity 2C rather than C, so "
    "accounting it as a Poisson-sampled Gaussian would under-report epsilon; sample each unit "
    "independently with probability q (Poisson sampling) instead"
)


class OrderGridWarning(UserWarning):
    """The best RDP order is at the edge of the order grid, so epsilon may be loose."""


DISTRIBUTED_EVENTS = (DistributedDiscreteGaussianEvent, SkellamEvent)
"""Events only the RDP accountant interprets (their papers give RDP bounds, not PLDs)."""


def unsupported_reason(event: object, accountant: str = "rdp") -> str | None:
    """Why ``event`` cannot be accounted by the ``accountant`` backend, or None if it can."""
    if isinstance(event, GaussianEvent):
        return None
    if isinstance(event, DISTRIBUTED_EVENTS):
        if accountant == "rdp":
            return None
        return f"{type(event).__name__} has RDP bounds only; use the 'rdp' accountant"
    if isinstance(event, PoissonSampledEvent):
        if isinstance(event.event, GaussianEvent):
            return None
        if isinstance(event.event, DISTRIBUTED_EVENTS):
            return unsupported_reason(event.event, accountant)
        inner = type(event.event).__name__
        return f"only a Gaussian event can be Poisson-sampled (or a distributed-DP one), got {inner}"
    if isinstance(event, ComposedEvent):
        return unsupported_reason(event.event, accountant)
    if isinstance(event, FixedSizeSampledEvent):
        return FIXED_SIZE_REFUSAL
    return f"{event!r} is not a supported DpEvent"


class PrivacyAccountant(ABC):
    """Composes events and reports (epsilon, delta). ``compose`` changes nothing on error."""

    name: ClassVar[str]

    def supports(self, event: DpEvent) -> bool:
        """Whether :meth:`compose` accepts ``event``."""
        return unsupported_reason(event, self.name) is None

    def compose(self, event: DpEvent, count: int = 1) -> PrivacyAccountant:
        """Add ``count`` runs of ``event``; returns self. Raises AccountingError if unsupported."""
        count = integer(count, "count", 1)
        reason = unsupported_reason(event, self.name)
        if reason is not None:
            raise AccountingError(f"{self.name} accountant cannot account {event!r}: {reason}")
        self._compose(event, count)
        return self

    def copy(self) -> PrivacyAccountant:
        """An independent accountant with the same composition (cheap: state is replaced, never
        mutated in place, by :meth:`compose`)."""
        return copy.copy(self)

    @abstractmethod
    def _compose(self, event: DpEvent, count: int) -> None:
        """Compose a supported event; must rebind state, never update it in place."""

    @abstractmethod
    def get_epsilon(self, delta: float) -> float:
        """Smallest epsilon such that everything composed so far is (epsilon, delta)-DP."""

    @abstractmethod
    def get_delta(self, epsilon: float) -> float:
        """Smallest delta such that everything composed so far is (epsilon, delta)-DP."""


@functools.lru_cache(maxsize=4096)
def _step_rdp(q: float, noise_multiplier: float, orders: tuple[float, ...]) -> NDArray[np.float64]:
    rdp = rdp_poisson_subsampled_gaussian(q=q, noise_multiplier=noise_multiplier, orders=orders)
    rdp.setflags(write=False)
    return rdp


@functools.lru_cache(maxsize=256)
def _distributed_rdp(event: DpEvent, q: float, orders: tuple[float, ...]) -> NDArray[np.float64]:
    """RDP of one (Poisson-subsampled if q < 1) distributed-DP event (see :mod:`privfl.accounting.distributed`)."""
    if isinstance(event, DistributedDiscreteGaussianEvent):

        def curve(alphas: NDArray[np.float64]) -> NDArray[np.float64]:
            return rdp_distributed_discrete_gaussian(
                l2_sensitivity=event.l2_sensitivity,
                l1_sensitivity=event.l1_sensitivity,
                local_sigma_sq=event.local_sigma_sq,
                num_clients=event.num_clients,
                dimension=event.dimension,
                orders=alphas,
            )
    else:
        assert isinstance(event, SkellamEvent)

        def curve(alphas: NDArray[np.float64]) -> NDArray[np.float64]:
            return rdp_skellam(
                l2_sensitivity=event.l2_sensitivity,
                l1_sensitivity=event.l1_sensitivity,
                variance=event.variance,
                orders=alphas,
            )

    rdp = rdp_poisson_subsampled(q=q, rdp=curve, orders=orders)
    rdp.setflags(write=False)
    return rdp


class RdpAccountant(PrivacyAccountant):
    """Rényi-DP accountant over a grid of orders (Mironov 2017; Mironov, Talwar & Zhang 2019).

    Composition adds RDP curves (Mironov 2017, Prop. 1), so heterogeneous rounds (different
    q and z) compose exactly; conversion uses Balle et al. 2020, Thm 21. Per-(q, z) curves
    are cached, so composing many identical events is cheap.
    """

    name = "rdp"

    def __init__(self, orders: ArrayLike | None = None) -> None:
        self._orders = validate_orders(DEFAULT_ORDERS if orders is None else orders)
        self._orders.setflags(write=False)
        self._key = tuple(self._orders.tolist())
        self._rdp = np.zeros_like(self._orders)

    @property
    def orders(self) -> NDArray[np.float64]:
        """The RDP orders (read-only)."""
        return self._orders

    @property
    def rdp(self) -> NDArray[np.float64]:
        """The composed RDP curve in nats, one value per order (a copy)."""
        return self._rdp.copy()

    def event_rdp(self, event: DpEvent) -> NDArray[np.float64]:
        """RDP curve (nats) of one run of ``event`` on this accountant's grid."""
        reason = unsupported_reason(event)
        if reason is not None:
            raise AccountingError(f"rdp accountant cannot account {event!r}: {reason}")
        return self._event_rdp(event)

    def _event_rdp(self, event: DpEvent) -> NDArray[np.float64]:
        if isinstance(event, ComposedEvent):
            return event.count * self._event_rdp(event.event)
        if isinstance(event, DISTRIBUTED_EVENTS):
            return _distributed_rdp(event, 1.0, self._key)
        if isinstance(event, PoissonSampledEvent):
            inner = event.event
            if isinstance(inner, DISTRIBUTED_EVENTS):
                return _distributed_rdp(inner, event.sampling_rate, self._key)
            assert isinstance(inner, GaussianEvent)  # guaranteed by unsupported_reason
            return _step_rdp(event.sampling_rate, inner.noise_multiplier, self._key)
        assert isinstance(event, GaussianEvent)
        return _step_rdp(1.0, event.noise_multiplier, self._key)

    def _compose(self, event: DpEvent, count: int) -> None:
        self._rdp = self._rdp + count * self._event_rdp(event)

    def _warn_if_edge(self, order: float) -> None:
        if order in (self._orders[0], self._orders[-1]):
            warnings.warn(
                f"the best RDP order {order:g} is at the edge of the grid "
                f"[{self._orders[0]:g}, {self._orders[-1]:g}]; epsilon may be loose, extend the orders",
                OrderGridWarning,
                stacklevel=3,
            )

    def get_epsilon_and_order(self, delta: float) -> tuple[float, float]:
        """(epsilon, best order) at ``delta``; epsilon is 0 before anything is composed.

        Warns (OrderGridWarning) when a positive epsilon comes from the first or last order.
        """
        epsilon, order = epsilon_from_rdp(orders=self._orders, rdp=self._rdp, delta=delta)
        if epsilon > 0:
            self._warn_if_edge(order)
        return epsilon, order

    def get_epsilon(self, delta: float) -> float:
        return self.get_epsilon_and_order(delta)[0]

    def get_delta(self, epsilon: float) -> float:
        delta, order = delta_from_rdp(orders=self._orders, rdp=self._rdp, epsilon=epsilon)
        if delta > 0:
            self._warn_if_edge(order)
        return delta


def check_accountant_name(name: str) -> str:
    """``name`` if it is one of :data:`ACCOUNTANTS`."""
    if name not in ACCOUNTANTS:
        raise ConfigError(f"accountant must be one of {ACCOUNTANTS}, got {name!r}")
    return name


def make_accountant(name: str) -> PrivacyAccountant:
    """A fresh accountant by name: ``"rdp"`` (built in) or ``"pld"`` (needs dp_accounting)."""
    if check_accountant_name(name) == "rdp":
        return RdpAccountant()
    from privfl.accounting.pld import PldAccountant

    return PldAccountant()
