"""SecAgg+ configuration: what a user sets once, and what one round actually uses.

:class:`SecAggConfig` is the user-facing recipe (defaults that are safe and fit a
uint32 wire format). :class:`RoundParams` is the fully resolved setting for one
round with n selected clients; the server sends it to every client in the setup
stage, and each client validates it again before doing anything.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

from privfl.core.message import Config
from privfl.errors import ConfigError, MessageError
from privfl.secagg.params import (
    check_secure,
    check_structure,
    check_targets,
    choose_parameters,
    smallest_secure_threshold,
)
from privfl.secagg.prg import word_dtype
from privfl.secagg.quantization import Quantizer, check_no_wrap, required_modulus_bits

WEIGHTINGS = ("examples", "uniform")
MAX_WEIGHT_LIMIT = 1 << 32
"""Largest allowed ``max_weight``."""


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{name} must be an int in [{low}, {high}], got {value!r}")


@dataclass(frozen=True)
class RoundParams:
    """The resolved SecAgg+ parameters of one round.

    Attributes:
        num_nodes: n, clients selected for the round.
        num_neighbours: k, neighbours of each client in the graph.
        threshold: t, shares needed to reconstruct a secret (k/2 < t <= k, t >= 2).
        coordinate_bound: c; each coordinate of an update is clamped to [-c, c] (model units).
        bits: quantisation resolution b (bits).
        max_weight: bound W on a client's weight; larger weights are capped at W.
        weighted: True to weight by ``num_examples``, False for weight 1.
        modulus_bits: m; arithmetic is mod 2^m with n * (2^b - 1) < 2^m and n * W < 2^m.
    """

    num_nodes: int
    num_neighbours: int
    threshold: int
    coordinate_bound: float
    bits: int
    max_weight: int
    weighted: bool
    modulus_bits: int

    def __post_init__(self) -> None:
        check_structure(self.num_nodes, self.num_neighbours, self.threshold)
        quantizer = Quantizer(self.coordinate_bound, self.bits)
        _check_int("max_weight", self.max_weight, 1, MAX_WEIGHT_LIMIT)
        if not isinstance(self.weighted, bool):
            raise ConfigError(f"weighted must be a bool, got {self.weighted!r}")
        _check_int("modulus_bits", self.modulus_bits, 1, 64)
        check_no_wrap(self.modulus_bits, self.num_nodes, quantizer.levels)
        check_no_wrap(self.modulus_bits, self.num_nodes, self.max_weight)

    @property
    def quantizer(self) -> Quantizer:
        return Quantizer(self.coordinate_bound, self.bits)

    @property
    def dtype(self) -> np.dtype:
        """Word type of masked vectors on the wire: uint16 for m <= 16, uint32 for m <= 32, else uint64."""
        return word_dtype(self.modulus_bits)

    def to_config(self) -> Config:
        """The parameters as message config entries (keys prefixed ``secagg.``)."""
        return {f"secagg.{k}": v for k, v in asdict(self).items()}

    @classmethod
    def from_config(cls, config: Config) -> RoundParams:
        """Parse and validate parameters received from the server.

        Raises:
            MessageError: a missing, mistyped or unsafe parameter.
        """
        values = {}
        for f in fields(cls):
            key = f"secagg.{f.name}"
            if key not in config:
                raise MessageError(f"setup message lacks {key!r}")
            value = config[key]
            if f.name == "coordinate_bound" and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            values[f.name] = value
        try:
            return cls(**values)  # type: ignore[arg-type]
        except ConfigError as exc:
            raise MessageError(f"server sent invalid or unsafe SecAgg+ parameters: {exc}") from None


@dataclass(frozen=True)
class SecAggConfig:
    """User settings of SecAgg+ (Bonawitz et al. CCS'17 with the sparse graph of Bell et al. CCS'20).

    Each client sends ``w_i / max_weight * clamp(u_i)`` quantised to ``bits`` bits, where
    ``u_i`` is its update (local minus global model), ``clamp`` limits every coordinate
    to [-coordinate_bound, coordinate_bound], and ``w_i`` is its weight (number of
    examples, capped at ``max_weight``); ``w_i`` itself travels as one extra coordinate.
    The server recovers sum_i w_i * clamp(u_i) with a per-coordinate error below
    ``n * max_weight * 2 * coordinate_bound / (2^bits - 1)`` (stochastic rounding is
    unbiased), and sum_i w_i exactly.

    The neighbour count k and threshold t follow from the number of clients, the
    expected ``dropout`` and the ``corruption`` fraction
    (:func:`~privfl.secagg.params.choose_parameters`): the security failure probability
    stays below 2^-security_bits and an honest round aborts with probability at most
    ``abort_target`` when n allows it (small n uses the complete graph, the most
    dropout-tolerant choice). An explicit k and t are checked with
    :func:`~privfl.secagg.params.check_secure` against ``corruption``.

    Attributes:
        coordinate_bound: per-coordinate bound c of updates (> 0, model units). Not an
            L2 clipping norm: an update of L2 norm C may need c up to C.
        bits: quantisation resolution in [1, 32] bits.
        max_weight: bound on a client's weight in [1, 2^32]; weights above it are capped.
            A bound near the typical weight keeps quantisation error low.
        weighting: ``"examples"`` (FedAvg) or ``"uniform"``.
        dropout: expected fraction of selected clients that drop during a round, in [0, 1).
        corruption: fraction of selected clients that may collude with the server, in [0, 1).
        abort_target: highest acceptable probability that an honest round aborts, in (0, 1).
        security_bits: the security failure probability is at most 2^-security_bits.
        num_neighbours: k; ``None`` to choose it from n, dropout and corruption.
        threshold: t; ``None`` for the smallest secure t (chosen with k, or for the
            explicit k). Must exceed k / 2.
        modulus_bits: m; ``None`` for the smallest m at which the sum of n clients
            cannot wrap. An explicit m that would let the sum wrap raises ConfigError.
    """

    coordinate_bound: float = 8.0
    bits: int = 16
    max_weight: int = 1024
    weighting: str = "examples"
    dropout: float = 0.1
    corruption: float = 0.05
    abort_target: float = 1e-6
    security_bits: float = 40
    num_neighbours: int | None = None
    threshold: int | None = None
    modulus_bits: int | None = None

    def __post_init__(self) -> None:
        Quantizer(self.coordinate_bound, self.bits)
        _check_int("max_weight", self.max_weight, 1, MAX_WEIGHT_LIMIT)
        if self.weighting not in WEIGHTINGS:
            raise ConfigError(f"weighting must be one of {WEIGHTINGS}, got {self.weighting!r}")
        check_targets(
            dropout=self.dropout,
            corruption=self.corruption,
            abort_target=self.abort_target,
            security_bits=self.security_bits,
        )
        if self.num_neighbours is not None:
            _check_int("num_neighbours", self.num_neighbours, 1, 1 << 20)
        if self.threshold is not None:
            _check_int("threshold", self.threshold, 1, 1 << 20)
        if self.modulus_bits is not None:
            _check_int("modulus_bits", self.modulus_bits, 1, 64)
        if self.threshold is not None and self.num_neighbours is not None:
            if not self.num_neighbours / 2 < self.threshold <= self.num_neighbours:
                raise ConfigError(
                    f"threshold must satisfy k/2 < t <= k (k = {self.num_neighbours}), got t = {self.threshold}"
                )
        elif self.threshold is not None:
            raise ConfigError("an explicit threshold needs an explicit num_neighbours")

    def graph_params(self, num_nodes: int) -> tuple[int, int]:
        """(k, t) for a round with ``num_nodes`` clients (ConfigError if insecure or impossible)."""
        if self.num_neighbours is None:
            chosen = choose_parameters(
                num_nodes,
                dropout=self.dropout,
                corruption=self.corruption,
                abort_target=self.abort_target,
                security_bits=self.security_bits,
            )
            return chosen.num_neighbours, chosen.threshold
        k = self.num_neighbours
        if self.threshold is None:
            t = smallest_secure_threshold(num_nodes, k, corruption=self.corruption, security_bits=self.security_bits)
        else:
            t = self.threshold
            check_secure(num_nodes, k, t, corruption=self.corruption, security_bits=self.security_bits)
        return k, t

    def round_params(self, num_nodes: int) -> RoundParams:
        """Resolve the defaults for a round with ``num_nodes`` clients (ConfigError if unsafe)."""
        k, t = self.graph_params(num_nodes)
        weight = self.max_weight if self.weighting == "examples" else 1
        levels = Quantizer(self.coordinate_bound, self.bits).levels
        m = self.modulus_bits
        if m is None:
            m = max(required_modulus_bits(num_nodes, levels), required_modulus_bits(num_nodes, weight))
        return RoundParams(
            num_nodes=num_nodes,
            num_neighbours=k,
            threshold=t,
            coordinate_bound=float(self.coordinate_bound),
            bits=self.bits,
            max_weight=weight,
            weighted=self.weighting == "examples",
            modulus_bits=m,
        )
