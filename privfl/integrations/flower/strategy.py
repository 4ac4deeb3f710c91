"""Central DP around Flower's own strategies, with privfl's accountant, ledger and budget stop.

Drop-in replacements for Flower's ``DifferentialPrivacyClientSideFixedClipping``,
``DifferentialPrivacyServerSideFixedClipping`` and
``DifferentialPrivacyServerSideAdaptiveClipping`` (legacy ``flwr.server.strategy``
API, same leading arguments), wrapping any Flower strategy (``FedAvg``,
``FedAdam``, ...). What differs from Flower's, and why:

- Clients are Poisson-sampled with rate q = ``num_sampled_clients`` / N from the OS
  CSPRNG (N = connected nodes), as the accountant assumes; Flower's strategies draw
  a fixed-size sample with Python's ``random`` (replace-one neighbours, sensitivity
  2C, not what a Poisson-subsampled Gaussian accounts for). The inner strategy's
  ``fraction_fit`` / ``min_fit_clients`` are therefore not used; its
  ``on_fit_config_fn`` still provides the round's config.
- The release is privfl's :class:`~privfl.dp.CentralDp` / :class:`~privfl.dp.AdaptiveClippingDp`
  (DP-FedAvg, McMahan et al. 2018; Andrew et al. 2021): the sum of clipped updates
  with uniform weights plus N(0, (z C)^2), over the expected count q N. Each round is
  recorded in a :class:`~privfl.accounting.PrivacyLedger` (saved to ``ledger_path``
  after every round when given) and epsilon at ``delta`` is reported.
- Budget stop: once the next round would exceed ``max_epsilon`` at ``delta``,
  ``configure_fit`` selects no client (Flower then skips the round), logs why, and
  the model stays as it is.
- The clip norm C goes to the clients in the train config (``clipping_norm``, the
  key Flower uses) and privfl's client ``fixedclipping_mod`` clips to it: one source.

The inner strategy is given one result per contributing client whose parameters
are all the released model ``global + noised mean update``, so FedAvg returns that
model and server optimisers (FedAdam, FedYogi) use it as their pseudo-gradient;
client metrics go through the inner strategy's ``fit_metrics_aggregation_fn``.
privfl's own round metrics (``dp-epsilon``, ``dp-noise-std``, ...) are added with
Flower's kebab-case names (:mod:`privfl.integrations.flower.names`).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flwr.common import (
    Code,
    EvaluateIns,
    EvaluateRes,
    FitIns,
    FitRes,
    Parameters,
    Scalar,
    Status,
    ndarrays_to_parameters,
)
from flwr.server.client_manager import ClientManager
from flwr.server.client_proxy import ClientProxy
from flwr.server.strategy import Strategy

from privfl.accounting import GaussianEvent, PoissonSampledEvent, PrivacyBudget
from privfl.core.exchange import Aggregate, Aggregator, RoundSpec, SamplingInfo
from privfl.core.message import SERVER_NODE_ID, ArrayDict, Message, MessageKind, Metadata
from privfl.core.names import NUM_EXAMPLES
from privfl.core.plain import PlainAggregator
from privfl.dp import AdaptiveClippingDp, CentralDp
from privfl.dp.central import ClipEachUpdate
from privfl.errors import BudgetExceededError, ConfigError, ProtocolAbort
from privfl.integrations.flower.convert import NodeMap, decode_npy
from privfl.integrations.flower.mods import CLIPPING_NORM
from privfl.integrations.flower.names import round_metrics
from privfl.server.transport import drive

logger = logging.getLogger(__name__)


def parameters_to_arrays(parameters: Parameters) -> ArrayDict:
    """Flower ``Parameters`` as privfl arrays named ``"0"``, ``"1"``, ... (decoded without pickle)."""
    return {str(i): decode_npy(t, str(i)) for i, t in enumerate(parameters.tensors)}


def _describe(failure: object) -> str:
    if isinstance(failure, BaseException):
        return f"{type(failure).__name__}: {failure}"
    proxy, res = failure  # type: ignore[misc]
    return f"node {proxy.node_id}: status {res.status.code}: {res.status.message}"


class PrivflDpStrategy(Strategy):
    """Central DP with privfl's mechanism and ledger around a Flower strategy (see the module docstring).

    Subclasses choose the mechanism (:meth:`mechanism`). ``last_round`` holds the
    :class:`RoundSpec` of the round being trained, so privfl's ``SecAggPlusWorkflow``
    can run the same mechanism over its secure sum.

    Args:
        strategy: the Flower strategy that turns the released model into the next one.
        num_sampled_clients: expected clients per round, q N (Flower's name).
        delta: delta at which epsilon is reported and the budget is set.
        max_epsilon: total epsilon budget; ``None`` for no budget stop.
        ledger_path: file the privacy ledger is saved to after every round (``None``: kept in memory).
        run_id: privfl run id carried by this run's messages.
        wait_timeout: seconds to wait for the inner strategy's ``min_available_clients``.
    """

    def __init__(
        self,
        strategy: Strategy,
        *,
        num_sampled_clients: int,
        delta: float = 1e-5,
        max_epsilon: float | None = None,
        ledger_path: str | Path | None = None,
        run_id: int = 0,
        wait_timeout: int = 600,
    ) -> None:
        super().__init__()
        if isinstance(num_sampled_clients, bool) or not isinstance(num_sampled_clients, int) or num_sampled_clients < 1:
            raise ConfigError(f"num_sampled_clients must be an int >= 1, got {num_sampled_clients!r}")
        self.strategy = strategy
        self.num_sampled_clients = num_sampled_clients
        self.delta = delta
        self.ledger_path = Path(ledger_path) if ledger_path else None
        self.run_id = run_id
        self.wait_timeout = wait_timeout
        self.budget = PrivacyBudget(epsilon=max_epsilon, delta=delta) if max_epsilon is not None else None
        self.dp = self.mechanism()
        self.last_round: RoundSpec | None = None
        self._proxies: dict[int, ClientProxy] = {}
        self.node_map: NodeMap | None = None

    def mechanism(self) -> CentralDp | AdaptiveClippingDp:
        raise NotImplementedError

    @property
    def noise_multiplier(self) -> float:
        return self.dp.noise_multiplier

    @property
    def ledger(self):
        """The run's :class:`~privfl.accounting.PrivacyLedger`."""
        return self.dp.ledger

    def wrap_secure_sum(self, secure_sum: Aggregator) -> Aggregator:
        """The DP release over a secure sum (clients clipped); only fixed clipping can run under SecAgg+."""
        raise ConfigError(f"{type(self).__name__} clips on the server, which cannot see updates under SecAgg+")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.strategy!r}, noise_multiplier={self.noise_multiplier})"

    def initialize_parameters(self, client_manager: ClientManager) -> Parameters | None:
        return self.strategy.initialize_parameters(client_manager)

    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, FitIns]]:
        """Poisson-sample the clients (CSPRNG) and send them the inner strategy's config plus the clip norm.

        An empty sample raises :class:`ProtocolAbort`: Flower's fit workflow would skip the
        round, and a skipped round reveals that nobody was sampled, which the accounting of
        the Poisson-subsampled Gaussian does not cover (it assumes a noise-only release, as
        privfl's ``SecAggPlusWorkflow`` makes). With q N clients expected this happens with
        probability (1 - q)^N per round.
        """
        selected = self.sample_round(server_round, parameters, client_manager)
        if selected is None:
            return []
        if not selected:
            raise ProtocolAbort(
                f"round {server_round}: the Poisson sample is empty; Flower's fit workflow would skip the round, "
                "which DP accounting does not cover. Use privfl's SecAggPlusWorkflow (it releases noise only) "
                "or a larger num_sampled_clients"
            )
        return selected

    def sample_round(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, FitIns]] | None:
        """The round's Poisson sample with its instructions (possibly empty); None once the budget stops the run."""
        # Nodes register with the client manager asynchronously: wait for the inner strategy's minimum.
        needed = max(1, int(getattr(self.strategy, "min_available_clients", 1)))
        # num_available() refreshes the node list now (Flower's wrapper); wait_for() only sleeps on it.
        if client_manager.num_available() < needed and not client_manager.wait_for(needed, self.wait_timeout):
            raise ProtocolAbort(
                f"round {server_round}: fewer than {needed} nodes connected after {self.wait_timeout} s"
            )
        clients = {proxy.node_id: proxy for proxy in client_manager.all().values()}
        node_map = NodeMap.from_flower_ids(clients)
        rate = min(1.0, self.num_sampled_clients / len(clients))
        try:
            self.dp.ledger.check(PoissonSampledEvent(rate, GaussianEvent(self.noise_multiplier)))
        except BudgetExceededError as exc:
            logger.warning("privfl: round %d not run, privacy budget reached: %s", server_round, exc)
            return None
        # The inner strategy's round config, without its own (fixed-size, blocking) client sampling.
        on_fit_config = getattr(self.strategy, "on_fit_config_fn", None)
        config: dict[str, Scalar] = dict(on_fit_config(server_round)) if on_fit_config else {}
        config[CLIPPING_NORM] = float(self.dp.clip_norm)
        # Poisson sampling: each node independently with probability q, from the OS CSPRNG.
        chosen = [fid for fid in node_map.flower_ids if secrets.randbelow(1 << 53) < rate * (1 << 53)]
        self.node_map = node_map
        self._proxies = {node_map.to_privfl(fid): clients[fid] for fid in chosen}
        self.last_round = RoundSpec(
            run_id=self.run_id,
            server_round=server_round,
            nodes=tuple(sorted(self._proxies)),
            parameters=parameters_to_arrays(parameters),
            config=dict(config),
            sampling=SamplingInfo(population=len(clients), rate=rate, poisson=True),
        )
        logger.info(
            "privfl: round %d Poisson-sampled %d of %d nodes (q = %g)", server_round, len(chosen), len(clients), rate
        )
        fit_ins = FitIns(parameters, config)
        return [(clients[fid], fit_ins) for fid in chosen]

    def _release(self, spec: RoundSpec, results: list[tuple[ClientProxy, FitRes]]) -> Aggregate:
        """Run the DP mechanism over plain per-client results (the default, non-SecAgg fit workflow)."""
        assert self.node_map is not None
        replies = []
        for proxy, res in results:
            node = self.node_map.to_privfl(proxy.node_id)
            md = Metadata(spec.run_id, spec.server_round, node, SERVER_NODE_ID, MessageKind.TRAIN)
            arrays = dict(zip(spec.parameters, parameters_to_arrays(res.parameters).values(), strict=False))
            metrics = {k: v for k, v in res.metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
            replies.append(Message(md, arrays=arrays, metrics={**metrics, NUM_EXAMPLES: int(res.num_examples)}))
        return drive(self.dp.aggregate(spec), lambda outbox: iter(replies))

    def aggregate_fit(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[tuple[ClientProxy, FitRes] | BaseException],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        spec = self.last_round
        if spec is None or spec.server_round != server_round:
            raise ConfigError(f"aggregate_fit for round {server_round} without configure_fit for it")
        for failure in failures:
            logger.error("privfl: round %d: a sampled client failed: %s", server_round, _describe(failure))
        if failures and not results:
            # Every sampled client failed: a configuration error, not dropouts. Stop the run loudly
            # instead of releasing noise rounds that keep the initial model.
            raise ProtocolAbort(
                f"round {server_round}: all {len(failures)} sampled clients failed, e.g. {_describe(failures[0])}"
            )
        agg = self._release(spec, results)
        return self.finish_round(spec, agg, results, failures)

    def finish_round(
        self,
        spec: RoundSpec,
        agg: Aggregate,
        results: Sequence[tuple[ClientProxy, FitRes]],
        failures: list[Any],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        """Hand the released model to the inner strategy; add privfl's metrics; save the ledger."""
        mean = {k: agg.update_sum[k] / agg.weight_sum for k in spec.parameters}
        new = [(v + mean[k]).astype(v.dtype, copy=False) for k, v in spec.parameters.items()]
        released = ndarrays_to_parameters(new)
        inner_results = [
            (proxy, FitRes(Status(Code.OK, "Success"), released, max(int(res.num_examples), 1), res.metrics))
            for proxy, res in results
        ]
        if not inner_results:  # nobody contributed: the noise alone is released (DP-FedAvg, McMahan et al.)
            parameters, metrics = released, {}
        else:
            parameters, metrics = self.strategy.aggregate_fit(spec.server_round, inner_results, failures)
        metrics = {**metrics, **round_metrics(agg.metrics)}
        metrics["dp-epsilon"] = self.dp.ledger.epsilon(self.delta)
        if self.ledger_path is not None:
            self.dp.ledger.save(self.ledger_path)
        logger.info(
            "privfl: round %d released with noise std %g, epsilon %.4g at delta %g",
            spec.server_round,
            agg.metrics.get("dp_noise_std", float("nan")),
            metrics["dp-epsilon"],
            self.delta,
        )
        return parameters, metrics

    def configure_evaluate(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, EvaluateIns]]:
        return self.strategy.configure_evaluate(server_round, parameters, client_manager)

    def aggregate_evaluate(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, EvaluateRes]],
        failures: list[tuple[ClientProxy, EvaluateRes] | BaseException],
    ) -> tuple[float | None, dict[str, Scalar]]:
        return self.strategy.aggregate_evaluate(server_round, results, failures)

    def evaluate(self, server_round: int, parameters: Parameters) -> tuple[float, dict[str, Scalar]] | None:
        return self.strategy.evaluate(server_round, parameters)


