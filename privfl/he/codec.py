"""How encrypted content travels in a :class:`~privfl.core.message.Message`.

Ciphertexts travel as ``uint8`` arrays named ``he.ct.000000``, ``he.ct.000001``,
... next to ``he.key_id`` (the key fingerprint) and ``he.digest`` (SHA-256 over
the key id and every ciphertext, length-prefixed). The digest turns accidental
corruption into a clear error before any ciphertext is parsed; it is not
authentication (anyone can recompute it) and CKKS ciphertexts are malleable.

The encrypted global model (:class:`EncryptedModel`) adds the public packing
layout (``he.layout``, JSON) and the plaintext total weight (``he.weight``): the
sum of the contributing clients' example counts, which the server sees anyway as
reply metadata.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from privfl.core.message import ArrayDict
from privfl.errors import MessageError
from privfl.he.keys import KEY_ID_BYTES
from privfl.he.packing import PackLayout, chunk_count

CT_PREFIX = "he.ct."
KEY_ID = "he.key_id"
DIGEST = "he.digest"
LAYOUT = "he.layout"
WEIGHT = "he.weight"


def _digest(key_id: bytes, ciphertexts: Sequence[bytes | np.ndarray]) -> bytes:
    h = hashlib.sha256(key_id)
    for blob in ciphertexts:
        h.update(len(blob).to_bytes(8, "little"))
        h.update(blob)
    return h.digest()


def _u8(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype=np.uint8).copy()


def ciphertext_arrays(key_id: bytes, ciphertexts: Sequence[bytes]) -> ArrayDict:
    """Arrays carrying ``ciphertexts`` made under ``key_id``."""
    arrays: ArrayDict = {KEY_ID: _u8(key_id), DIGEST: _u8(_digest(key_id, ciphertexts))}
    arrays.update({f"{CT_PREFIX}{i:06d}": _u8(blob) for i, blob in enumerate(ciphertexts)})
    return arrays


def _u8_array(arrays: Mapping[str, np.ndarray], name: str) -> np.ndarray:
    arr = arrays.get(name)
    if arr is None:
        raise MessageError(f"encrypted content lacks {name!r}")
    if arr.dtype != np.uint8 or arr.ndim != 1:
        raise MessageError(f"{name!r} must be a 1-d uint8 array, got {arr.dtype} with shape {arr.shape}")
    return np.ascontiguousarray(arr)


def _bytes_of(arrays: Mapping[str, np.ndarray], name: str) -> bytes:
    return _u8_array(arrays, name).tobytes()


def read_ciphertext_arrays(
    arrays: Mapping[str, np.ndarray], key_id: bytes, count: int, extra: Sequence[str] = ()
) -> list[np.ndarray]:
    """The ``count`` ciphertexts in ``arrays`` (uint8 arrays, not copied) after checking names, key id and digest.

    ``extra`` names other arrays allowed alongside (e.g. the model's layout and weight).
    The count is checked against the arrays present before anything is allocated, so a
    small message declaring a huge model is refused at once.
    """
    present = sum(1 for name in arrays if name.startswith(CT_PREFIX))
    if present != count:
        raise MessageError(f"encrypted content must hold {count} ciphertexts, it holds {present}")
    expected = {KEY_ID, DIGEST, *extra, *(f"{CT_PREFIX}{i:06d}" for i in range(count))}
    if set(arrays) != expected:
        missing, unexpected = sorted(expected - set(arrays)), sorted(set(arrays) - expected)
        raise MessageError(
            f"encrypted content must hold {count} ciphertexts; missing {missing[:4]}, unexpected {unexpected[:4]}"
        )
    got_id = _bytes_of(arrays, KEY_ID)
    if got_id != key_id:
        raise MessageError(
            f"content is encrypted under key {got_id.hex()}, this node holds key {key_id.hex()}: "
            "it cannot be added or decrypted here (under the wrong key it would decrypt to garbage)"
        )
    ciphertexts = [_u8_array(arrays, f"{CT_PREFIX}{i:06d}") for i in range(count)]
    if _bytes_of(arrays, DIGEST) != _digest(key_id, ciphertexts):
        raise MessageError("ciphertext digest mismatch: the ciphertext bytes were corrupted or truncated")
    return ciphertexts


@dataclass(frozen=True)
class EncryptedModel:
    """The global model as the server holds it: an encrypted weighted sum and its total weight.

    The model is ``decrypt(ciphertexts) / weight``, unpacked with ``layout``.

    Attributes:
        layout: names, shapes and dtypes of the model (public).
        key_id: fingerprint of the key the sum is encrypted under.
        weight: total weight (sum of example counts, each at least 1) of the clients in
            the sum: a whole number from 1 to 2**53. It also bounds the number of uploads
            in the sum, which sets the release grid.
        ciphertexts: the serialised encrypted sum, one ciphertext per chunk.
    """

    layout: PackLayout
    key_id: bytes
    weight: float
    ciphertexts: tuple[bytes, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "ciphertexts", tuple(self.ciphertexts))
        if len(self.key_id) != KEY_ID_BYTES:
            raise MessageError(f"key id must be {KEY_ID_BYTES} bytes, got {len(self.key_id)}")
        if not (np.isfinite(self.weight) and 1 <= self.weight <= 2**53 and float(self.weight).is_integer()):
            raise MessageError(f"total weight must be a whole number from 1 to 2**53, got {self.weight}")
        if not self.ciphertexts:
            raise MessageError("an encrypted model needs at least one ciphertext")

    def to_arrays(self) -> ArrayDict:
        arrays = {
            LAYOUT: _u8(self.layout.to_json()),
            WEIGHT: np.array([self.weight], dtype=np.float64),
        }
        arrays.update(ciphertext_arrays(self.key_id, self.ciphertexts))
        return arrays

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], key_id: bytes, slots: int) -> EncryptedModel:
        """Decode and check a model made under ``key_id`` for ``slots``-slot ciphertexts."""
        layout = PackLayout.from_json(_bytes_of(arrays, LAYOUT))
        weight = arrays.get(WEIGHT)
        if weight is None or weight.dtype != np.float64 or weight.shape != (1,):
            raise MessageError(f"encrypted model needs {WEIGHT!r} as one float64 value")
        count = chunk_count(layout.num_values, slots)
        ciphertexts = read_ciphertext_arrays(arrays, key_id, count, extra=(LAYOUT, WEIGHT))
        return cls(layout, key_id, float(weight[0]), tuple(ct.tobytes() for ct in ciphertexts))


def is_encrypted_model(arrays: Mapping[str, np.ndarray]) -> bool:
    """Whether ``arrays`` hold an :class:`EncryptedModel` rather than plaintext parameters."""
    return LAYOUT in arrays
