"""Shared fixtures of the integration tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture
def flower_task() -> Iterator[None]:
    """The process identity Flower stamps on new messages (set by Flower's runtime inside a real app)."""
    task_identity = pytest.importorskip("flwr.supercore.task_identity").TaskIdentity
    saved = (task_identity._run_id, task_identity._node_id, task_identity._task_id)
    task_identity.run_id, task_identity.node_id, task_identity.task_id = 99, 1, 7
    yield
    task_identity._run_id, task_identity._node_id, task_identity._task_id = saved
