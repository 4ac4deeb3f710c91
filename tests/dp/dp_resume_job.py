"""A DP training run for the kill-and-resume test: ``python dp_resume_job.py CHECKPOINT ROUNDS KILL_ROUND``.

Server: central DP (server-side clipping) with a ledger; clients: local DP with their own
ledgers in their Contexts. In round KILL_ROUND the first client to train blocks
(``kill_point.hold_in_round``) so the parent can kill the run inside that round.
"""

from __future__ import annotations

import sys
from pathlib import Path

from privfl.client.app import ClientApp
from privfl.dp import CentralDp, LocalDpMod
from privfl.server.sampling import PoissonSampler
from privfl.server.simulation import run_simulation
from privfl.server.strategy import FedAvg
from privfl.tasks.digits import DigitsFederation, initial_parameters

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from kill_point import holding

FEDERATION = DigitsFederation(num_clients=6, alpha=1.0, seed=5)


def run(checkpoint: Path, rounds: int, client_fn=FEDERATION):
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
    )


if __name__ == "__main__":
    run(Path(sys.argv[1]), int(sys.argv[2]), client_fn=holding(FEDERATION, kill_round=int(sys.argv[3])))
