"""Flower's FedAvg over SecAgg+, with ``impl`` = "privfl" (privfl's workflow and mod) or "flower" (Flower's).

Clients add a seeded update uniform in [-0.5, 0.5] (d coordinates, 32 examples). The
ServerApp times each round's fit workflow and writes the times and the final model
to ``result-path`` (JSON), so both implementations are measured on the same nodes.
"""

import json
import time
from pathlib import Path

import numpy as np
from flwr.client import NumPyClient
from flwr.client.mod import secaggplus_mod as flower_secaggplus_mod
from flwr.clientapp import ClientApp
from flwr.common import Context, ndarrays_to_parameters
from flwr.server import Grid, LegacyContext, ServerApp, ServerConfig
from flwr.server.strategy import FedAvg
from flwr.server.workflow import DefaultWorkflow
from flwr.server.workflow import SecAggPlusWorkflow as FlowerSecAggPlusWorkflow
from flwr.server.workflow.constant import MAIN_PARAMS_RECORD

from privfl.integrations.flower import SecAggPlusWorkflow, secaggplus_mod


class SyntheticClient(NumPyClient):
    def __init__(self, partition: int) -> None:
        self.partition = partition

    def fit(self, parameters, config):
        rng = np.random.default_rng(self.partition)
        return [parameters[0] + rng.uniform(-0.5, 0.5, parameters[0].size).astype(np.float32)], 32, {}


def client_fn(context: Context):
    return SyntheticClient(int(context.node_config["partition-id"])).to_client()


def _either(message, context, call_next):
    """Route to privfl's or Flower's SecAgg+ client mod by the run config."""
    mod = flower_secaggplus_mod if context.run_config["impl"] == "flower" else secaggplus_mod
    return mod(message, context, call_next)


client = ClientApp(client_fn=client_fn, mods=[_either])
server = ServerApp()


class Timed:
    def __init__(self, workflow) -> None:
        self.workflow, self.seconds = workflow, []

    def __call__(self, grid, context) -> None:
        t0 = time.perf_counter()
        self.workflow(grid, context)
        self.seconds.append(time.perf_counter() - t0)


@server.main()
def main(grid: Grid, context: Context) -> None:
    rc = context.run_config
    n = len(list(grid.get_node_ids()))
    strategy = FedAvg(
        fraction_fit=1.0,
        fraction_evaluate=0.0,
        min_fit_clients=n,
        min_available_clients=n,
        initial_parameters=ndarrays_to_parameters([np.zeros(int(rc["dim"]), np.float32)]),
    )
    if rc["impl"] == "flower":
        secagg = FlowerSecAggPlusWorkflow(num_shares=n, reconstruction_threshold=2, clipping_range=1.0, max_weight=64)
    else:
        secagg = SecAggPlusWorkflow(num_shares=n, reconstruction_threshold=2, clipping_range=1.0, max_weight=64)
    timed = Timed(secagg)
    legacy = LegacyContext(context=context, config=ServerConfig(num_rounds=int(rc["num-rounds"])), strategy=strategy)
    DefaultWorkflow(fit_workflow=timed)(grid, legacy)
    model = next(iter(legacy.state.array_records[MAIN_PARAMS_RECORD].values())).numpy()
    Path(str(rc["result-path"])).write_text(json.dumps({"seconds": timed.seconds, "model": model.tolist()}))
