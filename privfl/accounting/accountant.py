"""Privacy accountants: interpreters that turn composed events into (epsilon, delta).

One interface for every backend (``compose``, ``get_epsilon``, ``get_delta``,
``supports``), after dp_accounting's ``PrivacyAccountant``. :class:`RdpAccountant`
needs only numpy/scipy; the PLD backend (:mod:`privfl.accounting.pld`) needs
Google's dp_accounting. Epsilon and delta are in nats / probability.
"""

from __future__ import annotations

import copy
import functools
import math
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

from privfl.accounting.checks import check_count, check_epsilon
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
from privfl.accounting.gaussian import gaussian_delta, gaussian_epsilon
from privfl.accounting.rdp import DEFAULT_ORDERS, rdp_poisson_subsampled_gaussian, validate_orders
from privfl.errors import AccountingError, ConfigError

ACCOUNTANTS = ("rdp", "pld")

FIXED_SIZE_REFUSAL = (
    "fixed-size sampling without replacement (exactly m of N per round) is not supported: its "
    "neighbouring relation is replace-one, where a clipped sum has sensitivity 2C rather than C, so "
    "accounting it as a Poisson-sampled Gaussian would under-report epsilon; sample each unit "
    "independently with probability q (Poisson sampling) instead"
)


_GridMinimiser = Callable[[NDArray[np.float64], NDArray[np.float64]], tuple[float, float]]
"""``(orders, rdp) -> (smallest epsilon or delta, its order)``."""


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
        count = check_count(count)
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


_REFINE_GRID_POINTS = 200_000
"""Quadrature budget of one fractional order while refining; beyond it the next integer order bounds it."""


