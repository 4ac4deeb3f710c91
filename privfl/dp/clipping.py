"""L2 clipping of model updates, the step that bounds one client's influence (its sensitivity).

An update is an :data:`~privfl.core.message.ArrayDict`; its norm is the L2 norm of all
arrays flattened into one vector (McMahan et al., ICLR 2018, DP-FedAvg "flat clipping").
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from privfl.core.message import ArrayDict, Config, Message, check_same_layout
from privfl.core.names import DP_CLIP_NORM, DP_MODE, DP_MODE_CENTRAL
from privfl.dp.calibration import check_positive
from privfl.errors import ConfigError, MessageError


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


def train_update(received: Mapping[str, np.ndarray], reply: Message, who: str) -> ArrayDict:
    """The update ``reply - received`` in float64, after checking the reply's layout and values.

    Raises:
        MessageError: the reply's arrays differ in names, shapes or dtypes from ``received``,
            a received array is not floating point, or training produced non-finite values.
    """
    check_same_layout(received, reply.arrays, who)
    update: ArrayDict = {}
    for name, base in received.items():
        if base.dtype.kind != "f":
            raise MessageError(f"{who}: array {name!r} has dtype {base.dtype}; clipping needs float parameters")
        delta = reply.arrays[name].astype(np.float64) - base
        if not np.all(np.isfinite(delta)):
            raise MessageError(f"{who}: training produced non-finite values in array {name!r}")
        update[name] = delta
    return update


def round_clip_norm(config: Mapping[str, object]) -> float | None:
    """The clip norm the round config asks clients to apply, or None when the round is not under DP.

    Raises:
        MessageError: the config names a DP mode this client does not implement, or a clip
            norm that is missing or not a finite number > 0 (a client that cannot honour the
            server's accounting refuses rather than send an update it did not bound).
    """
    mode, clip = config.get(DP_MODE), config.get(DP_CLIP_NORM)
    if mode is None and clip is None:
        return None
    if mode != DP_MODE_CENTRAL:
        raise MessageError(f"round config {DP_MODE}={mode!r}: this client implements only {DP_MODE_CENTRAL!r}")
    try:
        return check_clip_norm(clip)  # type: ignore[arg-type]
    except ConfigError as exc:
        raise MessageError(f"round config {DP_CLIP_NORM}: {exc}") from None


def clip_to_round_config(config: Config, received: ArrayDict, reply: Message) -> Message:
    """``reply`` with its update clipped to the round config's :data:`~privfl.core.names.DP_CLIP_NORM`.

    The one place where a protocol client (SecAgg+ before quantising, CKKS before
    encrypting) applies the clip norm the server's DP wrapper accounts for, so the norm
    has a single source (McMahan et al., ICLR 2018: each update clipped to L2 norm C).
    A round whose config carries no DP entries returns ``reply`` unchanged. Coordinates
    are rounded toward ``received`` (:func:`add_update_toward`), so the update the server
    reconstructs has norm <= C.

    Raises:
        MessageError: the config asks for something this client cannot honour (see
            :func:`round_clip_norm`) or the reply is malformed (see :func:`train_update`).
    """
    clip_norm = round_clip_norm(config)
    if clip_norm is None:
        return reply
    clipped, _ = clip_l2(train_update(received, reply, "DP clipping"), clip_norm)
    return reply.replace(arrays=add_update_toward(received, clipped))
