"""One privfl SecAgg+ round (n=50, d=10^5) on Flower's simulation runtime vs privfl's bundled loop, in one run.

Both runtimes run the same privfl code (``SecAggMod`` on the clients, the
``SecAggPlusAggregator`` state machine on the server, FedAvg); only the transport
differs: the bundled loop calls the clients in this process through privfl's wire
codec, Flower moves every stage through its SuperLink state, ``Grid.send_and_receive``
and one Ray actor (privfl keeps SecAgg+ secrets in process memory, so a client's
stages must reach one process). Each runtime does two rounds: round 1 is cold
(on Flower it includes starting Ray and the actor), round 2 is warm. Clients are
synthetic ("training" adds a seeded random update), so the numbers are protocol and
transport cost. Both models must agree within the SecAgg+ quantisation error.

    .venv/bin/python benchmarks/flower_runtime.py [--clients 50] [--dim 100000]
"""

from __future__ import annotations

import argparse
import logging
import time

import numpy as np
from flwr.serverapp import ServerApp
from flwr.simulation import run_simulation as flower_run_simulation

from privfl.client import ClientApp, NumPyClient
from privfl.integrations.flower import flower_client_app, run_on_grid
from privfl.secagg import SecAggConfig, SecAggMod, SecAggPlusAggregator
from privfl.server import FedAvg, RunConfig, SimulationResult
from privfl.server import run_simulation as bundled_run_simulation

ONE_ACTOR = {"init_args": {"num_cpus": 1}, "client_resources": {"num_cpus": 1}}
ROUNDS = 2
EXAMPLES = 32
CONFIG = SecAggConfig(coordinate_bound=1.0, bits=16, max_weight=64)


class SyntheticClient(NumPyClient):
    """Adds a seeded update uniform in [-0.5, 0.5] (one of four) and reports ``EXAMPLES`` examples."""

    def __init__(self, node_id: int) -> None:
        self.node_id = node_id

    def fit(self, parameters, config):
        update = np.random.default_rng(self.node_id % 4).uniform(-0.5, 0.5, parameters[0].size).astype(np.float32)
        return [parameters[0] + update], EXAMPLES, {}


def run_config() -> RunConfig:
    """The one run both runtimes execute (a fresh strategy each time: it holds the run's state)."""
    strategy = FedAvg(aggregator=SecAggPlusAggregator(CONFIG, semi_honest=True))
    return RunConfig(num_rounds=ROUNDS, strategy=strategy, seed=0, progress=False)


def run_bundled(n: int, d: int) -> tuple[SimulationResult, float]:
    t0 = time.perf_counter()
    result = bundled_run_simulation(
        ClientApp(SyntheticClient, mods=[SecAggMod(semi_honest=True)]),
        num_clients=n,
        initial_parameters={"w": np.zeros(d, np.float32)},
        config=run_config(),
    )
    return result, time.perf_counter() - t0


def run_flower(n: int, d: int) -> tuple[SimulationResult, float]:
    out: dict[str, SimulationResult] = {}
    server = ServerApp()

    @server.main()
    def main(grid, context) -> None:
        out["result"] = run_on_grid(
            grid, min_nodes=n, initial_parameters={"w": np.zeros(d, np.float32)}, config=run_config()
        )

    t0 = time.perf_counter()
    flower_run_simulation(
        server_app=server,
        client_app=flower_client_app(ClientApp(SyntheticClient, mods=[SecAggMod(semi_honest=True)])),
        num_supernodes=n,
        backend_config=ONE_ACTOR,
    )
    total = time.perf_counter() - t0
    if "result" not in out:
        raise SystemExit("the Flower ServerApp failed; see its log above")
    return out["result"], total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--dim", type=int, default=100_000)
    args = parser.parse_args()
    n, d = args.clients, args.dim
    logging.getLogger("flwr").setLevel(logging.WARNING)

    bundled, bundled_total = run_bundled(n, d)
    flower, flower_total = run_flower(n, d)

    step = 2 * CONFIG.coordinate_bound / (2**CONFIG.bits - 1)
    # Each run's mean update is off by < (max_weight / weight) * step per coordinate and round.
    bound = 2 * ROUNDS * CONFIG.max_weight / EXAMPLES * step
    gap = float(np.max(np.abs(bundled.parameters["w"].astype(np.float64) - flower.parameters["w"])))
    print(f"privfl SecAgg+ round, n={n} clients, d={d} float32 parameters, {CONFIG}")
    print(f"{'':28s}{'bundled loop':>14s}{'Flower runtime':>16s}{'Flower/bundled':>16s}")
    for rnd in range(ROUNDS):
        b, f = bundled.history.rounds[rnd], flower.history.rounds[rnd]
        label = "round 1 (cold) s" if rnd == 0 else f"round {rnd + 1} (warm) s"
        print(f"{label:28s}{b.seconds:14.2f}{f.seconds:16.2f}{f.seconds / b.seconds:16.2f}x")
    b, f = bundled.history.rounds[-1], flower.history.rounds[-1]
    print(f"{'clients aggregated (warm)':28s}{b.num_clients:14d}{f.num_clients:16d}")
    print(
        f"{'MB down / up per round':28s}{b.bytes_down / 1e6:8.1f}/{b.bytes_up / 1e6:5.1f}"
        f"{f.bytes_down / 1e6:10.1f}/{f.bytes_up / 1e6:5.1f}"
    )
    print(f"{'whole run s':28s}{bundled_total:14.2f}{flower_total:16.2f}")
    print(f"max |model difference| after {ROUNDS} rounds: {gap:.2e} (quantisation bound {bound:.2e})")
    if b.num_clients != n or f.num_clients != n or gap > bound:
        raise SystemExit("the two runtimes disagree")


if __name__ == "__main__":
    main()
