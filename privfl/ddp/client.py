"""The client side of distributed DP: an integer encoder for SecAgg+ and the client mod that uses it."""

from __future__ import annotations

import functools

import numpy as np

from privfl.core.message import Message
from privfl.ddp.mechanism import encode
from privfl.ddp.params import DdpParams
from privfl.ddp.rotation import rotation_seed
from privfl.errors import ConfigError, MessageError
from privfl.secagg import protocol as p
from privfl.secagg.client import SecAggMod
from privfl.secagg.config import RoundParams
from privfl.secagg.identity import ClientTrust


def ddp_encoder(
    update: np.ndarray, message: Message, params: RoundParams, *, expected: DdpParams | None = None
) -> np.ndarray:
    """Encode ``update`` with the round's distributed-DP parameters (see :mod:`privfl.ddp.mechanism`).

    The parameters (clip norm, gamma, noise, bits) come from the server's round config, the one
    source of truth the server also accounts with; the modulus must be the SecAgg+ round's. With
    ``expected`` (parameters the operator pinned on the client) any other value is refused, so a
    server cannot lower the noise. The rotation seed is derived here from the run, round and
    received model, never sent.

    Raises:
        MessageError: missing or invalid ``ddp.`` config, parameters other than ``expected``, a
            modulus or dimension that does not match.
    """
    ddp = DdpParams.from_config(dict(message.config))
    if expected is not None and ddp != expected:
        raise MessageError(f"the server sent distributed-DP parameters {ddp}, this client is pinned to {expected}")
    if ddp.bits != params.modulus_bits:
        raise MessageError(
            f"distributed DP needs the SecAgg+ modulus 2^{ddp.bits}, the round uses 2^{params.modulus_bits}"
        )
    if params.weighted:
        raise MessageError("distributed DP needs uniform client weights")
    md = message.metadata
    model = {k: v for k, v in message.arrays.items() if not k.startswith(p.PREFIX)}
    try:
        return encode(update, ddp, rotation_seed(md.run_id, md.server_round, model))
    except ConfigError as exc:
        raise MessageError(f"cannot encode the update for distributed DP: {exc}") from None


def ddp_mod(
    *, trust: ClientTrust | None = None, semi_honest: bool = False, expected: DdpParams | None = None
) -> SecAggMod:
    """Client mod for :class:`~privfl.ddp.server.DistributedDp`: SecAgg+ with the distributed-DP encoder.

    The client clips its update to the server's L2 norm, rotates, scales, rounds, adds its
    own noise share and masks; the server only ever unmasks a sum that already holds the
    noise. The trust model is chosen as for :class:`~privfl.secagg.SecAggMod`:
    ``ddp_mod(trust=ClientTrust(...))`` against an active server (signed roster, consistency
    round), or ``ddp_mod(semi_honest=True)``. Against an active server also pin ``expected``
    (the operator's :class:`~privfl.ddp.params.DdpParams`): the client then refuses a round
    with less noise, a larger clip norm or another modulus than the ones accounted for.
    """
    encoder = ddp_encoder if expected is None else functools.partial(ddp_encoder, expected=expected)
    return SecAggMod(trust=trust, semi_honest=semi_honest, encoder=encoder)
