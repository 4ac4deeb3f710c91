"""privfl client state kept in Flower's node-local ``Context.state``, secrets sealed under a node key.

Flower's deployment runtime runs every message in a fresh ``flwr-clientapp`` process
and a simulation may run a node's consecutive messages in different Ray actors, so a
node's privfl state must travel with Flower's :class:`flwr.app.Context`, which the
SuperNode (or the simulation engine) keeps for the node and never sends to the
SuperLink. After each message the node's privfl :class:`~privfl.core.context.Context`
is saved in one ``ConfigRecord`` (:data:`STATE_RECORD`):

- ``saved``: the checkpoint form of every :class:`~privfl.core.context.Stateful` object
  (no secrets by that protocol's contract, e.g. a local-DP ledger or a SecAgg+ round id);
- ``sealed``: the :class:`~privfl.core.context.SecretStateful` objects' full state (a
  SecAgg+ round's keys and shares), encrypted with AES-256-GCM under the node's own
  key, with the Flower run, Flower node, privfl run and round as associated data;
- ``sealed_at``: that ``[privfl run, round]`` in the clear, so a message of another
  round does not try to open it.

A message of round r opens only a blob sealed in round r of the same run on the same
node: secret state is needed only within a round (across rounds the ``saved`` form
carries the round id). A blob replayed from another round, run or node fails
authentication and the message is refused (:class:`~privfl.errors.ProtocolError`);
a blob whose ``sealed_at`` was altered is ignored, so the protocol sees a node that
holds no secrets for the round and refuses its next stage. Objects that are neither
(caches such as a CKKS cipher) are rebuilt for each message.

The node key (32 bytes from the OS CSPRNG) is read from the file named by the
node config entry :data:`KEY_FILE_CONFIG` (``flower-supernode --node-config
"privfl-state-key-file='/path/node.key'"``), else from
``$PRIVFL_STATE_DIR/node-<flower node id>.key`` (default directory
``~/.local/state/privfl``). A missing file is created on first use with mode 0600;
a file readable by group or others, or not exactly 32 bytes, is refused
(:class:`~privfl.errors.ConfigError`).
"""

from __future__ import annotations

import os
import secrets
import stat
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from flwr.app import ConfigRecord
from flwr.app import Context as FlowerContext

from privfl.core.context import Context, SecretStateful
from privfl.errors import CheckpointError, ConfigError, DecryptionError, ProtocolError
from privfl.secagg.crypto import KEY_BYTES, seal, unseal
from privfl.server import checkpoint

T = TypeVar("T")

STATE_RECORD = "privfl.state"
"""ConfigRecord of Flower's ``Context.state`` holding the node's privfl state (``saved``, ``sealed``, ``sealed_at``)."""
KEY_FILE_CONFIG = "privfl-state-key-file"
"""Node-config entry naming the file that holds the node's 32-byte state key."""
STATE_DIR_ENV = "PRIVFL_STATE_DIR"
"""Environment variable naming the directory of default key files."""
_AD_LABEL = b"privfl/flower-node-state/v1/"


def _default_state_dir() -> Path:
    return Path(os.environ.get(STATE_DIR_ENV) or Path.home() / ".local" / "state" / "privfl")


def _read_key(path: Path) -> bytes:
    info = path.stat()
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"privfl state key file {path} is accessible by group or others; run: chmod 600 {path}")
    key = path.read_bytes()
    if len(key) != KEY_BYTES:
        raise ConfigError(f"privfl state key file {path} must hold exactly {KEY_BYTES} bytes, holds {len(key)}")
    return key


def load_node_key(path: str | os.PathLike[str]) -> bytes:
    """The 32-byte key in ``path``, created (mode 0600, from os.urandom) if the file does not exist.

    Concurrent first uses agree on one key: each writes a private temporary file and
    links it into place, and whoever loses the race reads the winner's key.
    """
    path = Path(path)
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, os.urandom(KEY_BYTES))
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass  # another process created it first: use its key
    finally:
        tmp.unlink()
    return _read_key(path)


