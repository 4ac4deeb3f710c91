"""Differential privacy for federated learning: clipping, cryptographically sourced noise, local and central DP.

- :mod:`privfl.dp.noise`: Gaussian and discrete Gaussian noise from a ChaCha20 keystream.
- :mod:`privfl.dp.calibration`: one-release calibration (analytic Gaussian mechanism, classic formula).
- :mod:`privfl.dp.clipping`: L2 clipping of updates, and of protocol clients to the round config's clip norm.
- :mod:`privfl.dp.client_mods`: :class:`FixedClippingMod`, :class:`LocalDpMod`.
- :mod:`privfl.dp.central`: :class:`CentralDp`, :class:`AdaptiveClippingDp` aggregators.

Accounting (events, ledger, RDP, multi-round calibration) is in :mod:`privfl.accounting`.
"""

from privfl.dp.calibration import analytic_gaussian_sigma, classic_gaussian_sigma, gaussian_delta, gaussian_sigma
from privfl.dp.central import AdaptiveClippingDp, CentralDp, ClipEachUpdate
from privfl.dp.client_mods import FixedClippingMod, LocalDpMod
from privfl.dp.clipping import clip_l2, clip_to_round_config, l2_norm
from privfl.dp.noise import discrete_gaussian, gaussian_noise

__all__ = [
    "AdaptiveClippingDp",
    "CentralDp",
    "ClipEachUpdate",
    "FixedClippingMod",
    "LocalDpMod",
    "analytic_gaussian_sigma",
    "classic_gaussian_sigma",
    "clip_l2",
    "clip_to_round_config",
    "discrete_gaussian",
    "gaussian_delta",
    "gaussian_noise",
    "gaussian_sigma",
    "l2_norm",
]
