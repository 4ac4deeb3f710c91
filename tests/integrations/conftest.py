"""Shared fixtures of the integration tests."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator

import pytest


@pytest.fixture
def flower_task() -> Iterator[None]:
    """The process identity recent Flower (>= 1.4x) stamps on new messages; its runtime sets it inside an app."""
    import flwr  # noqa: F401

    if importlib.util.find_spec("flwr.supercore.task_identity") is None:
        yield  # older Flower builds messages without one
        return
    from flwr.supercore.task_identity import TaskIdentity

    saved = (TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id)
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 99, 1, 7
    yield
    TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id = saved


@pytest.fixture(autouse=True, scope="session")
def _node_key_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Node state keys go to a temporary directory (also for Ray actors and Flower processes started later)."""
    import os

    from privfl.integrations.flower.state import STATE_DIR_ENV

    saved = os.environ.get(STATE_DIR_ENV)
    os.environ[STATE_DIR_ENV] = str(tmp_path_factory.mktemp("privfl-node-keys"))
    yield
    if saved is None:
        del os.environ[STATE_DIR_ENV]
    else:
        os.environ[STATE_DIR_ENV] = saved
