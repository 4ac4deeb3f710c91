"""A DP training run for the kill-and-resume test: ``python dp_resume_job.py CHECKPOINT ROUNDS MARKER``.

Server: central DP (server-side clipping) with a ledger; clients: local DP with their own
ledgers in their Contexts. Clients sleep in ``fit`` so the parent can kill mid-round;
after each completed round the run writes the round number to MARKER.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from privfl.client.app import ClientApp
from privfl.dp import CentralDp, LocalDpMod
from privfl.server.sampling import PoissonSampler
from privfl.server.simulation import run_simulation
from privfl.server.strategy import FedAvg
from privfl.tasks.digits import DigitsClient, DigitsFederation, initial_parameters

FEDERATION = DigitsFederation(num_clients=6, alpha=1.0, seed=5)


class SlowClient(DigitsClient):
    def fit(self, parameters, config):
        time.sleep(0.03)
        return super().fit(parameters, config)


def slow_client_fn(node_id: int) -> SlowClient:
    c = FEDERATION(node_id)
    return SlowClient(c.x, c.y, node_id=node_id, seed=5)


def run(checkpoint: Path, rounds: int, marker: Path | None = None, client_fn=FEDERATION):
    callbacks = () if marker is None else (lambda rec: marker.write_text(str(rec.server_round)),)
    dp = CentralDp.with_server_clipping(noise_multiplier=1.0, clip_norm=1.0, delta=1e-5)
    return run_simulation(
        ClientApp(client_fn, mods=[LocalDpMod(clip_norm=1.0, epsilon=4.0, delta=1e-6)]),
        num_clients=FEDERATION.num_clients,
        num_rounds=rounds,
        initial_parameters=initial_parameters(),
        strategy=FedAvg(aggregator=dp, min_clients=0),
        sampler=PoissonSampler(0.5),
        seed=17,
        checkpoint=checkpoint,
        progress=False,
        callbacks=callbacks,
    )


if __name__ == "__main__":
    run(Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]), client_fn=slow_client_fn)
