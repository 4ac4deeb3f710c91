"""Fixtures of the SecAgg+ tests (helpers live in secagg_helpers.py)."""

from __future__ import annotations

import numpy as np
import pytest
from secagg_helpers import Harness

from privfl.secagg import SecAggConfig
from privfl.secagg.client import SecAggPlusClient


@pytest.fixture
def make_harness(monkeypatch: pytest.MonkeyPatch):
    """Factory of harnesses whose clients record their unmasked vectors (a test-only spy)."""
    encoded: dict[tuple[int, int], np.ndarray] = {}
    original = SecAggPlusClient._encode

    def spy(self: SecAggPlusClient, update: np.ndarray, weight: int) -> np.ndarray:
        vector = original(self, update, weight)
        encoded[(self.state.server_round, self.node_id)] = vector.copy()
        return vector

    monkeypatch.setattr(SecAggPlusClient, "_encode", spy)

    def make(n: int, d: int = 6, config: SecAggConfig | None = None, **kwargs) -> Harness:
        return Harness(n, d, config or SecAggConfig(coordinate_bound=2.0), encoded, **kwargs)

    return make
