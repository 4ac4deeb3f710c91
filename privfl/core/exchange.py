"""Sans-IO server exchanges: how server-side protocols talk to clients without doing I/O.

A server-side protocol for one round is a generator (an :data:`Exchange`). It
*yields* a list of messages to send (one per client) and is *sent back* an
iterator over the replies that arrived, in any order; a client that dropped out
simply has no reply. It repeats this for as many stages as it needs, then
*returns* its result. The bundled loop, a test, or the Flower adapter moves the
messages; the protocol never touches sockets, threads, clocks or global state.

Replies are an iterator, not a list, so a protocol can fold each reply into a
running sum as it arrives and never hold all client vectors at once. A protocol
must finish reading the iterator before it yields again.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, runtime_checkable

import numpy as np

from privfl.core.message import SERVER_NODE_ID, ArrayDict, Config, Message, MessageKind, Metadata, Metrics
from privfl.errors import ConfigError, ProtocolError

T = TypeVar("T")
Replies = Iterator[Message]
Exchange = Generator[list[Message], Replies, T]


@dataclass(frozen=True)
class SamplingInfo:
    """How this round's clients were drawn, as privacy accounting needs it.

    Attributes:
        population: number of clients that could have been drawn (N).
        rate: per-client inclusion probability q (Poisson) or fraction m/N (fixed size).
        poisson: True for independent Poisson sampling, False for a fixed-size sample
            drawn without replacement.
    """

    population: int
    rate: float
    poisson: bool

    def __post_init__(self) -> None:
        if self.population <= 0:
            raise ConfigError(f"population must be positive, got {self.population}")
        if not 0.0 < self.rate <= 1.0:
            raise ConfigError(f"sampling rate must be in (0, 1], got {self.rate}")

    @property
    def expected_clients(self) -> float:
        """Expected number of sampled clients, q * N."""
        return self.rate * self.population


@dataclass(frozen=True)
class RoundSpec:
    """What a server-side protocol needs to run one round.

    Attributes:
        run_id: the run's id, copied into every message.
        server_round: round number (1-based).
        nodes: ids of the clients selected for this round.
        parameters: the global model sent to clients.
        config: config entries sent to clients with the task.
        sampling: how ``nodes`` were drawn.
        kind: train or evaluate.
    """

    run_id: int
    server_round: int
    nodes: tuple[int, ...]
    parameters: ArrayDict
    config: Config
    sampling: SamplingInfo
    kind: MessageKind = MessageKind.TRAIN

    def message_to(
        self,
        node: int,
        *,
        stage: str = "",
        arrays: ArrayDict | None = None,
        config: Config | None = None,
    ) -> Message:
        """A message from the server to ``node`` for this round (default content: the task)."""
        return Message(
            metadata=Metadata(self.run_id, self.server_round, SERVER_NODE_ID, node, self.kind, stage),
            arrays=dict(self.parameters) if arrays is None else dict(arrays),
            config=dict(self.config) if config is None else dict(config),
        )


@dataclass(frozen=True)
class Rejection:
    """A reply the server refused: its sender is treated as having dropped out.

    Attributes:
        node: the sender named in the reply's header.
        stage: the exchange stage the reply answered (``"train"`` or ``"evaluate"``
            for one-stage exchanges, the protocol stage otherwise).
        error: the :mod:`privfl.errors` class that describes the failure.
        reason: what was wrong, as the error said it.
    """

    node: int
    stage: str
    error: str
    reason: str

    @classmethod
    def of(cls, reply: Message, stage: str, exc: Exception) -> Rejection:
        """The record of ``reply`` refused with ``exc``."""
        return cls(reply.metadata.src_node, stage, type(exc).__name__, str(exc))


@dataclass
class ClientResult:
    """What the server may know about one client's contribution (never its raw update)."""

    node_id: int
    num_examples: int
    metrics: Metrics


