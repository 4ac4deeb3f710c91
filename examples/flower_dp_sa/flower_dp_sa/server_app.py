"""ServerApp: Flower's FedAvg, LegacyContext and DefaultWorkflow with privfl's DP wrapper and SecAgg+ workflow."""

from flwr.common import Context, ndarrays_to_parameters
from flwr.server import Grid, LegacyContext, ServerApp, ServerConfig
from flwr.server.strategy import FedAvg
from flwr.server.workflow import DefaultWorkflow

from flower_dp_sa.task import Net, get_weights
from privfl.integrations.flower import (
    DifferentialPrivacyClientSideFixedClipping,
    SecAggPlusWorkflow,
    aggregate_client_metrics,
)

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    parameters = ndarrays_to_parameters(get_weights(Net()))
    num_sampled_clients = context.run_config["num-sampled-clients"]
    fraction_fit = 0.2
    strategy = FedAvg(
        fraction_fit=fraction_fit,
        fraction_evaluate=0.0,
        min_fit_clients=int(num_sampled_clients * fraction_fit),
        # privfl's SecAgg+ releases no per-client training metrics (they would reveal what it hides);
        # this keeps privfl's metrics in Flower's names, epsilons aggregated as a maximum.
        fit_metrics_aggregation_fn=aggregate_client_metrics,
        initial_parameters=parameters,
    )
    # Same arguments as Flower's wrapper, plus where privfl keeps the privacy ledger and the budget.
    strategy = DifferentialPrivacyClientSideFixedClipping(
        strategy,
        noise_multiplier=context.run_config["noise-multiplier"],
        clipping_norm=context.run_config["clipping-norm"],
        num_sampled_clients=num_sampled_clients,
        delta=context.run_config["delta"],
        max_epsilon=context.run_config["max-epsilon"] or None,
        ledger_path=context.run_config["ledger-path"] or None,
    )
    context = LegacyContext(
        context=context, config=ServerConfig(num_rounds=context.run_config["num-rounds"]), strategy=strategy
    )
    workflow = DefaultWorkflow(
        fit_workflow=SecAggPlusWorkflow(
            num_shares=context.run_config["num-shares"],
            reconstruction_threshold=context.run_config["reconstruction-threshold"],
        )
    )
    workflow(grid, context)
