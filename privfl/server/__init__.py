"""Server side: strategies, aggregators, sampling, failures, checkpoints and the bundled loop."""

from privfl.core.exchange import Aggregate, Aggregator, Exchange, FitOutcome, RoundSpec, SamplingInfo, Strategy
from privfl.core.plain import PlainAggregator
from privfl.server.failures import FailurePlan
from privfl.server.history import History, RoundRecord
from privfl.server.run_config import CentralizedEvaluate, RunConfig
from privfl.server.sampling import FixedFractionSampler, PoissonSampler, Sampler
from privfl.server.simulation import SimulationResult, run_rounds, run_simulation
from privfl.server.strategy import FedAvg
from privfl.server.transport import InProcessClients, ProcessPoolClients, Transport, drive

__all__ = [
    "Aggregate",
    "Aggregator",
    "CentralizedEvaluate",
    "Exchange",
    "FailurePlan",
    "FedAvg",
    "FitOutcome",
    "FixedFractionSampler",
    "History",
    "InProcessClients",
    "PlainAggregator",
    "PoissonSampler",
    "ProcessPoolClients",
    "RoundRecord",
    "RoundSpec",
    "RunConfig",
    "Sampler",
    "SamplingInfo",
    "SimulationResult",
    "Strategy",
    "Transport",
    "drive",
    "run_rounds",
    "run_simulation",
]
