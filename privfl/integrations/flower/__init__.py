"""privfl on Flower's runtime (the ``flower`` extra; tested with flwr 1.21, 1.22, 1.25, 1.30, 1.41 and 1.42).

- :mod:`~privfl.integrations.flower.convert`: privfl Message <-> Flower Message, :class:`NodeMap`.
- :mod:`~privfl.integrations.flower.client`: :func:`flower_client_app` (a privfl client app,
  e.g. around a Flower ``NumPyClient``, as a Flower ClientApp) and :func:`flower_mod`
  (privfl mods in an existing Flower ClientApp).
- :mod:`~privfl.integrations.flower.server`: :func:`run_on_grid` runs any privfl strategy
  (FedAvg over plain, DP or SecAgg+ aggregation) over a Flower ``Grid`` from a ServerApp.

Core privfl never imports flwr; only this package does.
"""

from privfl.core.extras import require

require("flwr", "privfl.integrations.flower")  # before the submodules, so a core install names the extra

from privfl.integrations.flower.client import flower_client_app, flower_mod  # noqa: E402
from privfl.integrations.flower.convert import NodeMap, from_flower_reply, from_recorddict, to_flower, to_recorddict  # noqa: E402
from privfl.integrations.flower.server import GridClients, run_on_grid, wait_for_nodes  # noqa: E402

__all__ = [
    "GridClients",
    "NodeMap",
    "flower_client_app",
    "flower_mod",
    "from_flower_reply",
    "from_recorddict",
    "run_on_grid",
    "to_flower",
    "to_recorddict",
    "wait_for_nodes",
]
