"""The learning task: softmax regression on scikit-learn's digits, in numpy (no download, no GPU).

Same helper names as Flower's fl-dp-sa ``task.py`` (``Net``, ``load_data``, ``train``,
``test``, ``get_weights``, ``set_weights``) so the client and server apps read the same.
"""

from __future__ import annotations

import numpy as np

from privfl.tasks.digits import NUM_CLASSES, NUM_FEATURES, DigitsClient, load_digits_data, loss_and_accuracy


class Net:
    """Weights (64 x 10) and biases (10), zero-initialised."""

    def __init__(self) -> None:
        self.weight = np.zeros((NUM_FEATURES, NUM_CLASSES), dtype=np.float32)
        self.bias = np.zeros(NUM_CLASSES, dtype=np.float32)


def load_data(partition_id: int, num_partitions: int) -> tuple[tuple, tuple]:
    """An IID partition of the training split (80% train, 20% validation) for one node."""
    data = load_digits_data()
    part = np.array_split(np.arange(len(data.y_train)), num_partitions)[partition_id]
    cut = int(0.8 * len(part))
    train, val = part[:cut], part[cut:]
    return (data.x_train[train], data.y_train[train]), (data.x_train[val], data.y_train[val])


def train(net: Net, trainloader: tuple, valloader: tuple, epochs: int, node: int) -> dict:
    """Mini-batch SGD on the partition (batch order seeded by the node); returns train and validation metrics."""
    client = DigitsClient(*trainloader, node_id=node, epochs=epochs)
    (net.weight, net.bias), _, metrics = client.fit([net.weight, net.bias], {})
    val_loss, val_acc = test(net, valloader)
    return {**metrics, "val_loss": val_loss, "val_accuracy": val_acc}


def test(net: Net, testloader: tuple) -> tuple[float, float]:
    return loss_and_accuracy(net.weight, net.bias, *testloader)


def get_weights(net: Net) -> list[np.ndarray]:
    return [net.weight, net.bias]


def set_weights(net: Net, parameters: list[np.ndarray]) -> None:
    net.weight, net.bias = (np.array(p, dtype=np.float32) for p in parameters)
