"""privfl's SecAgg+ as a Flower fit workflow: a drop-in for Flower's ``SecAggPlusWorkflow``.

Use it where Flower's goes::

    workflow = DefaultWorkflow(fit_workflow=SecAggPlusWorkflow(num_shares=7, reconstruction_threshold=4))
    workflow(grid, LegacyContext(context=context, config=ServerConfig(num_rounds=3), strategy=strategy))

Each round it asks the Flower strategy for the round's clients and config
(``configure_fit``), runs privfl's SecAgg+ protocol (Bonawitz et al. CCS'17 with
the sparse graph of Bell et al. CCS'20: authenticated share transport, dropout
recovery, client-side threshold checks) over the grid with privfl's
``secaggplus_mod`` on the clients, and gives the strategy the unmasked mean
(``aggregate_fit`` sees one result per contributing client, each holding the
aggregated model, as with Flower's workflow). With privfl's central-DP strategy
wrappers the strategy's Poisson sample is used and the DP noise is added to the
unmasked sum, covering SecAgg+'s rounding.

Constructor names follow Flower's where the meaning is the same:

- ``num_shares``: shares of each secret, k + 1 (k neighbours and the client itself);
  ``None`` (default) for privfl's choice from the number of sampled clients.
- ``reconstruction_threshold``: t, shares needed to reconstruct; must exceed k / 2
  (so two disjoint groups can never both reconstruct); ``None`` for privfl's.
- ``clipping_range``: per-coordinate bound of the update before quantisation.
- ``quantization_range``: number of quantisation levels, a power of two (2^bits);
  privfl's default is 2^16.
- ``modulus_range``: optional, a power of two; privfl otherwise picks the smallest
  modulus at which the sum cannot wrap, and refuses one at which it could.
- ``max_weight``: cap on a client's example count (weights are 1 under central DP).
- ``timeout``: seconds each stage waits for replies; a node that does not answer
  has dropped out.

Trust model: as Flower's, the server is trusted to follow the protocol (privfl's
``semi_honest=True``): it learns only the sum of the sampled clients' updates while it
does. Against an actively malicious server use privfl's own server loop with a signed
roster (``SecAggPlusAggregator(..., roster=...)``, ``SecAggMod(trust=...)``); this
workflow does not carry rosters yet.

A client that fails a stage (a ClientApp error, a malformed reply) is a dropout,
logged at ERROR with its node and reason; a round that cannot complete raises
:class:`~privfl.errors.ProtocolAbort` after an ERROR log line naming the cause, so
the ServerApp fails instead of keeping the old model with "0 results".
"""

from __future__ import annotations

import dataclasses
import logging

from flwr.common import Code, FitRes, Status, ndarrays_to_parameters
from flwr.compat.common import recorddict_compat as compat
from flwr.server.compat.legacy_context import LegacyContext
from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD
from flwr.server.workflow.constant import Key as WorkflowKey
from flwr.serverapp import Grid

from privfl.core.exchange import Aggregate, RoundSpec, SamplingInfo
from privfl.core.plain import PlainAggregator
from privfl.errors import ConfigError, ProtocolAbort
from privfl.integrations.flower.convert import NodeMap
from privfl.integrations.flower.names import round_metrics
from privfl.integrations.flower.server import GridClients
from privfl.integrations.flower.strategy import PrivflDpStrategy, parameters_to_arrays
from privfl.secagg import SecAggConfig, SecAggPlusAggregator
from privfl.secagg.params import smallest_secure_threshold
from privfl.server.transport import drive

logger = logging.getLogger(__name__)

MIN_NODES = 2
"""Fewest sampled clients a SecAgg+ round runs with (privfl's graph needs n >= 2)."""


