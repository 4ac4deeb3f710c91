"""Per-node state kept between rounds."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, runtime_checkable

T = TypeVar("T")


@runtime_checkable
class Stateful(Protocol):
    """A state object that can be saved in a checkpoint (JSON values, bytes and arrays only)."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@runtime_checkable
class SecretStateful(Protocol):
    """A state object holding secrets (e.g. a SecAgg+ round's keys) that a runtime may need to persist.

    ``secret_state_dict`` returns the full state, secrets included (JSON values, bytes
    and arrays only). It must never reach a plain checkpoint: a runtime that runs one
    message per process (Flower's deployment runtime) stores it only sealed with AEAD
    under a node-local key, bound to the run, round and node.
    """

    def secret_state_dict(self) -> dict[str, Any]: ...

    def load_secret_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass
class Context:
    """State of one node (client or server) that outlives a single message.

    Components keep their state under their own key as a typed object (for example
    a SecAgg+ client keeps a ``SecAggClientState``), never as loose entries in a
    shared dict, so one component cannot misread another's secrets. Objects that
    are :class:`Stateful` are saved with the run's checkpoint and restored on resume
    the first time their component asks for them.

    Attributes:
        node_id: this node's id (0 for the server).
        run_config: read-only settings of the run.
        state: component name to that component's state object.
    """

    node_id: int
    run_config: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)
    _restored: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)

    def get_or_create(self, key: str, factory: Callable[[], T]) -> T:
        """The state object stored under ``key``, created by ``factory`` on first use.

        If a checkpoint restored state for ``key``, the new object loads it.
        """
        if key not in self.state:
            obj = factory()
            if key in self._restored:
                obj.load_state_dict(self._restored.pop(key))  # type: ignore[attr-defined]
            self.state[key] = obj
        return self.state[key]

    def checkpoint_state(self) -> dict[str, dict[str, Any]]:
        """The saved form of every :class:`Stateful` state object (plus any not yet re-created)."""
        saved = dict(self._restored)
        saved.update({k: v.state_dict() for k, v in self.state.items() if isinstance(v, Stateful)})
        return saved

    def restore_state(self, saved: dict[str, dict[str, Any]]) -> None:
        """Queue checkpointed state; each object loads it when :meth:`get_or_create` builds it."""
        self.state.clear()
        self._restored = dict(saved)
