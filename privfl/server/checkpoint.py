"""Atomic, pickle-free checkpoints of a run's state.

A checkpoint is one ``.npz`` file: numpy arrays stored natively and a JSON tree
(stored as a UTF-8 ``uint8`` array) that refers to them. It is written to a
temporary file in the same directory, flushed to disk, then renamed over the old
one, so a crash at any point leaves either the previous or the new checkpoint,
never a torn one. Loading never unpickles (``allow_pickle=False``).
"""

from __future__ import annotations

import base64
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from privfl.errors import CheckpointError

_TREE = "__tree__"
FORMAT = "privfl-checkpoint/1"
_MARKERS = ({"__array__"}, {"__bytes__"})


def _flatten(obj: Any, arrays: dict[str, np.ndarray]) -> Any:
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            # np.savez would pickle it, and load (allow_pickle=False) would then refuse the file.
            raise CheckpointError("cannot checkpoint an object array (it would need pickle)")
        key = f"a{len(arrays)}"
        arrays[key] = obj
        return {"__array__": key}
    if isinstance(obj, (bytes, bytearray)):
        return {"__bytes__": base64.b64encode(bytes(obj)).decode("ascii")}
    if isinstance(obj, dict):
        if not all(isinstance(k, str) for k in obj):
            raise CheckpointError("checkpoint dict keys must be strings")
        if set(obj) in _MARKERS:
            raise CheckpointError(f"a checkpoint dict may not have the single reserved key {next(iter(obj))!r}")
        return {k: _flatten(v, arrays) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_flatten(v, arrays) for v in obj]
    if isinstance(obj, np.generic):
        return _flatten(obj.item(), arrays)  # e.g. complex or datetime items are refused below
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise CheckpointError(f"cannot checkpoint a value of type {type(obj).__name__}")


def _unflatten(obj: Any, arrays: dict[str, np.ndarray]) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {"__array__"}:
            try:
                return arrays[obj["__array__"]]
            except KeyError:
                raise CheckpointError(f"checkpoint refers to missing array {obj['__array__']!r}") from None
        if set(obj) == {"__bytes__"}:
            return base64.b64decode(obj["__bytes__"])
        return {k: _unflatten(v, arrays) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_unflatten(v, arrays) for v in obj]
    return obj


def dumps(state: dict[str, Any]) -> bytes:
    """The checkpoint form of ``state`` (nested dicts/lists of JSON values, bytes and arrays) as bytes."""
    arrays: dict[str, np.ndarray] = {}
    tree = {"format": FORMAT, "state": _flatten(state, arrays)}
    blob = np.frombuffer(json.dumps(tree).encode("utf-8"), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **{_TREE: blob}, **arrays)
    return buffer.getvalue()


def loads(data: bytes, what: str = "checkpoint") -> dict[str, Any]:
    """Parse bytes produced by :func:`dumps` without unpickling.

    Raises:
        CheckpointError: the bytes are truncated, tampered with or of another format
            (``what`` names the source in the message).
    """
    if not data.startswith(b"PK\x03\x04"):  # the zip signature every .npz starts with (numpy would talk of pickles)
        raise CheckpointError(f"{what} is not a privfl checkpoint (not an .npz archive)")
    try:
        loaded = np.load(io.BytesIO(data), allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise CheckpointError(f"{what} is not an .npz archive")
        with loaded as npz:
            arrays = {k: npz[k] for k in npz.files}
    except CheckpointError:
        raise
    except Exception as exc:  # zipfile/numpy raise many types on damaged data (incl. NotImplementedError)
        raise CheckpointError(f"{what} is unreadable: {type(exc).__name__}: {exc}") from None
    blob = arrays.pop(_TREE, None)
    if blob is None or blob.dtype != np.uint8:
        raise CheckpointError(f"{what} has no state tree")
    try:
        tree = json.loads(blob.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{what} has a corrupt state tree: {exc}") from None
    if not isinstance(tree, dict) or tree.get("format") != FORMAT or "state" not in tree:
        raise CheckpointError(f"{what} is not in format {FORMAT}")
    try:
        return _unflatten(tree["state"], arrays)
    except CheckpointError:
        raise
    except (TypeError, ValueError) as exc:  # tampered markers, e.g. bad base64 or a non-string array key
        raise CheckpointError(f"{what} has a corrupt state tree: {exc!r}") from None


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> None:
    """Atomically write ``state`` (nested dicts/lists of JSON values, bytes and arrays) to ``path``."""
    path = Path(path)
    data = dumps(state)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Raises:
        CheckpointError: the file is missing, truncated, tampered with or of another format.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"checkpoint {path} is unreadable: {exc}") from None
    return loads(data, what=f"checkpoint {path}")
