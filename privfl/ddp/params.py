"""Distributed-DP parameters: what one round uses, and how to choose them from privacy targets.

:class:`DdpParams` is what every client needs to encode its update (sent by the server
in the round config under ``ddp.`` keys, validated again by each client).
:func:`plan_ddp` chooses the granularity gamma and the per-client noise from the
targets (n, d, bits, epsilon, delta, rounds, q), following Kairouz, Liu & Steinke (ICML
2021, Sec. 4.4 and Eq. 61) and the authors' ``ddgauss_params`` / ``skellam_params``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

from privfl.accounting.accountant import RdpAccountant
from privfl.accounting.checks import check_delta, check_epsilon, check_sampling_rate, integer
from privfl.accounting.distributed import rounded_l1_norm_bound, rounded_l2_norm_bound
from privfl.accounting.events import (
    DistributedDiscreteGaussianEvent,
    DpEvent,
    PoissonSampledEvent,
    SkellamEvent,
)
from privfl.ddp.rotation import padded_dimension
from privfl.errors import ConfigError, MessageError

MECHANISMS = ("ddg", "skellam")
PREFIX = "ddp."
MAX_BITS = 62
DEFAULT_BETA = math.exp(-0.5)
"""Conditional-rounding parameter beta of KLS21 (their experiments use exp(-0.5))."""


def _finite_positive(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class DdpParams:
    """The distributed-DP encoding of one round.

    Attributes:
        mechanism: ``"ddg"`` (distributed discrete Gaussian) or ``"skellam"``.
        dimension: d, values in a client's update.
        clip: L2 clip norm c of an update (model units).
        gamma: granularity: one integer step is ``gamma`` model units.
        local_variance: each client's noise, integer units: sigma^2 of its discrete Gaussian
            N_Z(0, sigma^2) (whose variance is at most sigma^2) or the variance of its Skellam.
        bits: each coordinate is sent (and summed) mod 2^bits.
        beta: conditional-rounding parameter in [0, 1) (KLS21 Sec. 4.1).
    """

    mechanism: str
    dimension: int
    clip: float
    gamma: float
    local_variance: float
    bits: int
    beta: float = DEFAULT_BETA

    def __post_init__(self) -> None:
        if self.mechanism not in MECHANISMS:
            raise ConfigError(f"mechanism must be one of {MECHANISMS}, got {self.mechanism!r}")
        integer(self.dimension, "dimension", 1)
        for name in ("clip", "gamma", "local_variance"):
            object.__setattr__(self, name, _finite_positive(name, getattr(self, name)))
        if isinstance(self.bits, bool) or not isinstance(self.bits, int) or not 2 <= self.bits <= MAX_BITS:
            raise ConfigError(f"bits must be an int in [2, {MAX_BITS}], got {self.bits!r}")
        if isinstance(self.beta, bool) or not isinstance(self.beta, (int, float)) or not 0.0 <= self.beta < 1.0:
            raise ConfigError(f"beta must be in [0, 1), got {self.beta!r}")
        object.__setattr__(self, "beta", float(self.beta))

    @property
    def padded(self) -> int:
        """d', the dimension padded to a multiple of the Hadamard block (see the rotation module)."""
        return padded_dimension(self.dimension)

    @property
    def l2_bound(self) -> float:
        """L2 bound (integer units) on a client's rounded vector: KLS21's conditional-rounding bound."""
        return rounded_l2_norm_bound(l2_norm=self.clip / self.gamma, beta=self.beta, dimension=self.padded)

    @property
    def l1_bound(self) -> float:
        """L1 bound (integer units) on a client's rounded vector."""
        return rounded_l1_norm_bound(l2_bound=self.l2_bound, dimension=self.padded)

    def event(self, num_clients: int) -> DpEvent:
        """The release of a sum holding ``num_clients`` noise shares (not subsampled)."""
        if self.mechanism == "ddg":
            return DistributedDiscreteGaussianEvent(
                l2_sensitivity=self.l2_bound,
                l1_sensitivity=self.l1_bound,
                local_sigma_sq=self.local_variance,
                num_clients=num_clients,
                dimension=self.padded,
            )
        return SkellamEvent(
            l2_sensitivity=self.l2_bound, l1_sensitivity=self.l1_bound, variance=num_clients * self.local_variance
        )

    def to_config(self) -> dict[str, str | int | float]:
        """The parameters as round-config entries (keys prefixed ``ddp.``)."""
        return {PREFIX + k: v for k, v in asdict(self).items()}

    @classmethod
    def from_config(cls, config: dict) -> DdpParams:
        """Parse and validate parameters received from the server (MessageError if missing or invalid)."""
        values = {}
        for f in fields(cls):
            if PREFIX + f.name not in config:
                raise MessageError(f"round config lacks {PREFIX + f.name!r}")
            values[f.name] = config[PREFIX + f.name]
        try:
            return cls(**values)
        except ConfigError as exc:
            raise MessageError(f"server sent invalid distributed-DP parameters: {exc}") from None


PLAN_ORDERS = (1.5, 1.75, *range(2, 129), 160, 192, 256)
"""RDP orders used while planning (the authors' grid plus two fractional ones); the ledger's grid contains
them, so the epsilon it reports for the planned rounds is never above the plan's."""


def epsilon_of(
    params: DdpParams,
    *,
    num_clients: int,
    sampling_rate: float,
    rounds: int,
    delta: float,
    orders: tuple[float, ...] | None = None,
) -> float:
    """Epsilon after ``rounds`` Poisson-sampled rounds whose sums hold ``num_clients`` noise shares."""
    accountant = RdpAccountant(orders)
    accountant.compose(PoissonSampledEvent(sampling_rate, params.event(num_clients)), rounds)
    return accountant.get_epsilon(delta)


