"""Metric and config names shared by clients, servers and every protocol."""

NUM_EXAMPLES = "num_examples"
"""Metric key under which a reply reports how many examples the client used."""
LOSS = "loss"
"""Metric key under which an evaluate reply reports the loss."""
REJECTED = "rejected"
"""Metric key counting replies the server refused as invalid (their senders count as dropped)."""
