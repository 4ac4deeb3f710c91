"""privfl client apps and mods inside Flower ClientApps, and parity with Flower's own fixed clipping."""

from __future__ import annotations

import flwr  # noqa: F401
import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, MetricRecord, RecordDict
from flwr.app import Message as FlowerMessage
from flwr.client import NumPyClient as FlowerNumPyClient
from flwr.clientapp import ClientApp as FlowerClientApp
from flwr.clientapp.mod import fixedclipping_mod
from flwr.serverapp.strategy import DifferentialPrivacyClientSideFixedClipping
from flwr.serverapp.strategy import FedAvg as FlowerFedAvg

from privfl.client import ClientApp
from privfl.core.message import Message, MessageKind, Metadata
from privfl.integrations.flower.client import flower_client_app, flower_mod
from privfl.integrations.flower.convert import from_recorddict, to_recorddict
from privfl.integrations.flower.state import STATE_RECORD

FLOWER_NODE = 2**64 - 3  # Flower node ids use all 64 bits


def flower_context(node_id: int = FLOWER_NODE, run_id: int = 5) -> Context:
    return Context(run_id=run_id, node_id=node_id, node_config={}, state=RecordDict(), run_config={"lr": 0.1})


def instruction(message: Message, *, envelope: bool = True, group_id: str = "") -> FlowerMessage:
    return FlowerMessage(
        to_recorddict(message, envelope=envelope),
        dst_node_id=FLOWER_NODE,
        message_type=message.metadata.kind.value,
        group_id=group_id or str(message.metadata.server_round),
    )


class ExistingFlowerClient(FlowerNumPyClient):
    """A Flower NumPyClient as users already have it: adds 0.5 to every parameter."""

    def get_parameters(self, config):
        return [np.zeros(3)]

    def fit(self, parameters, config):
        return [p + 0.5 for p in parameters], 12, {"seen_round": int(config["server_round"])}

    def evaluate(self, parameters, config):
        return float(np.sum(parameters[0])), 12, {"accuracy": 0.75}


class CountCalls:
    """A stateful privfl mod: counts messages in the node's privfl context."""

    def __call__(self, message, context, call_next):
        counter = context.get_or_create("test.count", lambda: [0])
        counter[0] += 1
        reply = call_next(message, context)
        return reply.replace(metrics={**reply.metrics, "calls": counter[0]})


@pytest.mark.usefixtures("flower_task")
def test_flower_numpy_client_runs_unchanged_behind_privfl_mods_on_flower() -> None:
    app = flower_client_app(ClientApp(lambda node: ExistingFlowerClient(), mods=[CountCalls()]))
    ctx = flower_context()
    md = Metadata(3, 2, 0, 4, MessageKind.TRAIN)
    train = Message(md, arrays={"w": np.arange(3.0)}, config={"server_round": 2})
    for _ in range(2):
        reply = app(instruction(train), ctx)
        got = from_recorddict(reply.content, MessageKind.TRAIN)
        assert got.metadata == Metadata(3, 2, 4, 0, MessageKind.TRAIN)
        np.testing.assert_array_equal(got.arrays["w"], np.arange(3.0) + 0.5)
        # A non-Stateful object is a cache: nothing keeps it between messages (any may run in a new process).
        assert got.metrics == {"seen_round": 2, "num_examples": 12, "calls": 1}
    assert dict(ctx.state[STATE_RECORD]) == {"saved": b"", "sealed": b"", "sealed_at": [3, 2]}
    evaluate = Message(Metadata(3, 2, 0, 4, MessageKind.EVALUATE), arrays={"w": np.ones(3)})
    got = from_recorddict(app(instruction(evaluate), ctx).content, MessageKind.EVALUATE)
    assert got.metrics == {"accuracy": 0.75, "loss": 3.0, "num_examples": 12, "calls": 1}


