"""Injectable client failures for simulations and tests.

A client that fails at some stage of a round receives nothing from then on in
that round and sends nothing back: to the server it looks like a dropout.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from privfl.core.message import Message
from privfl.errors import ConfigError


def stage_of(message: Message) -> str:
    """The stage name used by failure plans: the protocol stage, or the kind for one-shot tasks."""
    return message.metadata.stage or message.metadata.kind.value


@dataclass(frozen=True)
class FailurePlan:
    """Which clients drop out, and when.

    Attributes:
        dropout: stage name to the probability that a live client drops when it is
            sent a message of that stage (``"*"`` applies to every stage).
        scripted: explicit ``(server_round, stage, node_id)`` drops.
        seed: seed of the (non-private, simulation-only) generator deciding random drops.
    """

    dropout: Mapping[str, float] = field(default_factory=dict)
    scripted: frozenset[tuple[int, str, int]] = frozenset()
    seed: int = 0

    def __post_init__(self) -> None:
        for stage, p in self.dropout.items():
            if not 0.0 <= p <= 1.0:
                raise ConfigError(f"dropout probability for stage {stage!r} must be in [0, 1], got {p}")
        object.__setattr__(self, "scripted", frozenset(self.scripted))

    @classmethod
    def script(cls, drops: Iterable[tuple[int, str, int]]) -> FailurePlan:
        """A plan that drops exactly the listed ``(server_round, stage, node_id)`` triples."""
        return cls(scripted=frozenset(drops))


class FailureInjector:
    """Applies a :class:`FailurePlan` to the messages of one run."""

    def __init__(self, plan: FailurePlan | None) -> None:
        self.plan = plan or FailurePlan()
        self._dead: set[tuple[int, int]] = set()

    def drops(self, message: Message) -> bool:
        """True if the destination client has failed (now or earlier in this round)."""
        md = message.metadata
        key = (md.server_round, md.dst_node)
        if key in self._dead:
            return True
        stage = stage_of(message)
        dead = (md.server_round, stage, md.dst_node) in self.plan.scripted
        p = self.plan.dropout.get(stage, self.plan.dropout.get("*", 0.0))
        if not dead and p > 0.0:
            # One independent draw per (round, stage, node), reproducible for a seed.
            stage_key = int.from_bytes(hashlib.sha256(stage.encode()).digest()[:8], "little")
            rng = np.random.default_rng([self.plan.seed, md.server_round, stage_key, md.dst_node])
            dead = bool(rng.random() < p)
        if dead:
            self._dead.add(key)
        return dead
