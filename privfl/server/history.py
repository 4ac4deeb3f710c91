"""Per-round record of a run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class RoundRecord:
    """What happened in one round.

    Attributes:
        server_round: round number.
        status: ``"ok"`` or ``"aborted"`` (model unchanged).
        num_sampled: clients selected.
        num_clients: clients whose update was aggregated.
        fit: training metrics (weighted client means, protocol metrics).
        evaluate: federated evaluation metrics.
        centralized: server-side evaluation metrics.
        bytes_down: encoded bytes sent to clients in the round.
        bytes_up: encoded bytes received from clients in the round.
        seconds: wall-clock time of the round.
        note: reason for an abort.
        rejected: training replies refused as invalid, as ``{"node", "stage", "error",
            "reason"}`` records (their senders count as dropped).
    """

    server_round: int
    status: str = "ok"
    num_sampled: int = 0
    num_clients: int = 0
    fit: dict[str, float] = field(default_factory=dict)
    evaluate: dict[str, float] = field(default_factory=dict)
    centralized: dict[str, float] = field(default_factory=dict)
    bytes_down: int = 0
    bytes_up: int = 0
    seconds: float = 0.0
    note: str = ""
    rejected: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class History:
    """All rounds of a run, JSON-serialisable through :meth:`to_dict` / :meth:`from_dict`."""

    rounds: list[RoundRecord] = field(default_factory=list)

    def series(self, section: str, key: str) -> list[tuple[int, float]]:
        """``(round, value)`` pairs of metric ``key`` in ``section`` (fit, evaluate, centralized)."""
        return [(r.server_round, getattr(r, section)[key]) for r in self.rounds if key in getattr(r, section)]

    def last(self, section: str, key: str) -> float | None:
        values = self.series(section, key)
        return values[-1][1] if values else None

    def to_dict(self) -> dict[str, Any]:
        return {"rounds": [vars(r).copy() for r in self.rounds]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> History:
        return cls(rounds=[RoundRecord(**r) for r in data.get("rounds", [])])