@pytest.mark.usefixtures("flower_task")
def test_local_dp_ledger_follows_the_node_in_flowers_context_state() -> None:
    """Flower's deployment runtime runs one ClientApp process per message: the ledger must survive it."""
    import privfl.dp as dp

    local_dp = dp.LocalDpMod(clip_norm=1.0, epsilon=1.0, delta=1e-5, rng=np.random.default_rng(0))
    seen = []

    def spy(message, context, call_next):
        reply = call_next(message, context)
        seen.append(local_dp.ledger(context))
        return reply

    app = flower_client_app(ClientApp(lambda node: ExistingFlowerClient(), mods=[spy, local_dp]))
    ctx = flower_context(run_id=8)
    for rnd in (1, 2, 3):
        train = Message(Metadata(3, rnd, 0, 4, MessageKind.TRAIN), arrays={"w": np.zeros(3)})
        app(instruction(train), ctx)
    assert [len(ledger.entries) for ledger in seen] == [1, 2, 3]  # composed over the messages, none lost


def flower_message_api_app(mods: list) -> FlowerClientApp:
    """An existing Flower Message-API ClientApp; its training adds a fixed update of L2 norm 5."""
    app = FlowerClientApp(mods=mods)

    @app.train()
    def train(msg: FlowerMessage, context: Context) -> FlowerMessage:
        arrays = msg.content["arrays"]
        update = {"w": np.array([3.0, 4.0], dtype=arrays["w"].dtype), "b": np.zeros(1, dtype=arrays["b"].dtype)}
        new = ArrayRecord({k: Array(v.numpy() + update[k]) for k, v in arrays.items()})
        return FlowerMessage(RecordDict({"arrays": new, "metrics": MetricRecord({"num-examples": 8})}), reply_to=msg)

    return app


class StubGrid:
    """Just enough of a Flower Grid for a strategy to configure a round."""

    def get_node_ids(self):
        return [FLOWER_NODE]


@pytest.mark.usefixtures("flower_task")
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("clip", [1.0, 2.5, 5.0, 9.0])
def test_privfl_fixed_clipping_matches_flower_fixedclipping_mod(dtype: type, clip: float) -> None:
    import privfl.dp as dp

    strategy = DifferentialPrivacyClientSideFixedClipping(
        FlowerFedAvg(fraction_train=1.0, min_train_nodes=1, min_available_nodes=1),
        noise_multiplier=1.0,
        clipping_norm=clip,
        num_sampled_clients=1,
    )
    global_model = ArrayRecord({"w": Array(np.array([0.25, -1.0], dtype=dtype)), "b": Array(np.ones(1, dtype=dtype))})
    (task,) = strategy.configure_train(1, global_model, ConfigRecord({"lr": 0.1}), StubGrid())
    assert task.content["config"]["clipping_norm"] == clip

    flower = flower_message_api_app([fixedclipping_mod])(task, flower_context())
    privfl = flower_message_api_app([flower_mod(dp.FixedClippingMod(clip))])(task, flower_context())

    assert list(privfl.content) == list(flower.content) == ["arrays", "metrics"]
    assert privfl.content["metrics"]["num-examples"] == flower.content["metrics"]["num-examples"] == 8
    for name in ("w", "b"):
        ours, theirs = privfl.content["arrays"][name].numpy(), flower.content["arrays"][name].numpy()
        assert ours.dtype == theirs.dtype == dtype
        np.testing.assert_allclose(ours, theirs, rtol=1e-6 if dtype == np.float32 else 1e-13, atol=0)
    update = privfl.content["arrays"]["w"].numpy().astype(np.float64) - global_model["w"].numpy()
    assert np.linalg.norm(update) <= min(clip, 5.0) * (1 + 1e-12)
    np.testing.assert_allclose(np.linalg.norm(update), min(clip, 5.0), rtol=1e-6)


@pytest.mark.usefixtures("flower_task")
def test_messages_from_flower_strategies_take_round_and_ids_from_flower() -> None:
    seen = []

    def spy(message, context, call_next):
        seen.append((message.metadata, context.node_id, dict(message.config)))
        return call_next(message, context)

    app = flower_message_api_app([flower_mod(spy)])
    model = Message(Metadata(0, 0, 0, 0, MessageKind.TRAIN), arrays={"w": np.zeros(2), "b": np.zeros(1)})
    reply = app(instruction(model, envelope=False, group_id="7"), flower_context())
    (md, node, config) = seen[0]
    assert (md.server_round, md.src_node, md.dst_node, node) == (7, 0, FLOWER_NODE & (2**63 - 1), md.dst_node)
    assert config == {}
    assert list(reply.content) == ["arrays", "metrics"]  # no privfl metadata for a Flower strategy
    assert dict(reply.content["metrics"]) == {"num-examples": 8}  # Flower's key kept for Flower strategies