@dataclass
class Aggregate:
    """The result of one aggregation exchange.

    Attributes:
        update_sum: per array, the sum over contributing clients of
            ``weight_i * (local_i - global)`` (float64).
        weight_sum: the denominator that turns ``update_sum`` into the mean update
            (sum of weights, or the expected client count under DP).
        num_clients: how many clients contributed.
        results: per-client metadata the server may see.
        dropped: clients that were sent the task but did not contribute (including
            those whose reply was rejected).
        metrics: protocol metrics (e.g. DP noise scale, SecAgg+ dropouts).
        rejected: replies refused as invalid; each sender counts as dropped.
        dp_release: the aggregate is a differentially private release that must be applied
            whatever ``num_clients`` is: under DP the client count depends on who was
            sampled, so a strategy that aborted on it would leak through the abort.
    """

    update_sum: ArrayDict
    weight_sum: float
    num_clients: int
    results: list[ClientResult] = field(default_factory=list)
    dropped: tuple[int, ...] = ()
    metrics: dict[str, float] = field(default_factory=dict)
    rejected: tuple[Rejection, ...] = ()
    dp_release: bool = False


@runtime_checkable
class ClientFloor(Protocol):
    """An aggregator that cannot run with fewer than ``min_clients`` selected clients (SecAgg+: 3 by default).

    Central DP falls back to a noise-only release below the floor, which raises the
    sensitivity of the release from C to ``min_clients`` * C (see :mod:`privfl.dp.central`).
    """

    @property
    def min_clients(self) -> int:
        """Fewest selected clients the aggregator can aggregate (>= 1)."""
        ...


@runtime_checkable
class BoundedDistortion(Protocol):
    """An aggregator whose summed contribution of a client may differ from the client's update.

    SecAgg+ rounds each coordinate to a quantisation level, which can lengthen a
    clipped update slightly; central DP adds this bound to the clip norm so its noise
    covers the true sensitivity.
    """

    def contribution_error_bound(self, spec: RoundSpec) -> float:
        """Largest L2 distance (update units) between one client's contribution to the sum and its update."""
        ...


class Aggregator(Protocol):
    """A server-side protocol that turns a round's client updates into an :class:`Aggregate`."""

    def aggregate(self, spec: RoundSpec) -> Exchange[Aggregate]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass
class FitOutcome:
    """Result of a training round.

    Attributes:
        parameters: the new global model, sent to clients next round.
        num_clients: clients whose update is in the aggregate.
        dropped: clients selected but not counted (rejected ones included).
        metrics: server-side metrics of the round (weighted means of client metrics,
            protocol metrics).
        rejected: replies refused as invalid (their senders are in ``dropped``).
    """

    parameters: ArrayDict
    num_clients: int
    dropped: tuple[int, ...] = ()
    metrics: dict[str, float] = field(default_factory=dict)
    rejected: tuple[Rejection, ...] = ()


class Strategy(Protocol):
    """What the bundled loop (or the Flower adapter) needs from a server strategy."""

    def fit_round(self, spec: RoundSpec) -> Exchange[FitOutcome]: ...

    def evaluate_round(self, spec: RoundSpec) -> Exchange[dict[str, float]]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def check_reply(reply: Message, spec: RoundSpec, seen: set[int], stage: str = "") -> int:
    """Validate a reply's header against the round; return its sender (added to ``seen``).

    Raises:
        ProtocolError: the reply is not addressed to the server, is for another run,
            round, kind or stage, comes from a node not selected this round, or repeats
            a sender.
    """
    md = reply.metadata
    node = md.src_node
    if md.dst_node != SERVER_NODE_ID:
        raise ProtocolError(f"reply from node {node} is addressed to node {md.dst_node}, not the server")
    if (md.run_id, md.server_round, md.kind, md.stage) != (spec.run_id, spec.server_round, spec.kind, stage):
        raise ProtocolError(
            f"reply from node {node} is for run {md.run_id} round {md.server_round} {md.kind.value} "
            f"stage {md.stage!r}; expected run {spec.run_id} round {spec.server_round} {spec.kind.value} "
            f"stage {stage!r}"
        )
    if node not in spec.nodes:
        raise ProtocolError(f"reply from node {node}, which was not selected this round")
    if node in seen:
        raise ProtocolError(f"duplicate reply from node {node}")
    seen.add(node)
    return node


def zeros_like(arrays: ArrayDict) -> ArrayDict:
    """Float64 accumulators shaped like ``arrays``."""
    return {name: np.zeros(np.shape(a), dtype=np.float64) for name, a in arrays.items()}