def _log2_exact(name: str, value: int | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 2 or value & (value - 1):
        raise ConfigError(f"{name} must be a power of two >= 2, got {value!r}")
    return value.bit_length() - 1


class SecAggPlusWorkflow:
    """privfl's SecAgg+ as the ``fit_workflow`` of Flower's ``DefaultWorkflow`` (see the module docstring)."""

    def __init__(
        self,
        num_shares: int | None = None,
        reconstruction_threshold: int | None = None,
        *,
        max_weight: int = 1000,
        clipping_range: float = 8.0,
        quantization_range: int = 1 << 16,
        modulus_range: int | None = None,
        timeout: float | None = 3600.0,
    ) -> None:
        for name, value in (("num_shares", num_shares), ("reconstruction_threshold", reconstruction_threshold)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise ConfigError(f"{name} must be an int or None (privfl's choice), got {value!r}")
        if num_shares is not None and num_shares < 3:
            raise ConfigError(f"num_shares must be >= 3 (two neighbours and the client), got {num_shares}")
        if reconstruction_threshold is not None:
            if num_shares is None:
                raise ConfigError("an explicit reconstruction_threshold needs an explicit num_shares")
            if not (num_shares - 1) / 2 < reconstruction_threshold <= num_shares - 1:
                raise ConfigError(
                    f"reconstruction_threshold must satisfy k/2 < t <= k with k = num_shares - 1 = {num_shares - 1}, "
                    f"got {reconstruction_threshold}: a smaller t lets two disjoint groups both reconstruct"
                )
        self.num_shares = num_shares
        self.reconstruction_threshold = reconstruction_threshold
        self.bits = _log2_exact("quantization_range", quantization_range)
        self.modulus_bits = _log2_exact("modulus_range", modulus_range)
        self.max_weight = int(max_weight)
        self.clipping_range = float(clipping_range)
        self.timeout = timeout
        # Checks clip and bits now, not in round 1.
        SecAggConfig(coordinate_bound=self.clipping_range, bits=self.bits or 16, max_weight=self.max_weight)

    def secagg_config(self, num_nodes: int, *, uniform: bool) -> SecAggConfig:
        """The round's SecAgg+ settings for ``num_nodes`` sampled clients (k capped at n - 1)."""
        k = t = None
        if self.num_shares is not None:
            k = min(self.num_shares - 1, num_nodes - 1)
            if k % 2 and num_nodes % 2:
                k -= 1  # no k-regular graph on n nodes when both are odd
            t = min(self.reconstruction_threshold or k // 2 + 1, k)
            t = max(t, k // 2 + 1)  # a smaller k must keep t > k / 2
            k, t = self._secure(num_nodes, k, t)
        return SecAggConfig(
            coordinate_bound=self.clipping_range,
            bits=self.bits or 16,
            max_weight=1 if uniform else self.max_weight,
            weighting="uniform" if uniform else "examples",
            num_neighbours=k,
            threshold=t,
            modulus_bits=self.modulus_bits,
        )

    @staticmethod
    def _secure(num_nodes: int, k: int, t: int) -> tuple[int | None, int | None]:
        """(k, t) raised to privfl's security floor for n (Bell et al. CCS'20 bounds, privfl.secagg.params).

        Flower's settings can be insecure for some n (e.g. k = 6, t = 4 beyond n = 20 at 5%
        corrupted clients); privfl's clients would refuse them. The threshold is raised to
        the smallest secure one, or (k, t) left to privfl when no t is secure for this k,
        with a WARNING either way.
        """
        defaults = SecAggConfig()
        try:
            floor = smallest_secure_threshold(
                num_nodes, k, corruption=defaults.corruption, security_bits=defaults.security_bits
            )
        except ConfigError as exc:
            logger.warning(
                "privfl SecAgg+: num_shares = %d unsafe at n = %d (%s); privfl chooses k, t", k + 1, num_nodes, exc
            )
            return None, None
        if t < floor:
            logger.warning(
                "privfl SecAgg+: reconstruction_threshold %d below the security floor %d for n = %d, k = %d; using %d",
                t,
                floor,
                num_nodes,
                k,
                floor,
            )
        return k, max(t, floor)

    def __call__(self, grid: Grid, context: LegacyContext) -> None:
        if not isinstance(context, LegacyContext):
            raise TypeError(f"SecAggPlusWorkflow needs a LegacyContext, got {type(context).__name__}")
        current_round = int(context.state.config_records[MAIN_CONFIGS_RECORD][WorkflowKey.CURRENT_ROUND])
        parameters = compat.arrayrecord_to_parameters(context.state.array_records[MAIN_PARAMS_RECORD], keep_input=True)
        strategy = context.strategy
        dp = strategy if isinstance(strategy, PrivflDpStrategy) else None
        if dp is not None:
            selected = dp.sample_round(current_round, parameters, context.client_manager)
        else:
            selected = strategy.configure_fit(current_round, parameters, context.client_manager)
        if selected is None or (dp is None and not selected):
            logger.info("privfl SecAgg+: round %d: no clients selected, round skipped", current_round)
            return
        proxies = {proxy.node_id: proxy for proxy, _ in selected}
        if dp is not None:
            assert dp.last_round is not None and dp.node_map is not None
            spec, node_map = dp.last_round, dp.node_map
        else:
            node_map = NodeMap.from_flower_ids(p.node_id for p in context.client_manager.all().values())
            configs = [dict(ins.config) for _, ins in selected]
            if any(c != configs[0] for c in configs):
                raise ConfigError("privfl's SecAggPlusWorkflow needs one fit config for all sampled clients")
            spec = RoundSpec(
                run_id=0,
                server_round=current_round,
                nodes=tuple(sorted(node_map.to_privfl(fid) for fid in proxies)),
                parameters=parameters_to_arrays(parameters),
                config=configs[0],
                sampling=SamplingInfo(len(node_map.flower_ids), len(proxies) / len(node_map.flower_ids), False),
            )
        if len(spec.nodes) >= MIN_NODES:
            secure_sum = SecAggPlusAggregator(
                self.secagg_config(len(spec.nodes), uniform=dp is not None), semi_honest=True
            )
            aggregator = dp.wrap_secure_sum(secure_sum) if dp is not None else secure_sum
        elif dp is None:
            logger.warning(
                "privfl SecAgg+: round %d: %d client(s) sampled, need %d; skipped",
                current_round,
                len(spec.nodes),
                MIN_NODES,
            )
            return
        else:
            # A sum of fewer than two updates is no secret: collect none, and release the DP noise alone
            # (the Poisson-subsampled Gaussian's output when nobody contributes), charged as usual.
            logger.warning(
                "privfl SecAgg+: round %d: %d client(s) sampled, fewer than secure aggregation needs (%d): "
                "no update is collected and the round releases DP noise only",
                current_round,
                len(spec.nodes),
                MIN_NODES,
            )
            spec = dataclasses.replace(spec, nodes=())
            aggregator = dp.wrap_secure_sum(PlainAggregator(weighting="uniform"))
        clients = GridClients(grid, node_map, timeout=self.timeout, on_client_error="drop")
        logger.info("privfl SecAgg+: round %d with %d clients", current_round, len(spec.nodes))
        try:
            agg = drive(aggregator.aggregate(spec), clients.deliver)
        except ProtocolAbort as exc:
            logger.error("privfl SecAgg+: round %d aborted, model unchanged: %s", current_round, exc)
            raise
        results = self._results(agg, spec, node_map, proxies)
        if dp is not None:
            new_parameters, metrics = dp.finish_round(spec, agg, results, [])
        else:
            new_parameters, metrics = strategy.aggregate_fit(current_round, results, [])
            metrics = {**metrics, **round_metrics(agg.metrics)}
        logger.info(
            "privfl SecAgg+: round %d aggregated %d clients (%d dropped)",
            current_round,
            agg.num_clients,
            len(agg.dropped),
        )
        if new_parameters is not None:
            context.state.array_records[MAIN_PARAMS_RECORD] = compat.parameters_to_arrayrecord(new_parameters, True)
            context.history.add_metrics_distributed_fit(server_round=current_round, metrics=metrics)

    @staticmethod
    def _results(agg: Aggregate, spec: RoundSpec, node_map: NodeMap, proxies: dict) -> list:
        """One Flower result per contributing client, each holding the aggregated model (Flower's convention)."""
        if not agg.weight_sum > 0:
            raise ProtocolAbort(f"round {spec.server_round}: no client contributed to the secure sum")
        mean = {k: agg.update_sum[k] / agg.weight_sum for k in spec.parameters}
        model = ndarrays_to_parameters([(v + mean[k]).astype(v.dtype, copy=False) for k, v in spec.parameters.items()])
        ok = Status(Code.OK, "Success")
        return [
            (proxies[node_map.to_flower(r.node_id)], FitRes(ok, model, max(r.num_examples, 1), dict(r.metrics)))
            for r in agg.results
        ]