class DifferentialPrivacyClientSideFixedClipping(PrivflDpStrategy):
    """Clients clip to ``clipping_norm`` (privfl's ``fixedclipping_mod``); the server adds N(0, (z C)^2) to the sum.

    Works with the default fit workflow and with privfl's ``SecAggPlusWorkflow``
    (the noise is then added to the unmasked sum, and covers SecAgg+ rounding).
    """

    def __init__(
        self, strategy: Strategy, noise_multiplier: float, clipping_norm: float, num_sampled_clients: int, **kwargs: Any
    ) -> None:
        self._args = (noise_multiplier, clipping_norm)
        super().__init__(strategy, num_sampled_clients=num_sampled_clients, **kwargs)

    def mechanism(self) -> CentralDp:
        z, c = self._args
        budget = self.budget
        return CentralDp.with_server_clipping(noise_multiplier=z, clip_norm=c, budget=budget, delta=self.delta)

    def wrap_secure_sum(self, secure_sum: Aggregator) -> Aggregator:
        self.dp.inner = secure_sum
        return self.dp

    def _release(self, spec: RoundSpec, results: list[tuple[ClientProxy, FitRes]]) -> Aggregate:
        # The clients clipped; the plain path checks it too (an unclipped update is clipped here).
        self.dp.inner = PlainAggregator(weighting="uniform", transform=ClipEachUpdate(self.dp.clip_norm))
        return super()._release(spec, results)


