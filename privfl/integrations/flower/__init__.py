"""privfl on Flower's runtime (the ``flower`` extra; measured with flwr 1.41).

Flower-native pieces (drop into Flower's own apps; see ``examples/flower_dp_sa``):

- client mods :func:`secaggplus_mod` and :func:`fixedclipping_mod` for
  ``flwr.clientapp.ClientApp(client_fn=..., mods=[...])``;
- :class:`SecAggPlusWorkflow`, the ``fit_workflow`` of Flower's ``DefaultWorkflow``;
- central-DP strategy wrappers :class:`DifferentialPrivacyClientSideFixedClipping`,
  :class:`DifferentialPrivacyServerSideFixedClipping` and
  :class:`DifferentialPrivacyServerSideAdaptiveClipping` around any Flower strategy;
- :func:`aggregate_client_metrics` for a strategy's ``fit_metrics_aggregation_fn``.

privfl-native pieces: :func:`flower_client_app` (a privfl client app as a Flower
ClientApp), :func:`flower_mod` (privfl mods as one Flower mod) and :func:`run_on_grid`
(a privfl strategy over a Flower ``Grid``); converters in
:mod:`~privfl.integrations.flower.convert`; node-local sealed state in
:mod:`~privfl.integrations.flower.state`.

Core privfl never imports flwr; only this package does.
"""

from privfl.core.extras import require

require("flwr", "privfl.integrations.flower")  # before the submodules, so a core install names the extra

from privfl.integrations.flower.client import flower_client_app, flower_mod  # noqa: E402
from privfl.integrations.flower.convert import NodeMap, from_flower_reply, from_recorddict, to_flower, to_recorddict  # noqa: E402
from privfl.integrations.flower.mods import fixedclipping_mod, secaggplus_mod  # noqa: E402
from privfl.integrations.flower.names import aggregate_client_metrics  # noqa: E402
from privfl.integrations.flower.server import GridClients, run_on_grid, wait_for_nodes  # noqa: E402
from privfl.integrations.flower.strategy import (  # noqa: E402
    DifferentialPrivacyClientSideFixedClipping,
    DifferentialPrivacyServerSideAdaptiveClipping,
    DifferentialPrivacyServerSideFixedClipping,
)
from privfl.integrations.flower.workflow import SecAggPlusWorkflow  # noqa: E402

__all__ = [
    "DifferentialPrivacyClientSideFixedClipping",
    "DifferentialPrivacyServerSideAdaptiveClipping",
    "DifferentialPrivacyServerSideFixedClipping",
    "GridClients",
    "NodeMap",
    "SecAggPlusWorkflow",
    "aggregate_client_metrics",
    "fixedclipping_mod",
    "flower_client_app",
    "flower_mod",
    "from_flower_reply",
    "from_recorddict",
    "run_on_grid",
    "secaggplus_mod",
    "to_flower",
    "to_recorddict",
    "wait_for_nodes",
]
