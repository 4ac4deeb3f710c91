"""CKKS homomorphic aggregation with TenSEAL (needs the ``he`` extra).

Clients share a CKKS secret key, encrypt their example-weighted models and the
server adds ciphertexts without being able to read them. Start with
:class:`CkksKeys` (key roles and trust model), :class:`CkksClientMod` (client) and
:class:`HEFedAvg` (server); parameter sets are in :mod:`privfl.he.params`.
"""

from privfl.he.cipher import ClientCipher, EncryptedSum, load_ciphertext
from privfl.he.codec import EncryptedModel
from privfl.he.keys import CkksKeys
from privfl.he.mods import CkksClientMod, decrypt_model
from privfl.he.packing import PackLayout, chunk_sizes, pack, unpack
from privfl.he.params import FL_4096, FL_8192, FL_8192_SEEDED, HE_STANDARD_MAX_BITS, PRESETS, CkksParams, preset
from privfl.he.strategy import HEFedAvg

__all__ = [
    "FL_4096",
    "FL_8192",
    "FL_8192_SEEDED",
    "HE_STANDARD_MAX_BITS",
    "PRESETS",
    "CkksClientMod",
    "CkksKeys",
    "CkksParams",
    "ClientCipher",
    "EncryptedModel",
    "EncryptedSum",
    "HEFedAvg",
    "PackLayout",
    "chunk_sizes",
    "decrypt_model",
    "load_ciphertext",
    "pack",
    "preset",
    "unpack",
]
