"""Distributed DP on SecAgg+: clients add discrete noise shares before masking.

Mechanisms: the distributed discrete Gaussian (Kairouz, Liu & Steinke, ICML 2021) and the
Skellam mechanism (Agarwal, Kairouz & Liu, NeurIPS 2021). Server: :class:`DistributedDp`;
client mod: :func:`ddp_mod`; parameters from targets: :func:`plan_ddp`.
"""

from privfl.ddp.client import ddp_encoder, ddp_mod
from privfl.ddp.mechanism import decode_sum, encode
from privfl.ddp.params import MECHANISMS, DdpParams, DdpPlan, epsilon_of, plan_ddp
from privfl.ddp.samplers import discrete_gaussian_exact, skellam
from privfl.ddp.server import DistributedDp

__all__ = [
    "MECHANISMS",
    "DdpParams",
    "DdpPlan",
    "DistributedDp",
    "ddp_encoder",
    "ddp_mod",
    "decode_sum",
    "discrete_gaussian_exact",
    "encode",
    "epsilon_of",
    "plan_ddp",
    "skellam",
]