@functools.lru_cache(maxsize=4096)
def _step_rdp(
    q: float, noise_multiplier: float, orders: tuple[float, ...], max_grid_points: float = 30_000_000
) -> NDArray[np.float64]:
    rdp = rdp_poisson_subsampled_gaussian(
        q=q, noise_multiplier=noise_multiplier, orders=orders, max_grid_points=max_grid_points
    )
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

    Epsilon is minimised over the grid and then continuously around the best grid order
    (the conversion is sound at every order > 1, and the RDP of each composed event is
    evaluated at the new orders), so the grid's spacing costs nothing. A composition of
    Gaussian releases without subsampling is one Gaussian mechanism (Dong, Roth & Su 2019),
    whose exact (epsilon, delta) curve (:mod:`privfl.accounting.gaussian`) is reported instead.
    """

    name = "rdp"

    def __init__(self, orders: ArrayLike | None = None) -> None:
        self._orders = validate_orders(DEFAULT_ORDERS if orders is None else orders)
        self._orders.setflags(write=False)
        self._key = tuple(self._orders.tolist())
        self._rdp = np.zeros_like(self._orders)
        self._counts: dict[DpEvent, int] = {}

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

    def _event_rdp(self, event: DpEvent, orders: tuple[float, ...] | None = None) -> NDArray[np.float64]:
        """RDP of ``event`` on the grid, or (refining) on ``orders`` with a small quadrature budget."""
        grid = self._key if orders is None else orders
        key = (grid,) if orders is None else (grid, _REFINE_GRID_POINTS)
        if isinstance(event, ComposedEvent):
            return event.count * self._event_rdp(event.event, orders)
        if isinstance(event, DISTRIBUTED_EVENTS):
            return _distributed_rdp(event, 1.0, grid)
        if isinstance(event, PoissonSampledEvent):
            inner = event.event
            if isinstance(inner, DISTRIBUTED_EVENTS):
                return _distributed_rdp(inner, event.sampling_rate, grid)
            assert isinstance(inner, GaussianEvent)  # guaranteed by unsupported_reason
            return _step_rdp(event.sampling_rate, inner.noise_multiplier, *key)
        assert isinstance(event, GaussianEvent)
        return _step_rdp(1.0, event.noise_multiplier, *key)

    def _compose(self, event: DpEvent, count: int) -> None:
        self._rdp = self._rdp + float(count) * self._event_rdp(event)
        self._counts = {**self._counts, event: self._counts.get(event, 0) + count}

    def _rdp_at(self, orders: NDArray[np.float64]) -> NDArray[np.float64]:
        key = tuple(orders.tolist())
        return sum((float(n) * self._event_rdp(e, key) for e, n in self._counts.items()), np.zeros_like(orders))

    def _gaussian_noise_multiplier(self) -> float | None:
        """The noise multiplier of the single Gaussian that the composition equals, or None if it is subsampled.

        Dong, Roth & Su (2019), Cor. 3.3: mu_i-GDP mechanisms compose to sqrt(sum mu_i^2)-GDP,
        with mu = 1 / z for the Gaussian mechanism.
        """
        if not self._counts:
            return None
        mu_squared = 0.0
        for event, count in self._counts.items():
            repeats = count
            while isinstance(event, ComposedEvent):
                repeats, event = repeats * event.count, event.event
            if isinstance(event, PoissonSampledEvent) and event.sampling_rate == 1.0:
                event = event.event
            if not isinstance(event, GaussianEvent):
                return None
            mu = 1.0 / event.noise_multiplier
            mu_squared += repeats * mu * mu  # float products saturate to inf or 0, never raise
        return math.inf if mu_squared == 0.0 else 1.0 / math.sqrt(mu_squared)

    def _warn_if_edge(self, order: float) -> None:
        if order in (self._orders[0], self._orders[-1]):
            warnings.warn(
                f"the best RDP order {order:g} is at the edge of the grid "
                f"[{self._orders[0]:g}, {self._orders[-1]:g}]; epsilon may be loose, extend the orders",
                OrderGridWarning,
                stacklevel=3,
            )

    def _refine(
        self,
        order: float,
        value: float,
        convert: Callable[[NDArray[np.float64], NDArray[np.float64]], tuple[float, float]],
    ) -> tuple[float, float]:
        """(value, order) minimised continuously between the grid neighbours of the best grid ``order``.

        ``convert(orders, rdp)`` is the grid minimiser (epsilon or delta). Three zooms of 17
        orders each around the best so far (bracket width / 2048 at the end); the result is
        never above the grid's and is a sound bound at the order it reports.
        """
        index = int(np.searchsorted(self._orders, order))
        lo = float(self._orders[max(index - 1, 0)])
        hi = float(self._orders[min(index + 1, self._orders.size - 1)])
        for _ in range(3):
            alphas = np.linspace(lo, hi, 17)
            found, at = convert(alphas, self._rdp_at(alphas))
            if found < value:
                value, order = found, at
            step = (hi - lo) / 16.0
            lo, hi = max(order - step, (1.0 + order) / 2.0), order + step
        return value, order

    def get_epsilon_and_order(self, delta: float) -> tuple[float, float]:
        """(epsilon, best order) at ``delta``; epsilon is 0 before anything is composed.

        The order is NaN when the composition is of un-subsampled Gaussians only, whose
        epsilon is exact rather than an RDP bound. Warns (OrderGridWarning) when a positive
        epsilon comes from the first or last grid order.
        """
        z = self._gaussian_noise_multiplier()
        if z is not None:
            if z == 0.0 or not math.isfinite(z):
                return (math.inf if z == 0.0 else 0.0), math.nan
            return gaussian_epsilon(z, delta), math.nan
        epsilon, order = epsilon_from_rdp(orders=self._orders, rdp=self._rdp, delta=delta)
        if epsilon > 0 and math.isfinite(epsilon):
            self._warn_if_edge(order)
            epsilon, order = self._refine(
                order, epsilon, lambda alphas, rdp: epsilon_from_rdp(orders=alphas, rdp=rdp, delta=delta)
            )
        return epsilon, order

    def get_epsilon(self, delta: float) -> float:
        return self.get_epsilon_and_order(delta)[0]

    def get_delta(self, epsilon: float) -> float:
        z = self._gaussian_noise_multiplier()
        if z is not None:
            if z == 0.0 or not math.isfinite(z):
                return 1.0 if z == 0.0 else 0.0
            return gaussian_delta(z, check_epsilon(epsilon))
        delta, order = delta_from_rdp(orders=self._orders, rdp=self._rdp, epsilon=epsilon)
        if 0 < delta < 1:
            self._warn_if_edge(order)
            delta, _ = self._refine(
                order, delta, lambda alphas, rdp: delta_from_rdp(orders=alphas, rdp=rdp, epsilon=epsilon)
            )
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
