"""ServerApp: privfl FedAvg over SecAgg+ with central DP, driven round by round over Flower's Grid."""

from __future__ import annotations

import logging

from flwr.serverapp import ServerApp

from privfl.integrations.flower import run_on_grid
from privfl.tasks.digits import initial_parameters
from privfl_flower_app.task import Settings

log = logging.getLogger("privfl_flower_app")


def make_server_app(settings: Settings | None = None) -> ServerApp:
    """A Flower ServerApp; ``settings`` default to the Flower run config's."""
    server = ServerApp()

    @server.main()
    def main(grid, context) -> None:
        s = settings or Settings.from_run_config(context.run_config)
        result = run_on_grid(
            grid,
            min_nodes=s.num_clients,
            num_rounds=s.num_rounds,
            initial_parameters=initial_parameters(),
            strategy=s.strategy(),
            sampler=s.sampler(),
            centralized_evaluate=s.federation().evaluate,
            seed=s.seed,
        )
        for record in result.history.rounds:
            log.warning(
                "round %d: %s, %d clients, test accuracy %.3f, epsilon %.2f",
                record.server_round,
                record.status,
                record.num_clients,
                record.centralized.get("accuracy", float("nan")),
                record.fit.get("dp_epsilon", float("nan")),
            )
        ledger = result.strategy.aggregator.ledger
        log.warning("spent epsilon %.2f at delta %g in %d rounds", ledger.epsilon(s.delta), s.delta, s.num_rounds)
        if s.ledger_path:
            ledger.save(s.ledger_path)

    return server


app = make_server_app()
