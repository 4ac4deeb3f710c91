"""NumPy-style client API, shaped like Flower's ``NumPyClient`` so existing clients port unchanged."""

from __future__ import annotations

from typing import Any

import numpy as np

NDArrays = list[np.ndarray]
ClientConfig = dict[str, Any]


class NumPyClient:
    """Base class for a client that trains on local data.

    Subclasses override :meth:`fit` and usually :meth:`get_parameters` and
    :meth:`evaluate`. Parameters are a list of numpy arrays in a fixed order, the
    client's own to update in place (a :class:`~privfl.client.app.ClientApp` copies
    the read-only arrays of a decoded message once).
    """

    def get_parameters(self, config: ClientConfig) -> NDArrays:
        """The client's current model parameters."""
        raise NotImplementedError(f"{type(self).__name__} does not implement get_parameters")

    def fit(self, parameters: NDArrays, config: ClientConfig) -> tuple[NDArrays, int, dict[str, Any]]:
        """Train from ``parameters``; return (new parameters, number of examples used, metrics)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement fit")

    def evaluate(self, parameters: NDArrays, config: ClientConfig) -> tuple[float, int, dict[str, Any]]:
        """Evaluate ``parameters`` on local data; return (loss, number of examples, metrics)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement evaluate")
