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

DP_CLIP_NORM = "privfl.dp.clip_norm"
"""Round-config key: the L2 clip norm (update units) the server's DP wrapper accounts for.

Sent by the party that accounts for it (the central-DP wrapper); the protocol client mods
(SecAgg+, CKKS) clip every update to it before quantising or encrypting, and a client-side
clipping mod that disagrees with it refuses the round.
"""
DP_MODE = "privfl.dp.mode"
"""Round-config key: the DP model of the round; today only :data:`DP_MODE_CENTRAL`."""
DP_MODE_CENTRAL = "central"
"""Client-level central DP: clients clip to :data:`DP_CLIP_NORM`, the server adds the noise."""
LOCAL_DP_EPSILON = "local_dp_epsilon"
"""Fit metric: the epsilon a client's local-DP ledger has spent (a per-client guarantee)."""
DP_SGD_EPSILON = "dp_sgd_epsilon"
"""Fit metric: the record-level epsilon a client's DP-SGD ledger has spent."""
WORST_CASE_METRICS = frozenset({LOCAL_DP_EPSILON, DP_SGD_EPSILON})
"""Client metrics aggregated across clients by their maximum, never a mean: a guarantee is the worst case."""


def check_num_examples(value: object, who: str) -> int:
    """``value`` as an example count: a non-negative int (numpy integers too; ``True`` and ``2.0`` are not).

    Raises:
        MessageError: naming ``who`` and the value received.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 0:
        raise MessageError(f"{who}: {NUM_EXAMPLES} must be a non-negative int, got {value!r}")
    return int(value)
