"""privfl over a Flower Grid without Ray: reply order, dropouts, failures, spoofing, SecAgg+ in a Flower app, CKKS."""

from __future__ import annotations

import flwr  # noqa: F401
import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, Context, Error, MetricRecord, RecordDict
from flwr.app import Message as FlowerMessage
from flwr.clientapp import ClientApp as FlowerClientApp
from flwr.common.constant import ErrorCode

from privfl.client import ClientApp, NumPyClient
from privfl.core.message import Message, MessageKind, Metadata
from privfl.errors import ConfigError, MessageError
from privfl.integrations.flower import (
    GridClients,
    NodeMap,
    flower_client_app,
    flower_mod,
    run_on_grid,
    wait_for_nodes,
)
from privfl.integrations.flower.convert import to_recorddict
from privfl.server import FailurePlan, FedAvg, PlainAggregator, RunConfig, run_simulation
from privfl.server.transport import ClientError

FLOWER_IDS = (2**64 - 9, 11, 2**63 + 1, 500)


class AddNode(NumPyClient):
    """Adds its node id to every parameter; 3 examples."""

    def __init__(self, node_id: int) -> None:
        self.node_id = node_id

    def fit(self, parameters, config):
        return [p + self.node_id for p in parameters], 3, {}


class InProcessGrid:
    """A Flower Grid whose nodes run a Flower ClientApp in this process and reply in reverse order.

    ``faults`` maps a Flower node id to the error code it replies with instead.
    """

    def __init__(self, client_app, faults: dict[int, int] | None = None) -> None:
        self.app = client_app
        self.faults = faults or {}
        self.contexts = {
            n: Context(run_id=1, node_id=n, node_config={}, state=RecordDict(), run_config={}) for n in FLOWER_IDS
        }
        self.sent: list[int] = []

    def get_node_ids(self):
        return list(FLOWER_IDS)

    def send_and_receive(self, messages, *, timeout=None):
        replies = []
        for message in messages:
            node = message.metadata.dst_node_id
            self.sent.append(node)
            message.metadata.__dict__["_message_id"] = f"m{len(self.sent)}"
            if node in self.faults:
                replies.append(FlowerMessage(Error(code=self.faults[node], reason="boom"), reply_to=message))
            else:
                reply = self.app(message, self.contexts[node])
                reply.metadata.__dict__["_src_node_id"] = node
                replies.append(reply)
        return replies[::-1]


APP = flower_client_app(ClientApp(AddNode))
MODEL = {"w": np.zeros(3), "b": np.zeros(2)}


@pytest.mark.usefixtures("flower_task")
def test_run_on_grid_equals_bundled_loop_even_when_replies_arrive_reversed() -> None:
    run = {"num_rounds": 2, "initial_parameters": MODEL, "seed": 1}
    uniform = PlainAggregator(weighting="uniform")
    result = run_on_grid(InProcessGrid(APP), min_nodes=4, strategy=FedAvg(aggregator=uniform), **run)
    reference = run_simulation(
        ClientApp(AddNode), num_clients=4, strategy=FedAvg(aggregator=uniform), progress=False, **run
    )
    for name in MODEL:
        assert result.parameters[name].tobytes() == reference.parameters[name].tobytes()
    np.testing.assert_array_equal(result.parameters["w"], np.full(3, 5.0))  # 2 rounds of mean(1..4)
    assert [r.bytes_down for r in result.history.rounds] == [r.bytes_down for r in reference.history.rounds]


@pytest.mark.usefixtures("flower_task")
def test_one_run_config_drives_the_grid_and_the_bundled_loop_alike(tmp_path) -> None:
    def config() -> RunConfig:
        return RunConfig(num_rounds=2, strategy=FedAvg(aggregator=PlainAggregator("uniform")), seed=1, progress=False)

    on_grid = run_on_grid(InProcessGrid(APP), min_nodes=4, initial_parameters=MODEL, config=config())
    bundled = run_simulation(ClientApp(AddNode), num_clients=4, initial_parameters=MODEL, config=config())
    assert on_grid.parameters["w"].tobytes() == bundled.parameters["w"].tobytes()
    with pytest.raises(ConfigError, match="checkpoint"):  # Flower runs resume through Flower
        run_on_grid(InProcessGrid(APP), min_nodes=4, initial_parameters=MODEL, config=config(), checkpoint=tmp_path)


@pytest.mark.usefixtures("flower_task")
def test_unavailable_nodes_are_dropouts_and_failed_clientapps_raise_or_drop() -> None:
    node_map = NodeMap.from_flower_ids(FLOWER_IDS)
    outbox = [Message(Metadata(0, 1, 0, n, MessageKind.TRAIN), arrays=dict(MODEL)) for n in node_map.population]
    unavailable = InProcessGrid(APP, faults={node_map.to_flower(2): ErrorCode.NODE_UNAVAILABLE})
    replies = list(GridClients(unavailable, node_map).deliver(outbox))
    assert [r.metadata.src_node for r in replies] == [1, 3, 4]  # send order, node 2 missing
    crashed = InProcessGrid(APP, faults={node_map.to_flower(3): ErrorCode.CLIENT_APP_RAISED_EXCEPTION})
    with pytest.raises(ClientError, match=r"client 3 .* error 2: boom"):
        list(GridClients(crashed, node_map).deliver(outbox))
    replies = list(GridClients(crashed, node_map, on_client_error="drop").deliver(outbox))
    assert [r.metadata.src_node for r in replies] == [1, 2, 4]


