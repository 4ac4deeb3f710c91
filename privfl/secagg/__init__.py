"""SecAgg+ secure aggregation (Bonawitz et al. CCS'17; Bell et al. CCS'20).

Recipes: :class:`SecAggConfig`, :class:`SecAggPlusAggregator` (server side, for
``FedAvg(aggregator=...)``) and :func:`secagg_mod` (client side). The hazmat
primitives live in :mod:`~privfl.secagg.shamir`, :mod:`~privfl.secagg.crypto`,
:mod:`~privfl.secagg.prg`, :mod:`~privfl.secagg.quantization` and
:mod:`~privfl.secagg.graph`.
"""

from privfl.secagg.client import SecAggClientState, SecAggPlusClient, secagg_mod
from privfl.secagg.config import RoundParams, SecAggConfig
from privfl.secagg.server import SecAggPlusAggregator, SecAggRoundResult, secagg_exchange

__all__ = [
    "RoundParams",
    "SecAggClientState",
    "SecAggConfig",
    "SecAggPlusAggregator",
    "SecAggPlusClient",
    "SecAggRoundResult",
    "secagg_exchange",
    "secagg_mod",
]
