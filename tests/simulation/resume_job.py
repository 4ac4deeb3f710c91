"""A training run used by the kill-and-resume tests: ``python resume_job.py CHECKPOINT ROUNDS MARKER``.

Clients sleep a little in ``fit`` so a parent process can kill the run mid-round.
After each completed round the run writes the round number to MARKER.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from privfl.client.app import ClientApp
from privfl.server.sampling import PoissonSampler
from privfl.server.simulation import run_simulation
from privfl.tasks.digits import DigitsClient, DigitsFederation, initial_parameters

FEDERATION = DigitsFederation(num_clients=8, alpha=0.5, seed=3)


class SlowClient(DigitsClient):
    def fit(self, parameters, config):
        time.sleep(0.02)
        return super().fit(parameters, config)


def slow_client_fn(node_id: int) -> SlowClient:
    c = FEDERATION(node_id)
    return SlowClient(c.x, c.y, node_id=node_id, seed=3)


def run(checkpoint: Path | None, rounds: int, marker: Path | None = None, client_fn=FEDERATION):
    callbacks = () if marker is None else (lambda rec: marker.write_text(str(rec.server_round)),)
    return run_simulation(
        ClientApp(client_fn),
        num_clients=FEDERATION.num_clients,
        num_rounds=rounds,
        initial_parameters=initial_parameters(),
        sampler=PoissonSampler(0.6),
        centralized_evaluate=FEDERATION.evaluate,
        seed=11,
        checkpoint=checkpoint,
        progress=False,
        callbacks=callbacks,
    )


if __name__ == "__main__":
    run(Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]), client_fn=slow_client_fn)
