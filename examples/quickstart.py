"""Quickstart: wrap an existing NumPy-style client and train it in privfl's bundled loop.

The client below is written exactly as for Flower's ``NumPyClient`` (get_parameters /
fit / evaluate on lists of numpy arrays); privfl runs it unchanged. The task is the
demo's: softmax regression on scikit-learn's digits, split non-IID over 20 clients.

Run:  .venv/bin/python examples/quickstart.py
"""

from __future__ import annotations

import numpy as np

from privfl.client import ClientApp, NumPyClient
from privfl.server import FedAvg, run_simulation
from privfl.tasks.digits import dirichlet_partition, load_digits_data

NUM_CLIENTS, ROUNDS = 20, 30
data = load_digits_data(seed=0)
partitions = dirichlet_partition(data.y_train, NUM_CLIENTS, alpha=0.5, seed=0)


def predict_proba(weight: np.ndarray, bias: np.ndarray, x: np.ndarray) -> np.ndarray:
    logits = x @ weight + bias
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# 1. An existing client: nothing privfl-specific in it.
class DigitsClient(NumPyClient):
    def __init__(self, x: np.ndarray, y: np.ndarray, seed: int) -> None:
        self.x, self.y, self.seed = x, y, seed

    def get_parameters(self, config):
        return [np.zeros((64, 10), np.float32), np.zeros(10, np.float32)]

    def fit(self, parameters, config):
        weight, bias = (p.copy() for p in parameters)
        rng = np.random.default_rng([self.seed, config["server_round"]])
        onehot = np.eye(10, dtype=np.float32)[self.y]
        order = rng.permutation(len(self.y))
        for start in range(0, len(order), 16):  # one epoch of minibatch SGD, lr 0.5
            b = order[start : start + 16]
            grad = (predict_proba(weight, bias, self.x[b]) - onehot[b]) / len(b)
            weight -= 0.5 * self.x[b].T @ grad
            bias -= 0.5 * grad.sum(axis=0)
        return [weight, bias], len(self.y), {}

    def evaluate(self, parameters, config):
        p = predict_proba(*parameters, self.x)
        loss = -np.mean(np.log(p[np.arange(len(self.y)), self.y] + 1e-12))
        return float(loss), len(self.y), {"accuracy": float(np.mean(p.argmax(1) == self.y))}


# 2. A client_fn builds the client of a node (node ids are 1..N).
def client_fn(node_id: int) -> DigitsClient:
    idx = partitions[node_id - 1]
    return DigitsClient(data.x_train[idx], data.y_train[idx], seed=node_id)


# 3. The server evaluates the global model on held-out data after each round.
def evaluate(server_round: int, parameters: dict[str, np.ndarray]) -> dict[str, float]:
    weight, bias = parameters.values()
    accuracy = np.mean(predict_proba(weight, bias, data.x_test).argmax(1) == data.y_test)
    return {"accuracy": float(accuracy)}


# 4. Wrap the client in an app (privacy mods go in `mods`) and run the bundled loop.
app = ClientApp(client_fn, mods=[])
result = run_simulation(
    app,
    num_clients=NUM_CLIENTS,
    num_rounds=ROUNDS,
    initial_parameters=client_fn(1).get_parameters({}),  # the list of arrays a Flower client returns
    strategy=FedAvg(),
    centralized_evaluate=evaluate,
    evaluate_fraction=0.25,  # also ask 5 clients per round to evaluate on their own data
    seed=0,
)
for record in result.history.rounds[4::5]:
    print(
        f"round {record.server_round:2d}: test accuracy {record.centralized['accuracy']:.3f}, "
        f"federated accuracy {record.evaluate['accuracy']:.3f}, "
        f"{record.bytes_up / 1024:.1f} KiB up / {record.bytes_down / 1024:.1f} KiB down"
    )
