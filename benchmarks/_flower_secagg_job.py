"""One Flower simulation timing a plain FedAvg round and a SecAgg+ round (run by benchmarks/secagg.py).

Runs in Flower's own virtualenv, never imports privfl. Usage:
``python _flower_secagg_job.py N D NUM_SHARES THRESHOLD OUT.json``; the partitions
listed (comma-separated) in ``PRIVFL_BENCH_DROPPED`` fail when they should upload:
on the train task of the plain round, at the collect-masked-vectors stage of the
SecAgg+ round. Round 1 is an untimed plain warm-up (actors start, modules load),
round 2 the timed plain round, round 3 the timed SecAgg+ round. Clients run in one Ray actor.
"""

import json
import os
import sys
import time

import numpy as np
from flwr.client import ClientApp, NumPyClient
from flwr.client.mod import secaggplus_mod
from flwr.common import ndarrays_to_parameters
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key, Stage
from flwr.server import LegacyContext, ServerApp, ServerConfig
from flwr.server.strategy import FedAvg
from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow
from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD
from flwr.server.workflow.constant import Key as WorkflowKey
from flwr.simulation import run_simulation

N, D, NUM_SHARES, THRESHOLD = (int(a) for a in sys.argv[1:5])
OUT = sys.argv[5]
DROPPED = {int(p) for p in os.environ.get("PRIVFL_BENCH_DROPPED", "").split(",") if p}
_POOL: dict[int, np.ndarray] = {}


def _update_pool(d: int) -> np.ndarray:
    # A few precomputed random float32 updates, so "training" costs one vector add.
    if d not in _POOL:
        _POOL[d] = np.random.default_rng(0).uniform(-0.5, 0.5, (4, d)).astype(np.float32)
    return _POOL[d]


class SyntheticClient(NumPyClient):
    def __init__(self, partition: int) -> None:
        self.partition = partition

    def fit(self, parameters, config):
        return [parameters[0] + _update_pool(parameters[0].size)[self.partition % 4]], 1, {}


def client_fn(context):
    return SyntheticClient(int(context.node_config["partition-id"])).to_client()


def bench_mod(msg, context, call_next):
    """Fail (a dropout to the server) where a dropped client would upload; SecAgg+ only on its messages."""
    configs = msg.content.config_records.get(RECORD_KEY_CONFIGS)
    stage = configs.get(Key.STAGE) if configs is not None else None
    uploads = msg.metadata.message_type == "train" and stage in (None, Stage.COLLECT_MASKED_VECTORS)
    if uploads and int(msg.metadata.group_id) >= 2 and int(context.node_config["partition-id"]) in DROPPED:
        raise RuntimeError("simulated dropout")
    return call_next(msg, context) if configs is None else secaggplus_mod(msg, context, call_next)


times: dict[int, float] = {}
counts: dict[int, tuple[int, int]] = {}


class CountingFedAvg(FedAvg):
    """FedAvg that records how many results and failures each round aggregated."""

    def aggregate_fit(self, server_round, results, failures):
        counts[server_round] = (len(results), len(failures))
        return super().aggregate_fit(server_round, results, failures)


secagg = SecAggPlusWorkflow(num_shares=NUM_SHARES, reconstruction_threshold=THRESHOLD)
plain = DefaultWorkflow().fit_workflow


def fit_workflow(grid, context):
    rnd = int(context.state.config_records[MAIN_CONFIGS_RECORD][WorkflowKey.CURRENT_ROUND])
    t0 = time.perf_counter()
    (secagg if rnd == 3 else plain)(grid, context)
    times[rnd] = time.perf_counter() - t0


server_app = ServerApp()


@server_app.main()
def main(grid, context):
    strategy = CountingFedAvg(
        fraction_fit=1.0,
        fraction_evaluate=0.0,
        min_fit_clients=N,
        min_available_clients=N,
        initial_parameters=ndarrays_to_parameters([np.zeros(D, dtype=np.float32)]),
    )
    legacy = LegacyContext(context=context, config=ServerConfig(num_rounds=3), strategy=strategy)
    DefaultWorkflow(fit_workflow=fit_workflow)(grid, legacy)


if __name__ == "__main__":
    client_app = ClientApp(client_fn=client_fn, mods=[bench_mod])
    one_actor = {"init_args": {"num_cpus": 1}, "client_resources": {"num_cpus": 1}}
    run_simulation(server_app=server_app, client_app=client_app, num_supernodes=N, backend_config=one_actor)
    with open(OUT, "w") as f:
        json.dump(
            {
                "plain_s": times.get(2),
                "secagg_s": times.get(3),
                "plain_counts": counts.get(2),
                "secagg_counts": counts.get(3),
            },
            f,
        )
