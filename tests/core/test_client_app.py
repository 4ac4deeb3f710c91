"""ClientApp dispatch over a NumPy-style client, and porting a Flower-style client unchanged."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest

from privfl.client.app import ClientApp
from privfl.client.numpy_client import NumPyClient
from privfl.core.context import Context
from privfl.core.message import Message, MessageKind, Metadata
from privfl.core.mods import App
from privfl.core.names import LOSS, NUM_EXAMPLES
from privfl.core.wire import decode, encode
from privfl.errors import MessageError


class AddOneClient(NumPyClient):
    """Adds 1 to every parameter; reports fixed example counts; records configs."""

    configs: ClassVar[list[dict]] = []

    def __init__(self, node_id: int) -> None:
        self.node_id = node_id

    def get_parameters(self, config):
        AddOneClient.configs.append(dict(config))
        return [np.full(2, float(self.node_id))]

    def fit(self, parameters, config):
        AddOneClient.configs.append(dict(config))
        return [p + 1 for p in parameters], 10 * self.node_id, {"acc": np.float32(0.25), "steps": 3}

    def evaluate(self, parameters, config):
        AddOneClient.configs.append(dict(config))
        return np.float64(sum(float(p.sum()) for p in parameters)), 5, {"acc": 0.5}


def msg(kind: MessageKind, dst: int = 2, arrays: dict | None = None, config: dict | None = None) -> Message:
    return Message(Metadata(4, 7, 0, dst, kind), arrays=arrays or {}, config=config or {})


@pytest.fixture(autouse=True)
def _clear_configs():
    AddOneClient.configs = []


def test_train_dispatches_to_fit_and_keeps_array_names() -> None:
    app = ClientApp(AddOneClient)
    arrays = {"w": np.zeros((2, 2)), "b": np.array([1.0, 2.0])}
    reply = app(msg(MessageKind.TRAIN, arrays=arrays, config={"lr": 0.1}), Context(node_id=2))
    assert reply.metadata == Metadata(4, 7, 2, 0, MessageKind.TRAIN)
    assert list(reply.arrays) == ["w", "b"]
    np.testing.assert_array_equal(reply.arrays["w"], np.ones((2, 2)))
    np.testing.assert_array_equal(reply.arrays["b"], [2.0, 3.0])
    assert reply.metrics == {"acc": 0.25, "steps": 3, NUM_EXAMPLES: 20}
    assert type(reply.metrics[NUM_EXAMPLES]) is int
    # server_round is added to the config the client sees.
    assert AddOneClient.configs == [{"lr": 0.1, "server_round": 7}]


def test_train_reply_survives_the_wire() -> None:
    app = ClientApp(AddOneClient)
    request = decode(encode(msg(MessageKind.TRAIN, arrays={"w": np.zeros(3, np.float32)})))
    reply = decode(encode(app(request, Context(node_id=2))))
    np.testing.assert_array_equal(reply.arrays["w"], np.ones(3, np.float32))
    assert reply.metrics[NUM_EXAMPLES] == 20


def test_server_round_in_config_is_not_overwritten() -> None:
    ClientApp(AddOneClient)(msg(MessageKind.TRAIN, config={"server_round": 99}), Context(node_id=2))
    assert AddOneClient.configs[-1]["server_round"] == 99


def test_evaluate_dispatch_reports_loss_and_num_examples() -> None:
    app = ClientApp(AddOneClient)
    reply = app(msg(MessageKind.EVALUATE, arrays={"w": np.full(3, 2.0)}), Context(node_id=2))
    assert reply.metadata.kind is MessageKind.EVALUATE
    assert reply.arrays == {}
    assert reply.metrics == {"acc": 0.5, LOSS: 6.0, NUM_EXAMPLES: 5}
    assert type(reply.metrics[LOSS]) is float


def test_query_dispatches_to_get_parameters() -> None:
    reply = ClientApp(AddOneClient)(msg(MessageKind.QUERY, dst=3), Context(node_id=3))
    assert list(reply.arrays) == ["0"]
    np.testing.assert_array_equal(reply.arrays["0"], [3.0, 3.0])
    assert reply.metrics == {}


def test_fit_returning_a_different_number_of_arrays_names_them_by_position() -> None:
    class Grow(AddOneClient):
        def fit(self, parameters, config):
            return [*parameters, np.zeros(1)], 1, {}

    reply = ClientApp(Grow)(msg(MessageKind.TRAIN, arrays={"w": np.ones(2)}), Context(node_id=2))
    assert list(reply.arrays) == ["0", "1"]


def test_misdelivered_message_raises() -> None:
    app = ClientApp(AddOneClient)
    with pytest.raises(MessageError, match="delivered to node 3"):
        app(msg(MessageKind.TRAIN, dst=2), Context(node_id=3))
    assert AddOneClient.configs == []  # the client never ran


def test_flower_style_string_and_bool_metrics_travel_as_reply_config() -> None:
    class Labelled(AddOneClient):
        def fit(self, parameters, config):
            return parameters, 1, {"note": "hello", "converged": True, "acc": np.float32(0.5)}

    reply = ClientApp(Labelled)(msg(MessageKind.TRAIN), Context(node_id=2))
    assert reply.config == {"note": "hello", "converged": True}
    assert reply.metrics == {"acc": 0.5, "num_examples": 1}


def test_metric_of_an_unsupported_type_raises_message_error() -> None:
    class Bad(AddOneClient):
        def fit(self, parameters, config):
            return parameters, 1, {"note": [1, 2]}

    with pytest.raises(MessageError, match="note"):
        ClientApp(Bad)(msg(MessageKind.TRAIN), Context(node_id=2))


def test_mods_wrap_the_client() -> None:
    seen: list[str] = []

    def scale_reply(message: Message, context: Context, call_next: App) -> Message:
        seen.append(message.metadata.kind.value)
        reply = call_next(message, context)
        return reply.replace(arrays={k: v * 10 for k, v in reply.arrays.items()})

    app = ClientApp(AddOneClient, mods=[scale_reply])
    reply = app(msg(MessageKind.TRAIN, arrays={"w": np.zeros(2)}), Context(node_id=2))
    np.testing.assert_array_equal(reply.arrays["w"], [10.0, 10.0])
    assert seen == ["train"]


def test_client_fn_is_called_with_the_context_node_id() -> None:
    ids: list[int] = []

    def client_fn(node_id: int) -> NumPyClient:
        ids.append(node_id)
        return AddOneClient(node_id)

    app = ClientApp(client_fn)
    for node in (5, 6, 5):
        app(msg(MessageKind.QUERY, dst=node), Context(node_id=node))
    assert ids == [5, 6, 5]


# A client written against Flower's NumPyClient API, verbatim in shape: linear regression by
# one gradient step, numpy float metrics, `config` lookups with defaults.
class FlowerStyleClient(NumPyClient):
    def __init__(self, x, y):
        self.x, self.y = x, y
        self.w = np.zeros(x.shape[1])
        self.b = np.zeros(1)

    def get_parameters(self, config):
        return [self.w, self.b]

    def set_parameters(self, parameters):
        self.w, self.b = parameters[0].copy(), parameters[1].copy()

    def fit(self, parameters, config):
        self.set_parameters(parameters)
        lr = float(config.get("lr", 0.1))
        err = self.x @ self.w + self.b - self.y
        self.w -= lr * self.x.T @ err / len(self.y)
        self.b -= lr * err.mean(keepdims=True)
        return self.get_parameters(config={}), len(self.x), {"mse": np.mean(err**2)}

    def evaluate(self, parameters, config):
        self.set_parameters(parameters)
        err = self.x @ self.w + self.b - self.y
        loss = float(np.mean(err**2))
        return loss, len(self.x), {"mae": np.abs(err).mean()}


def test_flower_style_client_works_unchanged() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 3))
    y = x @ np.array([1.0, -2.0, 0.5]) + 0.3
    app = ClientApp(lambda node_id: FlowerStyleClient(x, y))
    ctx = Context(node_id=1)
    params = {"0": np.zeros(3), "1": np.zeros(1)}

    request = decode(encode(msg(MessageKind.TRAIN, dst=1, arrays=params, config={"lr": 0.5})))
    reply = decode(encode(app(request, ctx)))
    expected_w = -0.5 * x.T @ (-y) / 8
    np.testing.assert_allclose(reply.arrays["0"], expected_w)
    np.testing.assert_allclose(reply.arrays["1"], [0.5 * y.mean()])
    assert reply.metrics[NUM_EXAMPLES] == 8
    assert reply.metrics["mse"] == pytest.approx(np.mean(y**2))

    request = decode(encode(msg(MessageKind.EVALUATE, dst=1, arrays=params)))
    reply = decode(encode(app(request, ctx)))
    assert reply.metrics[LOSS] == pytest.approx(np.mean(y**2))
    assert reply.metrics["mae"] == pytest.approx(np.abs(y).mean())
    assert reply.metrics[NUM_EXAMPLES] == 8

    reply = app(msg(MessageKind.QUERY, dst=1), ctx)
    assert [a.shape for a in reply.arrays.values()] == [(3,), (1,)]


def test_base_client_methods_raise_not_implemented() -> None:
    client = NumPyClient()
    with pytest.raises(NotImplementedError):
        client.fit([], {})
    with pytest.raises(NotImplementedError):
        client.evaluate([], {})
    with pytest.raises(NotImplementedError):
        client.get_parameters({})


def test_a_real_flower_numpy_client_subclass_runs_unchanged() -> None:
    import flwr.client as flwr_client

    class FlwrClient(flwr_client.NumPyClient):  # defined exactly as for Flower
        def __init__(self, cid: int) -> None:
            self.cid = cid

        def get_parameters(self, config):
            return [np.full(2, float(self.cid), np.float32)]

        def fit(self, parameters, config):
            return [p * 2 for p in parameters], 3, {"cid": self.cid}

        def evaluate(self, parameters, config):
            return float(parameters[0].sum()), 4, {"acc": 0.75}

    app = ClientApp(lambda node_id: FlwrClient(node_id))
    ctx = Context(node_id=6)
    w = {"0": np.array([1.0, 2.0], np.float32)}
    reply = decode(encode(app(decode(encode(msg(MessageKind.TRAIN, dst=6, arrays=w))), ctx)))
    np.testing.assert_array_equal(reply.arrays["0"], np.array([2.0, 4.0], np.float32))
    assert reply.metrics == {"cid": 6, NUM_EXAMPLES: 3}
    reply = app(msg(MessageKind.EVALUATE, dst=6, arrays=w), ctx)
    assert reply.metrics == {"acc": 0.75, LOSS: 3.0, NUM_EXAMPLES: 4}
    reply = app(msg(MessageKind.QUERY, dst=6), ctx)
    np.testing.assert_array_equal(reply.arrays["0"], [6.0, 6.0])


def test_a_client_may_update_decoded_parameters_in_place() -> None:
    class InPlace(NumPyClient):
        def fit(self, parameters, config):
            parameters[0] += 1.0  # as Flower clients may
            return parameters, 1, {}

    sent = {"w": np.zeros(3, np.float32)}
    message = decode(encode(Message(Metadata(0, 1, 0, 4, MessageKind.TRAIN), arrays=sent)))
    assert not message.arrays["w"].flags.writeable  # a view of the received bytes
    reply = ClientApp(lambda node: InPlace())(message, Context(4))
    np.testing.assert_array_equal(reply.arrays["w"], [1.0, 1.0, 1.0])
    np.testing.assert_array_equal(message.arrays["w"], [0.0, 0.0, 0.0])  # the message itself is untouched
