"""Run any privfl server strategy over Flower's ``Grid``, inside a Flower ``ServerApp``.

Every privfl server protocol (plain FedAvg, central DP, SecAgg+, CKKS) is a
sans-IO exchange; :class:`GridClients` moves its messages with
``grid.send_and_receive`` and :func:`run_on_grid` runs rounds exactly as the
bundled loop does (same sampling streams, abort and budget rules, evaluation and
history), so the same seeds and inputs give the same model and privacy ledger.

Example::

    app = flwr.serverapp.ServerApp()

    @app.main()
    def main(grid, context):
        result = run_on_grid(grid, min_nodes=10, initial_parameters=params,
                             num_rounds=5, strategy=FedAvg(aggregator=...))
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterator, Sequence
from typing import Any

from flwr.common.constant import ErrorCode
from flwr.serverapp import Grid

from privfl.core.message import ArrayDict, Message
from privfl.core.wire import encode
from privfl.errors import ConfigError
from privfl.integrations.flower.convert import NodeMap, from_flower_reply, to_flower
from privfl.server.failures import FailureInjector, FailurePlan
from privfl.server.history import RoundRecord
from privfl.server.run_config import RunConfig
from privfl.server.simulation import SimulationResult, run_rounds
from privfl.server.transport import ClientError, TrafficCounter

logger = logging.getLogger(__name__)

DROPOUT_ERRORS = frozenset(
    {ErrorCode.MESSAGE_UNAVAILABLE, ErrorCode.REPLY_MESSAGE_UNAVAILABLE, ErrorCode.NODE_UNAVAILABLE}
)
"""Flower error codes that mean the node dropped out (no reply), not that the ClientApp failed."""


class GridClients:
    """privfl's client transport over a Flower ``Grid``: one ``send_and_receive`` per protocol stage.

    ``traffic`` counts the privfl wire size of each message, the unit the bundled
    loop reports, so the two runtimes' round records compare directly.

    Args:
        grid: the ServerApp's grid.
        node_map: Flower node ids of the run's population.
        timeout: seconds ``send_and_receive`` waits for a stage's replies; a node
            that has not replied by then has dropped out.
        on_client_error: "raise" (:class:`~privfl.server.transport.ClientError`) or
            "drop" (treat as a dropout) when a ClientApp fails.
        failures: injected dropouts, applied before sending (as the bundled loop does).
    """

    def __init__(
        self,
        grid: Grid,
        node_map: NodeMap,
        *,
        timeout: float | None = 3600.0,
        on_client_error: str = "raise",
        failures: FailurePlan | None = None,
    ) -> None:
        if on_client_error not in ("raise", "drop"):
            raise ConfigError(f"on_client_error must be 'raise' or 'drop', got {on_client_error!r}")
        self.grid = grid
        self.node_map = node_map
        self.timeout = timeout
        self.on_client_error = on_client_error
        self.failures = FailureInjector(failures)
        self.traffic = TrafficCounter()

    def deliver(self, outbox: Sequence[Message]) -> Iterator[Message]:
        """Send ``outbox`` through the grid and yield the replies that arrive."""
        sent = [m for m in outbox if not self.failures.drops(m)]
        for message in sent:
            self.traffic.bytes_down += len(encode(message))
            self.traffic.messages_down += 1
        if not sent:
            return
        replies = self.grid.send_and_receive([to_flower(m, self.node_map) for m in sent], timeout=self.timeout)
        # In send order, as the bundled loop yields them: float sums then match bit for bit.
        order = {self.node_map.to_flower(m.metadata.dst_node): i for i, m in enumerate(sent)}
        for reply in sorted(replies, key=lambda r: order.get(r.metadata.src_node_id, len(order))):
            if reply.has_error():
                self._client_failed(reply.metadata.src_node_id, reply.error.code, reply.error.reason)
                continue
            message = from_flower_reply(reply, self.node_map)
            self.traffic.bytes_up += len(encode(message))
            self.traffic.messages_up += 1
            yield message

    def _client_failed(self, flower_id: int, code: int, reason: str | None) -> None:
        node = self.node_map.to_privfl(flower_id) if flower_id in self.node_map.flower_ids else None
        if code not in DROPOUT_ERRORS and self.on_client_error == "raise":
            raise ClientError(f"client {node} (Flower node {flower_id}) failed: error {code}: {reason}")
        log = logger.warning if code in DROPOUT_ERRORS else logger.error
        log("client %s (Flower node %s) dropped out: error %s: %s", node, flower_id, code, reason)

    def client_state(self) -> dict[str, dict[str, Any]]:
        """Empty: client state lives on the Flower nodes (in their node-local Context)."""
        return {}

    def restore_client_state(self, saved: dict[str, dict[str, Any]]) -> None:
        """Nothing to restore here: Flower nodes keep their own state."""
        del saved

    def close(self) -> None:
        """Nothing to release: the grid belongs to the ServerApp."""


def wait_for_nodes(grid: Grid, min_nodes: int, timeout: float = 120.0, poll: float = 0.1) -> NodeMap:
    """Wait until at least ``min_nodes`` nodes are connected; map all connected nodes to privfl ids 1..N."""
    if min_nodes < 1:
        raise ConfigError(f"min_nodes must be >= 1, got {min_nodes}")
    deadline = time.monotonic() + timeout
    while len(ids := list(grid.get_node_ids())) < min_nodes:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(ids)} of {min_nodes} Flower nodes connected after {timeout} s")
        time.sleep(poll)
    return NodeMap.from_flower_ids(ids)


def run_on_grid(
    grid: Grid,
    *,
    min_nodes: int,
    initial_parameters: ArrayDict,
    timeout: float | None = 3600.0,
    wait_timeout: float = 120.0,
    config: RunConfig | None = None,
    **options: Any,
) -> SimulationResult:
    """Train with a privfl strategy on the nodes of a Flower grid; call it from a ServerApp main function.

    The population is every node connected once ``min_nodes`` are (privfl ids 1..N
    in order of Flower node id); it stays fixed for the run, as DP accounting
    assumes, and a node that leaves counts as a dropout. Rounds run as in
    :func:`privfl.server.run_simulation` (the same :class:`~privfl.server.RunConfig`,
    seed streams, abort and budget rules); checkpointing, resuming and the progress
    bar are left to Flower (``checkpoint`` must be unset).

    Args:
        grid: the ServerApp's grid.
        min_nodes: nodes to wait for before round 1.
        initial_parameters: starting global model.
        timeout: seconds each protocol stage waits for replies.
        wait_timeout: seconds to wait for ``min_nodes`` nodes.
        config: the run's :class:`~privfl.server.RunConfig`.
        options: RunConfig fields (``num_rounds``, ``strategy``, ``seed``, ...), given
            instead of ``config`` or replacing its fields.
    """
    config = RunConfig.build(config, options)
    if config.checkpoint is not None:
        raise ConfigError("run_on_grid does not checkpoint (Flower runs resume through Flower); unset checkpoint")
    node_map = wait_for_nodes(grid, min_nodes, wait_timeout)
    clients = GridClients(
        grid, node_map, timeout=timeout, on_client_error=config.on_client_error, failures=config.failures
    )

    def log_round(record: RoundRecord) -> None:
        logger.info("round %d: %s", record.server_round, {**record.fit, **record.centralized})

    config = dataclasses.replace(config, progress=False, callbacks=(log_round, *config.callbacks))
    return run_rounds(clients, node_map.population, initial_parameters, config)
