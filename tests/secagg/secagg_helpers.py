"""Shared SecAgg+ test harness: n clients running ``SecAggMod`` around a fixed-update client."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from privfl.client.app import ClientApp
from privfl.client.numpy_client import NumPyClient
from privfl.core.context import Context
from privfl.core.exchange import Exchange, RoundSpec, SamplingInfo
from privfl.core.message import Message
from privfl.secagg import Federation, SecAggConfig, SecAggMod, SecAggPlusClient, secagg_exchange
from privfl.secagg.server import SecAggRoundResult
from privfl.server.failures import FailureInjector, FailurePlan
from privfl.server.transport import drive


def client_update(node: int, d: int) -> np.ndarray:
    """A deterministic update in [-1, 1] (no random generator involved)."""
    return (np.sin(np.arange(d) * 0.37 * node + node) * (1.0 + 0.1 * node)).astype(np.float32)


def client_weight(node: int) -> int:
    return 3 * node + 1


class FixedClient(NumPyClient):
    def __init__(self, node: int, d: int) -> None:
        self.node, self.d = node, d

    def get_parameters(self, config: dict) -> list[np.ndarray]:
        return [np.zeros(self.d, np.float32)]

    def fit(self, parameters: list[np.ndarray], config: dict) -> tuple[list[np.ndarray], int, dict]:
        w = parameters[0]
        return [w + client_update(self.node, w.size).reshape(w.shape)], client_weight(self.node), {"loss": 0.5}

    def evaluate(self, parameters: list[np.ndarray], config: dict) -> tuple[float, int, dict]:
        return 0.0, 1, {}


class Harness:
    """Clients 1..n kept in this process; messages go straight to the app (no wire codec).

    ``active=True`` (the default) runs the active-server protocol with a federation whose
    roster declares the config's corruption (``corruption`` overrides it in both);
    ``active=False`` the semi-honest one.
    """

    def __init__(
        self,
        n: int,
        d: int,
        config: SecAggConfig,
        encoded: dict[tuple[int, int], np.ndarray],
        *,
        active: bool = True,
        corruption: float | None = None,
        client: type[SecAggPlusClient] = SecAggPlusClient,
    ) -> None:
        self.nodes = tuple(range(1, n + 1))
        self.d = d
        if corruption is not None:
            config = dataclasses.replace(config, corruption=corruption)
        self.config = config
        self.federation = (
            Federation.generate(self.nodes, config.corruption, int(config.security_bits)) if active else None
        )
        trust = self.federation.trust if self.federation else None
        self.mod = SecAggMod(trust=trust, semi_honest=trust is None, _client=client)
        self.app = ClientApp(lambda node: FixedClient(node, d), mods=[self.mod])
        self.contexts = {u: Context(node_id=u) for u in self.nodes}
        self.parameters = {"w": np.zeros(d, np.float32)}
        self.encoded = encoded  # (round, node) -> the client's unmasked vector
        self.drops: set[tuple[str, int]] = set()
        self.failures = FailureInjector(None)

    def spec(self, server_round: int = 1, run_id: int = 7) -> RoundSpec:
        n = len(self.nodes)
        return RoundSpec(run_id, server_round, self.nodes, self.parameters, {}, SamplingInfo(n, 1.0, False))

    def exchange(self, server_round: int = 1) -> Exchange[SecAggRoundResult]:
        roster = self.federation.roster if self.federation else None
        return secagg_exchange(self.spec(server_round), self.config, roster)

    def send(self, message: Message) -> Message:
        return self.app(message, self.contexts[message.metadata.dst_node])

    def deliver(self, outbox: Sequence[Message]) -> Iterator[Message]:
        for message in outbox:
            dropped = (message.metadata.stage, message.metadata.dst_node) in self.drops
            if not dropped and not self.failures.drops(message):
                yield self.send(message)

    def run(
        self, server_round: int = 1, drops: Iterable[tuple[str, int]] = (), failures: FailurePlan | None = None
    ) -> SecAggRoundResult:
        """One round; ``drops`` lists (stage, node) dropouts, ``failures`` adds random ones."""
        self.drops = set(drops)
        self.failures = FailureInjector(failures)
        return drive(self.exchange(server_round), self.deliver)

    def expected_total(self, result: SecAggRoundResult, server_round: int = 1) -> np.ndarray:
        total = sum(self.encoded[(server_round, u)].astype(np.uint64) for u in result.survivors)
        return (total & np.uint64((1 << result.params.modulus_bits) - 1)).astype(result.total.dtype)


def run_to(exchange: Exchange, deliver, stage: str) -> list[Message]:
    """Drive ``exchange`` until it asks for ``stage``; return that outbox (not yet delivered)."""
    outbox = next(exchange)
    while outbox[0].metadata.stage != stage:
        outbox = exchange.send(iter(deliver(outbox)))
    return outbox


def finish(exchange: Exchange, deliver, outbox: list[Message]):
    """Deliver ``outbox`` and drive ``exchange`` to its result."""
    try:
        while True:
            outbox = exchange.send(iter(deliver(outbox)))
    except StopIteration as stop:
        return stop.value


def graph_of(share_keys_outbox: list[Message]) -> dict[int, tuple[int, ...]]:
    """Each asked client's live neighbours, as the server's share-keys messages list them."""
    return {m.metadata.dst_node: tuple(int(v) for v in m.arrays["secagg.peers"]) for m in share_keys_outbox}
