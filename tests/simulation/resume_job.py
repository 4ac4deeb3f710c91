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
from privfl.tasks.digits import DigitsFederation, initial_parameters

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from kill_point import holding

FEDERATION = DigitsFederation(num_clients=8, alpha=0.5, seed=3)


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
    run(Path(sys.argv[1]), int(sys.argv[2]), client_fn=holding(FEDERATION, kill_round=int(sys.argv[3])))
