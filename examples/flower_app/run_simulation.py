"""Run the app on Flower's simulation runtime from Python (what ``flwr run .`` does, without a SuperLink).

Run from this directory:  python run_simulation.py [--num-rounds 3] [--ledger-path ledger.json]
"""

from __future__ import annotations

import argparse
import dataclasses

from flwr.simulation import run_simulation
from privfl_flower_app.client_app import make_client_app
from privfl_flower_app.server_app import make_server_app
from privfl_flower_app.task import Settings

# One Ray actor per core: a node's SecAgg+ stages may run in different actors (its
# state travels, sealed, in Flower's node-local Context).
BACKEND_CONFIG = {"client_resources": {"num_cpus": 1}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    for field in dataclasses.fields(Settings):
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=type(field.default), default=field.default)
    settings = Settings(**vars(parser.parse_args()))
    run_simulation(
        server_app=make_server_app(settings),
        client_app=make_client_app(settings),
        num_supernodes=settings.num_clients,
        backend_config=BACKEND_CONFIG,
    )


if __name__ == "__main__":
    main()
