"""Sample-level DP inside each client: Opacus DP-SGD on a torch model, accounted in a client-side ledger.

Run: ``python examples/opacus_client.py [--rounds 10] [--noise-multiplier 1.0]``  (needs ``privfl[torch]``)

Twenty clients hold non-IID shards of the digits training set (Dirichlet alpha 0.5). Each
trains a small torch MLP with DP-SGD (Opacus: Poisson-sampled batches, per-example
gradients clipped to norm 1, Gaussian noise) and keeps a record-level privacy ledger in
its Context through :class:`~privfl.integrations.opacus.DpSgdLedgerMod`, which composes
every fit it has run. The server is plain FedAvg: the guarantee here protects each
*example* of a client's data, not the participation of a client (for that, see
``examples/dp_fedavg.py``). The script prints per round the test accuracy and the largest
epsilon any client has spent so far at delta 1e-5. Batches and noise come from privfl's CSPRNG;
the unnoised training loss stays on each client (``DpSgdLedgerMod(..., unnoised_metrics=("train_loss",))``
would send it, outside the guarantee).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from privfl.client.app import ClientApp
from privfl.client.numpy_client import NumPyClient
from privfl.integrations.opacus import EPSILON, DpSgdLedgerMod, DpSgdSettings, fit_dp_sgd, get_weights, set_weights
from privfl.server.history import RoundRecord
from privfl.server.sampling import PoissonSampler
from privfl.server.simulation import run_simulation
from privfl.tasks.digits import NUM_CLASSES, NUM_FEATURES, DigitsFederation, load_digits_data

FEDERATION = DigitsFederation(num_clients=20, alpha=0.5, seed=0)
DELTA = 1e-5


def make_model() -> torch.nn.Module:
    """The architecture; its random initial weights are overwritten by ``set_weights`` before any use."""
    return torch.nn.Sequential(torch.nn.Linear(NUM_FEATURES, 32), torch.nn.ReLU(), torch.nn.Linear(32, NUM_CLASSES))


def initial_weights() -> list[np.ndarray]:
    """The same public initial model for everyone, seeded in a forked RNG so torch's global state is untouched.

    DP-SGD's batch sampling and noise come from privfl's CSPRNG, never from torch's
    generator, so no seed here (or anywhere) can repeat or predict them.
    """
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return get_weights(make_model())


class TorchDpClient(NumPyClient):
    def __init__(self, node_id: int, settings: DpSgdSettings) -> None:
        data = FEDERATION(node_id)
        self.x, self.y, self.settings = data.x, data.y, settings

    def get_parameters(self, config: dict) -> list[np.ndarray]:
        return initial_weights()

    def fit(self, parameters: list[np.ndarray], config: dict):
        model = make_model()
        set_weights(model, parameters)
        metrics = fit_dp_sgd(model, self.x, self.y, self.settings)
        return get_weights(model), len(self.y), metrics


def evaluate(server_round: int, parameters: dict[str, np.ndarray]) -> dict[str, float]:
    model = make_model()
    set_weights(model, list(parameters.values()))
    data = load_digits_data(FEDERATION.seed)
    with torch.no_grad():
        logits = model(torch.as_tensor(data.x_test))
    return {"accuracy": float((logits.argmax(1).numpy() == data.y_test).mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--noise-multiplier", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=8, help="expected Poisson batch size")
    args = parser.parse_args()
    settings = DpSgdSettings(
        noise_multiplier=args.noise_multiplier, max_grad_norm=1.0, batch_size=args.batch_size, epochs=1, lr=0.5
    )
    worst: dict[int, float] = {}

    def track_epsilon(message, context, call_next):
        reply = call_next(message, context)
        if EPSILON in reply.metrics:
            worst[context.node_id] = reply.metrics[EPSILON]
        return reply

    def show(record: RoundRecord) -> None:
        print(
            f"round {record.server_round:2d}  accuracy {record.centralized['accuracy']:.4f}  "
            f"clients {record.num_clients:2d}  max client epsilon {max(worst.values(), default=0.0):.3f}",
            flush=True,
        )

    initial = dict(zip(make_model().state_dict(), initial_weights(), strict=True))
    print(
        f"{FEDERATION.num_clients} clients, DP-SGD z={settings.noise_multiplier}, clip 1.0, "
        f"expected batch {settings.batch_size}, delta {DELTA:g}"
    )
    result = run_simulation(
        ClientApp(lambda node: TorchDpClient(node, settings), mods=[track_epsilon, DpSgdLedgerMod(DELTA)]),
        num_clients=FEDERATION.num_clients,
        num_rounds=args.rounds,
        initial_parameters=initial,
        sampler=PoissonSampler(0.5),
        centralized_evaluate=evaluate,
        progress=False,
        callbacks=(show,),
    )
    print(
        f"final test accuracy {result.history.last('centralized', 'accuracy'):.4f}; record-level epsilon per "
        f"client at delta {DELTA:g}: max {max(worst.values()):.3f}, median {np.median(list(worst.values())):.3f} "
        f"({len(worst)} clients trained)"
    )


if __name__ == "__main__":
    main()
