"""A training run used by the kill-and-resume tests: ``python resume_job.py CHECKPOINT ROUNDS KILL_ROUND``.

In round KILL_ROUND the first client to train blocks (``kill_point.hold_in_round``) so
the parent can kill the run inside that round.
"""

from __future__ import annotations

import sys
from pathlib import Path

from privfl.client.app import ClientApp
from privfl.server.sampling import PoissonSampler
from privfl.server.simulation import run_simulation
from privfl.tasks.digits import DigitsClient, DigitsFederation, initial_parameters

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from kill_point import hold_in_round

FEDERATION = DigitsFederation(num_clients=8, alpha=0.5, seed=3)


class HeldClient(DigitsClient):
    kill_round = 0

    def fit(self, parameters, config):
        hold_in_round(config, self.kill_round)
        return super().fit(parameters, config)


def held_client_fn(node_id: int) -> HeldClient:
    c = FEDERATION(node_id)
    return HeldClient(c.x, c.y, node_id=node_id, seed=3)


def run(checkpoint: Path | None, rounds: int, client_fn=FEDERATION):
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
    )


if __name__ == "__main__":
    HeldClient.kill_round = int(sys.argv[3])
    run(Path(sys.argv[1]), int(sys.argv[2]), client_fn=held_client_fn)
