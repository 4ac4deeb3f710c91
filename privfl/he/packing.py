"""Flatten a model's named arrays into one float64 vector and cut it into ciphertext-sized chunks.

CKKS encrypts a vector of up to N/2 real values per ciphertext, so a model of D
values needs ``ceil(D / slots)`` ciphertexts: every slot but the last chunk's tail
is used. The :class:`PackLayout` records names, shapes and dtypes so the vector
unpacks back to exactly the original arrays; it contains no values and is public
(the server knows the model architecture anyway).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from privfl.core.message import ArrayDict
from privfl.errors import ConfigError, MessageError

PACKABLE_DTYPES = frozenset(["<f2", "<f4", "<f8", "|i1", "<i2", "<i4", "<i8", "|u1", "<u2", "<u4", "|b1"])
"""Dtypes a layout may hold (float64 carries all of them exactly; 64-bit ints only up to 2**53)."""

MAX_EXACT_INT = 2**53
"""Largest integer magnitude float64 represents exactly."""

MAX_VALUES = 2**40
"""Most scalars a layout may declare (a bound far above any model, far below int64 overflow)."""


@dataclass(frozen=True)
class PackLayout:
    """Names, shapes and dtypes of a model, in order.

    Attributes:
        names: array names.
        shapes: one shape per array.
        dtypes: one little-endian numpy dtype string per array (e.g. ``"<f4"``).
    """

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    dtypes: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", tuple(self.names))
        object.__setattr__(self, "shapes", tuple(tuple(int(d) for d in s) for s in self.shapes))
        object.__setattr__(self, "dtypes", tuple(self.dtypes))
        if not len(self.names) == len(self.shapes) == len(self.dtypes):
            raise ConfigError("a layout needs one shape and one dtype per name")
        if len(set(self.names)) != len(self.names) or not all(isinstance(n, str) for n in self.names):
            raise ConfigError("layout names must be distinct strings")
        total = 0
        for name, shape, dtype in zip(self.names, self.shapes, self.dtypes, strict=True):
            if any(d < 0 for d in shape):
                raise ConfigError(f"array {name!r} has a negative dimension: {shape}")
            if dtype not in PACKABLE_DTYPES:
                raise ConfigError(f"array {name!r} has dtype {dtype}; packable: {', '.join(sorted(PACKABLE_DTYPES))}")
            total += math.prod(shape)  # Python ints: no overflow however large the dimensions
            if total > MAX_VALUES:
                raise ConfigError(f"layout declares more than {MAX_VALUES} values (at array {name!r})")

    @classmethod
    def of(cls, arrays: Mapping[str, np.ndarray]) -> PackLayout:
        """The layout of ``arrays``."""
        return cls(
            names=tuple(arrays),
            shapes=tuple(np.shape(a) for a in arrays.values()),
            dtypes=tuple(_little_endian(np.asarray(a).dtype) for a in arrays.values()),
        )

    @property
    def num_values(self) -> int:
        """Total number of scalars D."""
        return sum(math.prod(s) for s in self.shapes)

    def to_json(self) -> bytes:
        """Canonical JSON encoding (UTF-8)."""
        doc = {"names": list(self.names), "shapes": [list(s) for s in self.shapes], "dtypes": list(self.dtypes)}
        return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> PackLayout:
        """Decode :meth:`to_json` output; raises :class:`MessageError` on anything else."""
        try:
            doc = json.loads(data.decode())
            if set(doc) != {"names", "shapes", "dtypes"}:
                raise ValueError("wrong keys")
            if not all(isinstance(d, int) for s in doc["shapes"] for d in s):
                raise ValueError("dimensions must be integers")
            return cls(tuple(doc["names"]), tuple(tuple(s) for s in doc["shapes"]), tuple(doc["dtypes"]))
        except (ValueError, TypeError, AttributeError, UnicodeDecodeError, ConfigError) as exc:
            raise MessageError(f"invalid packing layout: {exc}") from None


def chunk_count(num_values: int, slots: int) -> int:
    """Ciphertexts needed for ``num_values`` values packed ``slots`` to a ciphertext."""
    return -(-num_values // slots)


def chunk_sizes(num_values: int, slots: int) -> list[int]:
    """Values per ciphertext for a vector of ``num_values`` packed ``slots`` to a ciphertext (all full but the last)."""
    return [min(slots, num_values - start) for start in range(0, num_values, slots)]


def _little_endian(dtype: np.dtype) -> str:
    return (dtype.newbyteorder("<") if dtype.byteorder == ">" else dtype).str


def pack(arrays: Mapping[str, np.ndarray]) -> tuple[PackLayout, np.ndarray]:
    """The layout of ``arrays`` and their values concatenated into one float64 vector."""
    layout = PackLayout.of(arrays)
    parts = []
    for name, value in arrays.items():
        arr = np.asarray(value)
        if arr.dtype.kind in "iu" and arr.size and np.abs(arr.astype(np.float64)).max() > MAX_EXACT_INT:
            raise ConfigError(f"integer array {name!r} has values beyond 2**53, which float64 cannot hold exactly")
        parts.append(arr.astype(np.float64).ravel())
    flat = np.concatenate(parts) if parts else np.zeros(0, dtype=np.float64)
    if not np.all(np.isfinite(flat)):
        raise ConfigError("cannot pack non-finite values")
    return layout, flat


def unpack(layout: PackLayout, flat: np.ndarray) -> ArrayDict:
    """Arrays of ``layout`` from a float64 vector; integer and bool arrays are rounded to the nearest value."""
    if flat.shape != (layout.num_values,):
        raise MessageError(f"cannot unpack {flat.shape} values into a layout of {layout.num_values}")
    out: ArrayDict = {}
    start = 0
    for name, shape, dtype_str in zip(layout.names, layout.shapes, layout.dtypes, strict=True):
        dtype = np.dtype(dtype_str)
        size = math.prod(shape)
        part = flat[start : start + size].reshape(shape)
        start += size
        if dtype.kind == "b":
            out[name] = part > 0.5
        elif dtype.kind in "iu":
            info = np.iinfo(dtype)
            out[name] = np.clip(np.rint(part), info.min, info.max).astype(dtype)
        else:
            out[name] = part.astype(dtype)
    return out
