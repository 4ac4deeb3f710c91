"""SecAgg+ secure aggregation (Bonawitz et al. CCS'17; Bell et al. CCS'20).

Recipes: :class:`SecAggConfig`, :class:`SecAggPlusAggregator` (server side, for
``FedAvg(aggregator=...)``) and :class:`SecAggMod` (client side), with the trust model
chosen explicitly: a :class:`SignedRoster` and :class:`ClientTrust` against an active
server, or ``semi_honest=True``. Identities are in :mod:`~privfl.secagg.identity`. The hazmat
primitives live in :mod:`~privfl.secagg.shamir`, :mod:`~privfl.secagg.crypto`,
:mod:`~privfl.secagg.prg`, :mod:`~privfl.secagg.quantization` and
:mod:`~privfl.secagg.graph`.
"""

from privfl.secagg.client import SecAggClientState, SecAggMod, SecAggPlusClient
from privfl.secagg.config import RoundParams, SecAggConfig
from privfl.secagg.identity import ClientTrust, Federation, IdentityKey, Roster, SignedRoster
from privfl.secagg.server import Rejection, SecAggPlusAggregator, SecAggRoundResult, secagg_exchange

__all__ = [
    "ClientTrust",
    "Federation",
    "IdentityKey",
    "Rejection",
    "Roster",
    "RoundParams",
    "SecAggClientState",
    "SecAggConfig",
    "SecAggMod",
    "SecAggPlusAggregator",
    "SecAggPlusClient",
    "SecAggRoundResult",
    "SignedRoster",
    "secagg_exchange",
]
