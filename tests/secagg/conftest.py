"""Fixtures of the SecAgg+ tests (helpers live in secagg_helpers.py)."""

from __future__ import annotations

import numpy as np
import pytest
from secagg_helpers import Harness

from privfl.secagg import SecAggConfig
from privfl.secagg.client import SecAggPlusClient


@pytest.fixture
def make_harness():
    """Factory of harnesses whose clients record their unmasked vectors.

    The recording client is injected through ``SecAggMod``'s private ``_client`` entry
    point (as tests inject randomness), not by patching the real class.
    """
    encoded: dict[tuple[int, int], np.ndarray] = {}

    class Recording(SecAggPlusClient):
        def _encode(self, update: np.ndarray, weight: int) -> np.ndarray:
            vector = super()._encode(update, weight)
            encoded[(self.state.server_round, self.node_id)] = vector.copy()
            return vector

    def make(n: int, d: int = 6, config: SecAggConfig | None = None, **kwargs) -> Harness:
        return Harness(n, d, config or SecAggConfig(coordinate_bound=2.0), encoded, client=Recording, **kwargs)

    return make
