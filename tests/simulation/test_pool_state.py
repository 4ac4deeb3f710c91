"""Client-side state held in worker processes survives checkpoint and resume."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from privfl.core.context import Context
from privfl.core.message import Message
from privfl.server.simulation import run_simulation


class Counter:
    """A Stateful client-side object: how many tasks this client has served."""

    def __init__(self) -> None:
        self.count = 0

    def state_dict(self) -> dict:
        return {"count": self.count}

    def load_state_dict(self, state: dict) -> None:
        self.count = state["count"]


def counting_app(message: Message, context: Context) -> Message:
    counter = context.get_or_create("counter", Counter)
    counter.count += 1
    arrays = {"w": message.arrays["w"] + 1.0}
    return message.reply(arrays=arrays, metrics={"num_examples": 1, "served": counter.count})


def test_worker_held_client_state_is_checkpointed_and_restored(tmp_path: Path) -> None:
    ckpt = tmp_path / "pool.ckpt"
    kwargs = dict(num_clients=4, initial_parameters={"w": np.zeros(3)}, workers=2, checkpoint=ckpt, progress=False)
    run_simulation(counting_app, num_rounds=3, **kwargs)
    resumed = run_simulation(counting_app, num_rounds=5, **kwargs)
    # Each client served one task per round: 5 after resuming, not 2 (a lost state would restart at 0).
    assert resumed.history.rounds[-1].fit["served"] == 5.0
    np.testing.assert_array_equal(resumed.parameters["w"], np.full(3, 5.0))
