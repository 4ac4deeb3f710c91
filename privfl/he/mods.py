"""The client side of CKKS aggregation: a mod that decrypts the global model and encrypts the reply.

Order with other mods: put :class:`CkksClientMod` **first** (outermost) in the
client's mod list, e.g. ``ClientApp(client_fn, mods=[CkksClientMod(keys),
clipping_mod, local_noise_mod])``. It then decrypts the incoming model before any
other mod sees it, and encrypts only after every inner mod (clipping, noise) has
transformed the plaintext reply; DP mods therefore work on plaintext updates
exactly as without encryption.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from privfl.core.context import Context
from privfl.core.message import ArrayDict, Message, MessageKind, check_same_layout
from privfl.core.mods import App
from privfl.core.names import NUM_EXAMPLES
from privfl.dp.clipping import clip_to_round_config
from privfl.errors import ConfigError, MessageError
from privfl.he.cipher import ClientCipher
from privfl.he.codec import EncryptedModel, ciphertext_arrays, is_encrypted_model
from privfl.he.keys import CkksKeys
from privfl.he.packing import PackLayout, pack, unpack

STATE_KEY = "he"
"""Context key of the client's :class:`ClientCipher`."""

NUM_CLIENTS = "he.num_clients"
"""Config key: clients asked this round, so each client can keep the encrypted sum below the headroom."""


def decrypt_model(arrays: Mapping[str, np.ndarray], cipher: ClientCipher) -> ArrayDict:
    """The plaintext global model: the decrypted sum, rounded to the release grid, over the total weight.

    Values are cast to the layout's dtypes after rounding (:mod:`privfl.he.release`).

    Plaintext parameters (the first round's public initial model) are returned unchanged.
    """
    if not is_encrypted_model(arrays):
        PackLayout.of(arrays)  # refuse parameters that could not be encrypted in the reply
        return dict(arrays)
    model = EncryptedModel.from_arrays(arrays, cipher.key_id, cipher.params.slots)
    # Every upload in the sum carries at least one example, so the weight bounds their number.
    total = cipher.decrypt(model.ciphertexts, model.layout.num_values, summands=int(model.weight))
    return unpack(model.layout, total / model.weight)


@dataclass(frozen=True)
class CkksClientMod:
    """Decrypt the global model on the way in; encrypt the example-weighted parameters on the way out.

    For a training reply with ``num_examples`` = w and parameters x, the client
    sends Enc(w * x); the server adds these and the next round's clients divide the
    decrypted sum by the total weight (FedAvg, McMahan et al. 2017). Evaluation
    messages are decrypted the same way; their replies carry metrics only.

    In committee mode clients hold only the joint public key: the server sends the
    committee's released (plaintext) model and the mod encrypts the reply.

    Args:
        keys: the shared secret keys (distributed by the key holder), or the
            committee's joint public keys.
    """

    keys: CkksKeys

    def __post_init__(self) -> None:
        if not isinstance(self.keys, CkksKeys):
            raise ConfigError(f"CkksClientMod needs CkksKeys, got {type(self.keys).__name__}")

    def __call__(self, message: Message, context: Context, call_next: App) -> Message:
        kind = message.metadata.kind
        if kind not in (MessageKind.TRAIN, MessageKind.EVALUATE):
            return call_next(message, context)
        cipher = context.get_or_create(STATE_KEY, lambda: ClientCipher(self.keys))
        if cipher.key_id != self.keys.key_id:
            raise ConfigError("this node's context already holds a cipher for other keys")
        config = dict(message.config)
        num_clients = config.pop(NUM_CLIENTS, None)
        if kind is MessageKind.TRAIN and (
            isinstance(num_clients, bool) or not isinstance(num_clients, int) or num_clients < 1
        ):
            raise MessageError(
                f"a training task needs {NUM_CLIENTS} as a positive int, got {num_clients!r}: "
                "CkksClientMod works with the HEFedAvg strategy only (the server sends that value)"
            )
        plain = decrypt_model(message.arrays, cipher)
        reply = call_next(message.replace(arrays=plain, config=config), context)
        if kind is MessageKind.EVALUATE:
            return reply
        reply = clip_to_round_config(config, plain, reply)  # the server's DP clip norm, if any
        return reply.replace(arrays=self._encrypt(reply, plain, cipher, int(num_clients)))  # type: ignore[arg-type]

    @staticmethod
    def _encrypt(reply: Message, plain: ArrayDict, cipher: ClientCipher, num_clients: int) -> ArrayDict:
        weight = reply.metrics.get(NUM_EXAMPLES)
        if isinstance(weight, bool) or not isinstance(weight, int) or weight < 1:
            raise MessageError(f"the fit reply needs {NUM_EXAMPLES} as a positive int, got {weight!r}")
        check_same_layout(plain, reply.arrays, "CKKS client mod")
        _, flat = pack(reply.arrays)
        weighted = weight * flat
        # Every client staying below headroom / num_clients keeps the encrypted sum from wrapping modulo q.
        bound = cipher.params.headroom / num_clients
        largest = float(np.abs(weighted).max(initial=0.0))
        if largest >= bound:
            raise ConfigError(
                f"weighted update reaches {largest:g}, above the per-client bound {bound:g} "
                f"(headroom {cipher.params.headroom:g} / {num_clients} clients); choose CKKS parameters "
                "whose scale_bits is smaller"
            )
        return ciphertext_arrays(cipher.key_id, cipher.encrypt(weighted))
