"""Per-node state kept between rounds."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass
class Context:
    """State of one node (client or server) that outlives a single message.

    Components keep their state under their own key as a typed object (for example
    a SecAgg+ client keeps a ``SecAggClientState``), never as loose entries in a
    shared dict, so one component cannot misread another's secrets.

    Attributes:
        node_id: this node's id (0 for the server).
        run_config: read-only settings of the run.
        state: component name to that component's state object.
    """

    node_id: int
    run_config: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)

    def get_or_create(self, key: str, factory: Callable[[], T]) -> T:
        """The state object stored under ``key``, created by ``factory`` on first use."""
        if key not in self.state:
            self.state[key] = factory()
        return self.state[key]