@pytest.mark.usefixtures("flower_task")
def test_injected_failures_are_never_sent() -> None:
    node_map = NodeMap.from_flower_ids(FLOWER_IDS)
    grid = InProcessGrid(APP)
    clients = GridClients(grid, node_map, failures=FailurePlan.script([(1, "train", 4)]))
    outbox = [Message(Metadata(0, 1, 0, n, MessageKind.TRAIN), arrays=dict(MODEL)) for n in node_map.population]
    assert [r.metadata.src_node for r in clients.deliver(outbox)] == [1, 2, 3]
    assert grid.sent == [node_map.to_flower(n) for n in (1, 2, 3)]
    assert clients.traffic.messages_down == clients.traffic.messages_up == 3


@pytest.mark.usefixtures("flower_task")
def test_a_node_answering_for_another_is_refused() -> None:
    node_map = NodeMap.from_flower_ids(FLOWER_IDS)

    def impostor(message: FlowerMessage, context: Context) -> FlowerMessage:
        forged = Message(Metadata(0, 1, 4, 0, MessageKind.TRAIN), arrays=dict(MODEL), metrics={"num_examples": 3})
        return FlowerMessage(to_recorddict(forged), reply_to=message)

    clients = GridClients(InProcessGrid(impostor), node_map)
    with pytest.raises(MessageError, match="claims to be from node 4"):
        list(clients.deliver([Message(Metadata(0, 1, 0, 1, MessageKind.TRAIN), arrays=dict(MODEL))]))


def test_waiting_for_nodes_times_out_with_the_count() -> None:
    class TwoNodes:
        def get_node_ids(self):
            return [5, 6]

    assert wait_for_nodes(TwoNodes(), 2).flower_ids == (5, 6)
    with pytest.raises(TimeoutError, match="2 of 3 Flower nodes"):
        wait_for_nodes(TwoNodes(), 3, timeout=0.2)


class HalfIntegerUpdate(NumPyClient):
    """Adds node-seeded half-integers: on the grid of an 8-bit, clip-127.5 SecAgg+ quantiser (no rounding)."""

    def __init__(self, node_id: int) -> None:
        self.node_id = node_id

    def fit(self, parameters, config):
        rng = np.random.default_rng([self.node_id, int(config["server_round"])])
        return [p + (rng.integers(0, 256, p.shape) - 127.5) for p in parameters], 5, {}


@pytest.mark.usefixtures("flower_task")
def test_an_existing_flower_message_api_app_gains_secagg_through_flower_mod() -> None:
    import privfl.secagg as secagg

    node_map = NodeMap.from_flower_ids(FLOWER_IDS)
    app = FlowerClientApp(mods=[flower_mod(secagg.SecAggMod(semi_honest=True))])

    @app.train()
    def train(msg: FlowerMessage, context: Context) -> FlowerMessage:  # Flower code, unaware of privfl
        node = node_map.to_privfl(context.node_id)  # the data partition this Flower node holds
        params = [a.numpy() for a in msg.content["arrays"].values()]
        new, n, _ = HalfIntegerUpdate(node).fit(params, {"server_round": msg.content["config"]["server_round"]})
        arrays = ArrayRecord(dict(zip(msg.content["arrays"].keys(), (Array(a) for a in new), strict=True)))
        return FlowerMessage(RecordDict({"arrays": arrays, "metrics": MetricRecord({"num-examples": n})}), reply_to=msg)

    config = secagg.SecAggConfig(coordinate_bound=127.5, bits=8, max_weight=1, weighting="uniform")
    run = {"num_rounds": 2, "initial_parameters": MODEL, "seed": 1}
    result = run_on_grid(
        InProcessGrid(app), min_nodes=4, strategy=FedAvg(secagg.SecAggPlusAggregator(config, semi_honest=True)), **run
    )
    reference = run_simulation(
        ClientApp(HalfIntegerUpdate, mods=[secagg.SecAggMod(semi_honest=True)]),
        num_clients=4,
        strategy=FedAvg(secagg.SecAggPlusAggregator(config, semi_honest=True)),
        progress=False,
        **run,
    )
    assert [r.num_clients for r in result.history.rounds] == [4, 4]
    for name in MODEL:
        assert result.parameters[name].tobytes() == reference.parameters[name].tobytes()


@pytest.mark.usefixtures("flower_task")
def test_ckks_aggregation_runs_over_the_grid() -> None:
    import tenseal  # noqa: F401

    import privfl.he as he
    import privfl.tasks.digits as digits

    fed = digits.DigitsFederation(num_clients=4, seed=0)
    secret = he.CkksKeys.generate(he.FL_8192)
    client = ClientApp(fed, mods=[he.CkksClientMod(secret)])
    run = {"num_rounds": 2, "initial_parameters": digits.initial_parameters(), "seed": 2}
    encrypted = run_on_grid(
        InProcessGrid(flower_client_app(client)), min_nodes=4, strategy=he.HEFedAvg(secret.public()), **run
    )
    plain = run_simulation(ClientApp(fed), num_clients=4, progress=False, **run)
    model = he.decrypt_model(encrypted.parameters, he.ClientCipher(secret))
    for name, value in plain.parameters.items():
        np.testing.assert_allclose(model[name], value, atol=1e-5)