@dataclass(frozen=True)
class DdpPlan:
    """Parameters chosen by :func:`plan_ddp`, with what they imply.

    Attributes:
        params: the encoding to use.
        epsilon: epsilon after all rounds if every round keeps ``min_clients`` noise shares.
        aggregate_std: std (integer units) of one coordinate of the noisy sum, heuristic (KLS21 Eq. 61).
        wrap_probability: estimate of P(some coordinate of the sum wraps mod 2^bits) in one round,
            from a Gaussian tail at ``aggregate_std`` and a union bound over d' coordinates.
    """

    params: DdpParams
    epsilon: float
    aggregate_std: float
    wrap_probability: float


def _local_variance_for(
    template: DdpParams, *, epsilon: float, delta: float, num_clients: int, q: float, rounds: int
) -> float:
    """Smallest local noise (integer units) reaching ``epsilon``, by bisection on a log scale."""

    def eps(variance: float) -> float:
        p = DdpParams(**{**asdict(template), "local_variance": variance})
        return epsilon_of(p, num_clients=num_clients, sampling_rate=q, rounds=rounds, delta=delta, orders=PLAN_ORDERS)

    lo, hi = 1e-6, 1.0
    while eps(hi) > epsilon:
        lo, hi = hi, hi * 16.0
        if hi > 1e30:
            raise ConfigError(f"no noise level reaches epsilon {epsilon:g} (the rounding bound dominates)")
    for _ in range(40):
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if eps(mid) > epsilon else (lo, mid)
        if hi / lo < 1.001:
            break
    # Round up to 21 significant bits: a short exact fraction keeps the sampler's arithmetic in int64.
    step = 2.0 ** (math.floor(math.log2(hi)) - 20)
    return math.ceil(hi / step) * step  # >= hi, so eps <= epsilon still: calibration never misses the target


def plan_ddp(
    *,
    mechanism: str,
    dimension: int,
    clip: float,
    bits: int,
    epsilon: float,
    delta: float,
    rounds: int,
    sampling_rate: float,
    expected_clients: int,
    min_clients: int | None = None,
    beta: float = DEFAULT_BETA,
    k_stddevs: float = 4.0,
) -> DdpPlan:
    """Choose gamma and the per-client noise for a target (epsilon, delta) over ``rounds`` rounds.

    The noise shares are sized for ``min_clients`` survivors (default: ``expected_clients``):
    the sum of that many shares alone reaches the target. gamma is the finest granularity at
    which ``k_stddevs`` standard deviations of the sum fit in 2^bits, with the sum's spread
    from KLS21 Eq. 61 (and the authors' ``ddgauss_params``): per coordinate,
    sqrt(c^2 n^2 / d' + (gamma^2 / 4 + sigma^2) n) / gamma (norm of a sum <= n c, flat rotation).

    Raises:
        ConfigError: invalid targets, or a bit budget that cannot hold the sum of n clients'
            rounding and noise (2^(2 bits) <= n k^2, as in the authors' code).
    """
    epsilon, delta = check_epsilon(epsilon), check_delta(delta)
    q = check_sampling_rate(sampling_rate, "sampling_rate")
    rounds = integer(rounds, "rounds", 1)
    n = integer(expected_clients, "expected_clients", 1)
    n_min = n if min_clients is None else integer(min_clients, "min_clients", 1)
    if n_min > n:
        raise ConfigError(f"min_clients ({n_min}) cannot exceed expected_clients ({n})")
    k = _finite_positive("k_stddevs", k_stddevs)
    template = DdpParams(mechanism, dimension, clip, 1.0, 1.0, bits, beta)
    d_pad = template.padded
    if 4.0**bits <= n * k * k:
        raise ConfigError(
            f"{bits} bits per coordinate cannot hold the sum of {n} clients: even the rounding noise alone "
            f"needs 2^(2 bits) > n k^2 = {n * k * k:g} (k = {k:g} standard deviations); use more bits or fewer "
            "clients per round"
        )

    def spread(gamma: float) -> tuple[float, float]:
        """(local variance in integer units, std of one coordinate of the sum in integer units)."""
        p = DdpParams(**{**asdict(template), "gamma": gamma})
        var = _local_variance_for(p, epsilon=epsilon, delta=delta, num_clients=n_min, q=q, rounds=rounds)
        # KLS21 Eq. 61: signal c^2 n^2 / d', rounding gamma^2/4 and noise per client, in model units.
        model_var = clip * clip * n * n / d_pad + (gamma * gamma / 4.0 + var * gamma * gamma) * n
        return var, math.sqrt(model_var) / gamma

    half_range = 2.0 ** (bits - 1)
    # Bisection on log gamma: the sum's spread in integer units falls as gamma grows.
    lo, hi = clip * 1e-9, clip * 1e3
    if k * spread(hi)[1] > half_range:
        raise ConfigError(f"{bits} bits per coordinate cannot hold the noisy sum of {n} clients at any gamma")
    for _ in range(60):
        mid = math.sqrt(lo * hi)
        lo, hi = (lo, mid) if k * spread(mid)[1] <= half_range else (mid, hi)
        if hi / lo < 1.0005:
            break
    var, std = spread(hi)
    params = DdpParams(mechanism, dimension, clip, hi, var, bits, beta)
    eps = epsilon_of(params, num_clients=n_min, sampling_rate=q, rounds=rounds, delta=delta, orders=PLAN_ORDERS)
    # Gaussian tail of one coordinate beyond the half range, union bound over d' coordinates.
    wrap = min(1.0, d_pad * math.erfc(half_range / (std * math.sqrt(2.0))))
    return DdpPlan(params=params, epsilon=eps, aggregate_std=std, wrap_probability=wrap)
