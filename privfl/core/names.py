"""Metric and config names shared by clients, servers and every protocol, and the rules for their values."""

from __future__ import annotations

import numpy as np

from privfl.errors import MessageError

NUM_EXAMPLES = "num_examples"
"""Metric key under which a reply reports how many examples the client used."""
LOSS = "loss"
"""Metric key under which an evaluate reply reports the loss."""
REJECTED = "rejected"
"""Metric key counting replies the server refused as invalid (their senders count as dropped)."""


def check_num_examples(value: object, who: str) -> int:
    """``value`` as an example count: a non-negative int (numpy integers too; ``True`` and ``2.0`` are not).

    Raises:
        MessageError: naming ``who`` and the value received.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 0:
        raise MessageError(f"{who}: {NUM_EXAMPLES} must be a non-negative int, got {value!r}")
    return int(value)
