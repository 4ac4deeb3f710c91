"""Federated handwritten-digit classification on scikit-learn's bundled digits data.

1,797 8x8 images (no download), split 75/25 into train and test, the train part
spread over clients with a Dirichlet(alpha) label partition (Hsu et al. 2019), so
small alpha gives strongly non-IID clients. The model is multinomial logistic
regression (64 pixels -> 10 classes) trained with local minibatch SGD, in numpy.
Needs the ``demo`` extra (scikit-learn).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from privfl.client.numpy_client import NDArrays, NumPyClient
from privfl.core.extras import require
from privfl.core.message import ArrayDict
from privfl.errors import ConfigError

NUM_CLASSES = 10
NUM_FEATURES = 64


@dataclass(frozen=True)
class DigitsData:
    """Standardised features and labels: a train split and a held-out test split."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


@lru_cache(maxsize=4)
def load_digits_data(seed: int = 0) -> DigitsData:
    """Load, shuffle and split the digits data (pixels scaled to [0, 1])."""
    datasets = require("sklearn.datasets", "the digits task")
    x, y = datasets.load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    order = np.random.default_rng(seed).permutation(len(y))
    x, y = x[order], y[order].astype(np.int64)
    cut = int(0.75 * len(y))
    return DigitsData(x[:cut], y[:cut], x[cut:], y[cut:])


def dirichlet_partition(labels: np.ndarray, num_clients: int, alpha: float, seed: int = 0) -> list[np.ndarray]:
    """Indices per client: each class is split over clients with Dirichlet(alpha) proportions.

    Every client gets at least one example (resampled until it does).
    """
    if num_clients < 1 or alpha <= 0:
        raise ConfigError(f"need num_clients >= 1 and alpha > 0, got {num_clients}, {alpha}")
    if num_clients > len(labels):
        raise ConfigError(f"cannot split {len(labels)} examples over {num_clients} clients")
    rng = np.random.default_rng(seed)
    while True:
        parts: list[list[int]] = [[] for _ in range(num_clients)]
        for cls in np.unique(labels):
            idx = rng.permutation(np.flatnonzero(labels == cls))
            cuts = (np.cumsum(rng.dirichlet(np.full(num_clients, alpha))) * len(idx)).astype(int)[:-1]
            for client, chunk in enumerate(np.split(idx, cuts)):
                parts[client].extend(chunk.tolist())
        if all(parts):
            return [np.array(sorted(p), dtype=np.int64) for p in parts]


def initial_parameters() -> ArrayDict:
    """Zero-initialised weights (64 x 10) and biases (10)."""
    return {
        "weight": np.zeros((NUM_FEATURES, NUM_CLASSES), dtype=np.float32),
        "bias": np.zeros(NUM_CLASSES, dtype=np.float32),
    }


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def loss_and_accuracy(weight: np.ndarray, bias: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Mean cross-entropy loss and accuracy of the model on (x, y)."""
    p = _softmax(x @ weight + bias)
    loss = float(-np.mean(np.log(p[np.arange(len(y)), y] + 1e-12)))
    return loss, float(np.mean(p.argmax(axis=1) == y))


class DigitsClient(NumPyClient):
    """A NumPy-style client holding one partition of the digits training data.

    Training is deterministic given (seed, node, round), so a resumed run repeats
    exactly what an uninterrupted one computes.
    """

    def __init__(
        self,
        x: np.ndarray,
        y: np.ndarray,
        *,
        node_id: int,
        epochs: int = 1,
        batch_size: int = 16,
        lr: float = 0.5,
        seed: int = 0,
    ) -> None:
        self.x, self.y = x, y
        self.node_id, self.epochs, self.batch_size, self.lr, self.seed = node_id, epochs, batch_size, lr, seed

    def get_parameters(self, config: dict) -> NDArrays:
        return list(initial_parameters().values())

    def fit(self, parameters: NDArrays, config: dict) -> tuple[NDArrays, int, dict]:
        weight, bias = (np.array(p, dtype=np.float32) for p in parameters)
        rng = np.random.default_rng([self.seed, self.node_id, int(config.get("server_round", 0))])
        epochs = int(config.get("local_epochs", self.epochs))
        onehot = np.eye(NUM_CLASSES, dtype=np.float32)[self.y]
        for _ in range(epochs):
            order = rng.permutation(len(self.y))
            for start in range(0, len(order), self.batch_size):
                b = order[start : start + self.batch_size]
                grad_logits = (_softmax(self.x[b] @ weight + bias) - onehot[b]) / len(b)
                weight -= self.lr * (self.x[b].T @ grad_logits)
                bias -= self.lr * grad_logits.sum(axis=0)
        loss, acc = loss_and_accuracy(weight, bias, self.x, self.y)
        return [weight, bias], len(self.y), {"train_loss": loss, "train_accuracy": acc}

    def evaluate(self, parameters: NDArrays, config: dict) -> tuple[float, int, dict]:
        loss, acc = loss_and_accuracy(parameters[0], parameters[1], self.x, self.y)
        return loss, len(self.y), {"accuracy": acc}


@dataclass(frozen=True)
class DigitsFederation:
    """A ready-made federation: partitions, a client factory and a centralized evaluator.

    Instances are picklable (module-level class), so they work as ``client_fn`` with
    a process pool.
    """

    num_clients: int = 20
    alpha: float = 0.5
    seed: int = 0
    epochs: int = 1
    batch_size: int = 16
    lr: float = 0.5

    def partitions(self) -> list[np.ndarray]:
        return _partitions(self.num_clients, self.alpha, self.seed)

    def __call__(self, node_id: int) -> DigitsClient:
        """The client of ``node_id`` (1-based)."""
        data = load_digits_data(self.seed)
        idx = self.partitions()[node_id - 1]
        return DigitsClient(
            data.x_train[idx],
            data.y_train[idx],
            node_id=node_id,
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            seed=self.seed,
        )

    def evaluate(self, server_round: int, parameters: ArrayDict) -> dict[str, float]:
        """Centralized evaluation on the held-out test split.

        ``parameters`` holds the weight and the bias in that order, named as by
        :func:`initial_parameters` or by position (a client's ``get_parameters`` list).
        """
        data = load_digits_data(self.seed)
        weight, bias = parameters.values()
        loss, acc = loss_and_accuracy(weight, bias, data.x_test, data.y_test)
        return {"loss": loss, "accuracy": acc}


@lru_cache(maxsize=16)
def _partitions(num_clients: int, alpha: float, seed: int) -> list[np.ndarray]:
    return dirichlet_partition(load_digits_data(seed).y_train, num_clients, alpha, seed)


@dataclass(frozen=True)
class DigitsPopulation(DigitsFederation):
    """Digits training data split IID into ``num_clients`` shards of near-equal size, one per client.

    A :class:`~privfl.tasks.digits.DigitsFederation` whose partition is IID shards instead
    of a Dirichlet label split (``alpha`` is unused), so it scales to as many clients as
    there are training images. Picklable, so it serves as ``client_fn`` with worker processes.
    """

    num_clients: int = 1000

    def __post_init__(self) -> None:
        available = len(load_digits_data(self.seed).y_train)
        if not 1 <= self.num_clients <= available:
            raise ConfigError(f"num_clients must be in [1, {available}] for digits, got {self.num_clients}")

    def partitions(self) -> list[np.ndarray]:
        return _shards(self.num_clients, self.seed)


@lru_cache(maxsize=8)
def _shards(num_clients: int, seed: int) -> list[np.ndarray]:
    order = np.random.default_rng([seed, num_clients]).permutation(len(load_digits_data(seed).y_train))
    return np.array_split(order, num_clients)
