"""Helpers shared by the DP tests: messages, fake clients and fake aggregators."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from privfl.core.context import Context
from privfl.core.exchange import Aggregate, Exchange, RoundSpec, SamplingInfo, zeros_like
from privfl.core.message import ArrayDict, Message, MessageKind, Metadata
from privfl.core.names import NUM_EXAMPLES


def train_message(arrays: ArrayDict, *, node: int = 1, server_round: int = 1) -> Message:
    return Message(Metadata(0, server_round, 0, node, MessageKind.TRAIN), arrays=dict(arrays))


def fixed_trainer(update: ArrayDict, num_examples: int = 10) -> Callable[[Message, Context], Message]:
    """A client app whose training adds ``update`` to the received parameters."""

    def app(message: Message, context: Context) -> Message:
        new = {k: (v + update[k]).astype(v.dtype) for k, v in message.arrays.items()}
        return message.reply(arrays=new, metrics={NUM_EXAMPLES: num_examples})

    return app


def round_spec(
    parameters: ArrayDict, nodes: tuple[int, ...], *, rate: float = 0.1, population: int = 100, poisson: bool = True
) -> RoundSpec:
    return RoundSpec(
        run_id=0,
        server_round=1,
        nodes=nodes,
        parameters=parameters,
        config={},
        sampling=SamplingInfo(population=population, rate=rate, poisson=poisson),
    )


def run_exchange(exchange: Exchange, respond: Callable[[Message], Message]):
    """Drive an exchange to completion, answering every message with ``respond``; return its result."""
    try:
        outbox = next(exchange)
        while True:
            outbox = exchange.send(iter([respond(m) for m in outbox]))
    except StopIteration as stop:
        return stop.value


class FakeSecAgg:
    """A SecAgg-like inner aggregator: two stages, and the server only ever gets the sum.

    Stage 1 sends the model; stage 2 asks each client for its (already clipped) update, which
    this fake sums without keeping any single one. Uniform weights, as DP requires.
    """

    def __init__(self) -> None:
        self.rounds = 0

    def aggregate(self, spec: RoundSpec) -> Exchange[Aggregate]:
        replies = yield [spec.message_to(n, stage="fake.setup") for n in spec.nodes]
        ready = [r.metadata.src_node for r in replies]
        replies = yield [spec.message_to(n, stage="fake.masked_input") for n in ready]
        total, count = zeros_like(spec.parameters), 0
        for reply in replies:
            for name in total:
                total[name] += reply.arrays[name].astype(np.float64) - spec.parameters[name]
            count += 1
        self.rounds += 1
        return Aggregate(update_sum=total, weight_sum=float(count), num_clients=count)

    def state_dict(self) -> dict:
        return {"rounds": self.rounds}

    def load_state_dict(self, state: dict) -> None:
        self.rounds = state["rounds"]