def node_key_path(node_config: Mapping[str, Any], flower_node_id: int) -> Path:
    """Where the node's state key lives: the node config's :data:`KEY_FILE_CONFIG`, else the default file."""
    configured = node_config.get(KEY_FILE_CONFIG)
    if configured is not None:
        if not isinstance(configured, str) or not configured:
            raise ConfigError(f"node config {KEY_FILE_CONFIG!r} must be a non-empty path, got {configured!r}")
        return Path(configured)
    return _default_state_dir() / f"node-{flower_node_id}.key"


def associated_data(flower_ctx: FlowerContext, record: str, run_id: int, server_round: int) -> bytes:
    """AES-GCM associated data binding sealed state to Flower run and node, its record, privfl run and round."""
    ids = struct.pack(">QQQQ", flower_ctx.run_id, flower_ctx.node_id, run_id, server_round)
    return _AD_LABEL + ids + record.encode()


@dataclass
class NodeContext(Context):
    """A privfl :class:`Context` whose secret state objects are reloaded with ``load_secret_state_dict``."""

    _secret: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)

    def get_or_create(self, key: str, factory: Callable[[], T]) -> T:
        if key not in self.state and key in self._secret:
            obj = factory()
            obj.load_secret_state_dict(self._secret.pop(key))  # type: ignore[attr-defined]
            self.state[key] = obj
        return super().get_or_create(key, factory)

    def secret_state(self) -> dict[str, dict[str, Any]]:
        """The full state of every :class:`SecretStateful` object (plus any not re-created this message)."""
        saved = dict(self._secret)
        saved.update({k: v.secret_state_dict() for k, v in self.state.items() if isinstance(v, SecretStateful)})
        return saved


def _loads(blob: bytes, what: str) -> dict[str, Any]:
    try:
        return checkpoint.loads(blob, what=what)
    except CheckpointError as exc:
        raise ProtocolError(str(exc)) from None


def open_context(
    flower_ctx: FlowerContext, *, node_id: int, run_id: int, server_round: int, record_name: str = STATE_RECORD
) -> NodeContext:
    """The node's privfl context (kept in record ``record_name``) for a message of ``run_id``, ``server_round``."""
    context = NodeContext(node_id=node_id, run_config=dict(flower_ctx.run_config))
    record = flower_ctx.state.config_records.get(record_name)
    if record is None:
        return context
    plain = _loads(record["saved"], "saved privfl node state") if record.get("saved") else {}
    secret: dict[str, dict[str, Any]] = {}
    if record.get("sealed") and list(record.get("sealed_at", [])) == [run_id, server_round]:
        key = load_node_key(node_key_path(flower_ctx.node_config, flower_ctx.node_id))
        try:
            blob = unseal(key, record["sealed"], associated_data(flower_ctx, record_name, run_id, server_round))
        except DecryptionError:
            raise ProtocolError(
                f"sealed privfl state of Flower node {flower_ctx.node_id} does not open for run {run_id} round "
                f"{server_round} under this node's key: it was sealed elsewhere or altered; refusing the message"
            ) from None
        secret = _loads(blob, "sealed privfl node state")
    context.restore_state({k: v for k, v in plain.items() if k not in secret})
    context._secret = secret
    return context


def save_context(
    flower_ctx: FlowerContext, context: NodeContext, *, run_id: int, server_round: int, record_name: str = STATE_RECORD
) -> None:
    """Store ``context`` in Flower's node-local state; secret state only sealed (see the module docstring)."""
    saved = context.checkpoint_state()
    secret = context.secret_state()
    sealed = b""
    if secret:
        key = load_node_key(node_key_path(flower_ctx.node_config, flower_ctx.node_id))
        sealed = seal(key, checkpoint.dumps(secret), associated_data(flower_ctx, record_name, run_id, server_round))
    flower_ctx.state.config_records[record_name] = ConfigRecord(
        {
            "saved": checkpoint.dumps(saved) if saved else b"",
            "sealed": sealed,
            "sealed_at": [run_id, server_round],
        }
    )
