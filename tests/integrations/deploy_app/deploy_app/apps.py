"""ServerApp and ClientApp: Flower's FedAvg and NumPyClient, privfl's DP wrapper, SecAgg+ workflow and mods.

Node config: ``partition-id``; optionally ``fit-delay`` (seconds to sleep in ``fit``) and
``started-file`` (touched when ``fit`` starts), so a test can kill a node mid-round.
The ServerApp writes the final model and the fit metrics to ``result-path`` (JSON).
"""

import json
import time
from pathlib import Path

import numpy as np
from flwr.client import NumPyClient
from flwr.clientapp import ClientApp
from flwr.common import Context, ndarrays_to_parameters
from flwr.server import Grid, LegacyContext, ServerApp, ServerConfig
from flwr.server.strategy import FedAvg
from flwr.server.workflow import DefaultWorkflow
from flwr.server.workflow.constant import MAIN_PARAMS_RECORD

from privfl.integrations.flower import (
    DifferentialPrivacyClientSideFixedClipping,
    SecAggPlusWorkflow,
    fixedclipping_mod,
    secaggplus_mod,
)


class StepClient(NumPyClient):
    """Adds (partition + 1) to every parameter."""

    def __init__(self, partition: int, delay: float, started: str) -> None:
        self.partition, self.delay, self.started = partition, delay, started

    def fit(self, parameters, config):
        if self.started:
            Path(self.started).touch()
        time.sleep(self.delay)
        return [p + (self.partition + 1.0) for p in parameters], 1, {}


def client_fn(context: Context):
    cfg = context.node_config
    return StepClient(int(cfg["partition-id"]), float(cfg.get("fit-delay", 0.0)), str(cfg.get("started-file", "")))


client = ClientApp(client_fn=client_fn, mods=[secaggplus_mod, fixedclipping_mod])
server = ServerApp()


@server.main()
def main(grid: Grid, context: Context) -> None:
    rc = context.run_config
    initial = [np.zeros(int(rc["dim"]))]
    strategy = DifferentialPrivacyClientSideFixedClipping(
        FedAvg(fraction_fit=1.0, fraction_evaluate=0.0, initial_parameters=ndarrays_to_parameters(initial)),
        noise_multiplier=float(rc["noise-multiplier"]),
        clipping_norm=float(rc["clipping-norm"]),
        num_sampled_clients=int(rc["num-sampled-clients"]),
    )
    legacy = LegacyContext(context=context, config=ServerConfig(num_rounds=int(rc["num-rounds"])), strategy=strategy)
    workflow = SecAggPlusWorkflow(
        num_shares=5, reconstruction_threshold=3, clipping_range=8.0, timeout=float(rc["stage-timeout"])
    )
    DefaultWorkflow(fit_workflow=workflow)(grid, legacy)
    if rc["result-path"]:
        model = [a.numpy().tolist() for a in legacy.state.array_records[MAIN_PARAMS_RECORD].values()]
        fit = {k: [list(v) for v in values] for k, values in legacy.history.metrics_distributed_fit.items()}
        Path(str(rc["result-path"])).write_text(json.dumps({"model": model, "fit": fit}))
