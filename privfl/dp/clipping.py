"""L2 clipping of model updates, the step that bounds one client's influence (its sensitivity).

An update is an :data:`~privfl.core.message.ArrayDict`; its norm is the L2 norm of all
arrays flattened into one vector (McMahan et al., ICLR 2018, DP-FedAvg "flat clipping").
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from privfl.core.message import ArrayDict
from privfl.dp.calibration import check_positive
from privfl.errors import ConfigError


def check_clip_norm(clip_norm: float) -> float:
    """``clip_norm`` as a float; :class:`ConfigError` naming it unless it is a finite number > 0."""
    return check_positive("clip_norm", clip_norm)


def l2_norm(update: Mapping[str, np.ndarray]) -> float:
    """L2 norm of all arrays flattened together, computed in float64 without overflow.

    Raises:
        ConfigError: an array holds NaN or infinity.
    """
    flat = [np.asarray(a, dtype=np.float64).ravel() for a in update.values()]
    # einsum rather than np.dot: same float64 sum, but no BLAS thread pool to stall on a busy machine.
    with np.errstate(over="ignore"):
        norm = math.sqrt(sum(float(np.einsum("i,i->", a, a)) for a in flat))
    if math.isfinite(norm):
        return norm
    peak = max((float(np.max(np.abs(a))) for a in flat if a.size), default=0.0)
    if not math.isfinite(peak):
        raise ConfigError("cannot clip an update with non-finite values")
    # The squares overflowed: rescale by the largest magnitude first.
    return peak * math.sqrt(sum(float(np.einsum("i,i->", a / peak, a / peak)) for a in flat))


def clip_l2(update: Mapping[str, np.ndarray], clip_norm: float) -> tuple[ArrayDict, float]:
    """Scale ``update`` so its L2 norm is at most ``clip_norm``.

    Returns ``(clipped update as float64 arrays, norm before clipping)``. An update
    already inside the ball (including the all-zero update) is returned unscaled, so no
    norm is ever divided by; ``clip_norm`` 0 maps every update to zeros.
    """
    if isinstance(clip_norm, bool) or not (math.isfinite(clip_norm) and clip_norm >= 0):
        raise ConfigError(f"clip_norm must be a finite number >= 0, got {clip_norm!r}")
    clipped = {name: np.array(a, dtype=np.float64) for name, a in update.items()}
    norm = l2_norm(clipped)
    if norm > clip_norm:
        for value in clipped.values():
            value *= clip_norm / norm
    return clipped, norm


def add_update_toward(received: Mapping[str, np.ndarray], update: Mapping[str, np.ndarray]) -> ArrayDict:
    """``received + update`` in the dtypes of ``received``, with every coordinate rounded toward ``received``.

    Rounding to nearest in float32 can make ``new - received`` a little longer than
    ``update`` (by up to half an ulp of the parameter per coordinate, which for large
    parameters is more than the norm bound); rounding each coordinate toward the
    received value keeps ``|new_i - received_i| <= |update_i|``, so the clipped norm the
    server sees never exceeds the bound the client enforced.
    """
    out: ArrayDict = {}
    for name, base in received.items():
        target = np.asarray(base, dtype=np.float64) + update[name]
        new = target.astype(base.dtype)
        if new.dtype.kind == "f":
            overshoot = np.abs(new.astype(np.float64) - base) > np.abs(update[name])
            new[overshoot] = np.nextafter(new[overshoot], base[overshoot])
        out[name] = new
    return out