class DifferentialPrivacyServerSideFixedClipping(DifferentialPrivacyClientSideFixedClipping):
    """The server clips each update to ``clipping_norm`` in the clear, then adds N(0, (z C)^2) to the sum."""

    def wrap_secure_sum(self, secure_sum: Aggregator) -> Aggregator:
        return PrivflDpStrategy.wrap_secure_sum(self, secure_sum)


class DifferentialPrivacyServerSideAdaptiveClipping(PrivflDpStrategy):
    """Server-side clipping at a norm that tracks a quantile of update norms (Andrew et al., NeurIPS 2021).

    Arguments after ``num_sampled_clients`` keep Flower's names: ``initial_clipping_norm``,
    ``target_clipped_quantile``, ``clip_norm_lr`` and ``clipped_count_stddev`` (default:
    expected clients / 20, as Andrew et al. suggest, and above z / 2).
    """

    def __init__(
        self,
        strategy: Strategy,
        noise_multiplier: float,
        num_sampled_clients: int,
        initial_clipping_norm: float = 0.1,
        target_clipped_quantile: float = 0.5,
        clip_norm_lr: float = 0.2,
        clipped_count_stddev: float | None = None,
        **kwargs: Any,
    ) -> None:
        if clipped_count_stddev is None:
            clipped_count_stddev = max(num_sampled_clients / 20.0, 0.51 * noise_multiplier)
        self._args = (
            noise_multiplier,
            initial_clipping_norm,
            target_clipped_quantile,
            clip_norm_lr,
            clipped_count_stddev,
        )
        super().__init__(strategy, num_sampled_clients=num_sampled_clients, **kwargs)

    def mechanism(self) -> AdaptiveClippingDp:
        z, c0, gamma, eta, sigma_b = self._args
        return AdaptiveClippingDp(
            noise_multiplier=z,
            initial_clip_norm=c0,
            count_noise_std=sigma_b,
            target_quantile=gamma,
            clip_learning_rate=eta,
            budget=self.budget,
            delta=self.delta,
        )
