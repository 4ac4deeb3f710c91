"""The privacy ledger: every noisy release of a run, as events, with an optional budget.

The ledger is the record from which epsilon is computed (by composing its entries in an
accountant), saved with the run's checkpoint and reloaded on resume. A loop calls
:meth:`PrivacyLedger.check` before drawing any noise for a round and
:meth:`PrivacyLedger.record` after each release.

Integrity. The entries form an append-only hash chain (h_0 = SHA-256 of a domain tag,
h_i = SHA-256(h_{i-1} || canonical JSON of entry i)), stored with the state, which detects
accidental corruption. A ledger given an operator ``key`` (>= 32 bytes) also stores
HMAC-SHA256(key, header || entry count || h_n) (RFC 2104; the header is format, version,
budget and accountant) and refuses, on load, any state whose MAC does not verify: an entry
edited, inserted or deleted, the chain truncated, or the digest recomputed after an edit
all fail without the key. This protects the standalone ledger file and the ledger inside
checkpoints against anyone who can write those files but does not hold the key (a storage
or backup operator, a script that "resets" the spend, a resumed run pointed at an edited
checkpoint). It does not protect against a holder of the key, nor against replacing the
file with an *older* authentic one (a rollback): to detect that, publish :attr:`PrivacyLedger.head`
(entry count and chain digest) and compare. Without a key, nothing beyond accidental
corruption is claimed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from privfl.accounting.accountant import PrivacyAccountant, check_accountant_name, make_accountant, unsupported_reason
from privfl.accounting.checks import check_delta, check_epsilon, integer
from privfl.accounting.events import DpEvent, check_event, event_from_dict
from privfl.errors import AccountingError, BudgetExceededError, CheckpointError, ConfigError, PrivflError

SCOPES = ("client", "record")
LOCALITIES = ("central", "local", "distributed")
_FORMAT = "privfl.ledger"
_VERSION = 2
_UNCHAINED_VERSION = 1
"""Ledgers written before the chain and MAC; readable only without a key (no integrity claim)."""
_CHAIN_START = hashlib.sha256(b"privfl.ledger.chain.v2").digest()
_MAC_DOMAIN = b"privfl.ledger.mac.v2\x00"
MIN_KEY_BYTES = 32
"""Shortest operator key accepted for the ledger MAC (HMAC-SHA256: 256-bit keys)."""
_STATE_KEYS = {"format", "version", "budget", "accountant", "entries"}
_CACHED_COMPOSITIONS = 4


@dataclass(frozen=True)
class PrivacyBudget:
    """A total (epsilon, delta) a run may spend: epsilon > 0 (nats), delta in (0, 1)."""

    epsilon: float
    delta: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "epsilon", check_epsilon(self.epsilon))
        object.__setattr__(self, "delta", check_delta(self.delta))


@dataclass(frozen=True)
class LedgerEntry:
    """One noisy release: its event, the round, and who/what it protects.

    ``scope`` is ``"client"`` (client-level DP) or ``"record"`` (sample-level DP);
    ``locality`` is ``"central"`` (noise added once by the server), ``"local"`` (by a client,
    protecting its own release) or ``"distributed"`` (noise shares added by the clients
    before secure aggregation, protecting the sum).
    """

    event: DpEvent
    server_round: int
    scope: str
    locality: str
    note: str = ""

    def __post_init__(self) -> None:
        check_event(self.event, "event")
        integer(self.server_round, "server_round", 0)
        if self.scope not in SCOPES:
            raise ConfigError(f"scope must be one of {SCOPES}, got {self.scope!r}")
        if self.locality not in LOCALITIES:
            raise ConfigError(f"locality must be one of {LOCALITIES}, got {self.locality!r}")
        if not isinstance(self.note, str):
            raise ConfigError(f"note must be a string, got {self.note!r}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "event": self.event.to_dict(),
            "server_round": self.server_round,
            "scope": self.scope,
            "locality": self.locality,
            "note": self.note,
        }


class PrivacyLedger:
    """Entries of one run, the accountant that interprets them, and an optional budget.

    All entries protect the same unit (``scope``): composing client-level and record-level
    releases into one epsilon would mean neither, so a ledger refuses to mix them.
    Identical events are grouped before composition, and the last few compositions are
    cached by their event counts: epsilon of 10^4 identical entries costs one composition,
    and the round that :meth:`check` composed is reused once it is recorded (which
    matters for the slow PLD backend).
    """

    def __init__(
        self, budget: PrivacyBudget | None = None, accountant: str = "rdp", *, key: bytes | None = None
    ) -> None:
        if budget is not None and not isinstance(budget, PrivacyBudget):
            raise ConfigError(f"budget must be a PrivacyBudget or None, got {budget!r}")
        check_accountant_name(accountant)
        self._budget = budget
        self._accountant = accountant
        self._key = check_key(key)
        self._head = _CHAIN_START
        self._entries: list[LedgerEntry] = []
        self._counts: Counter[DpEvent] = Counter()
        # event counts -> (accountant with them composed, {delta: epsilon}); oldest first.
        self._cache: dict[frozenset[tuple[DpEvent, int]], tuple[PrivacyAccountant, dict[float, float]]] = {}

    @property
    def budget(self) -> PrivacyBudget | None:
        """The (epsilon, delta) this run may spend, or None for no limit."""
        return self._budget

    @property
    def accountant(self) -> str:
        """Name of the accountant that interprets the entries (``"rdp"`` or ``"pld"``)."""
        return self._accountant

    @property
    def authenticated(self) -> bool:
        """Whether this ledger holds an operator key: its states carry a MAC, and it loads only states that verify."""
        return self._key is not None

    @property
    def head(self) -> tuple[int, str]:
        """(entry count, hex chain digest): publish it to detect a later rollback to an older ledger."""
        return len(self._entries), self._head.hex()

    @property
    def entries(self) -> tuple[LedgerEntry, ...]:
        """Every recorded release, in order."""
        return tuple(self._entries)

    def _composition(
        self, counts: Counter[DpEvent], build: Callable[[], PrivacyAccountant]
    ) -> tuple[PrivacyAccountant, dict[float, float]]:
        """(accountant with ``counts`` composed, {delta: epsilon}), from the cache or ``build``."""
        key = frozenset(counts.items())
        cached = self._cache.pop(key, None) or (build(), {})
        self._cache[key] = cached  # most recently used last
        while len(self._cache) > _CACHED_COMPOSITIONS:
            del self._cache[next(iter(self._cache))]
        return cached

    def _spent(self) -> tuple[PrivacyAccountant, dict[float, float]]:
        def build() -> PrivacyAccountant:
            accountant = make_accountant(self.accountant)
            for event, count in self._counts.items():
                accountant.compose(event, count)
            return accountant

        return self._composition(self._counts, build)

    @staticmethod
    def _epsilon_at(composition: tuple[PrivacyAccountant, dict[float, float]], delta: float) -> float:
        accountant, epsilons = composition
        if delta not in epsilons:
            epsilons[delta] = accountant.get_epsilon(delta)
        return epsilons[delta]

    def _delta(self, delta: float | None) -> float:
        if delta is not None:
            return check_delta(delta)
        if self.budget is None:
            raise ConfigError("delta is required when the ledger has no budget")
        return self.budget.delta

    def epsilon(self, delta: float | None = None) -> float:
        """Epsilon spent so far at ``delta`` (default: the budget's delta)."""
        return self._epsilon_at(self._spent(), self._delta(delta))

    def check(self, *events: DpEvent) -> None:
        """Raise BudgetExceededError if releasing ``events`` now would exceed the budget.

        Changes nothing. A no-op without a budget (but unsupported events still raise
        AccountingError, so a run cannot start releases it could never account).
        """
        for event in events:
            self._check_supported(event)
        if self.budget is None or not events:
            return
        spent_accountant = self._spent()[0]
        spent = self.epsilon()

        def build() -> PrivacyAccountant:
            accountant = spent_accountant.copy()
            for event in events:
                accountant.compose(event)
            return accountant

        # Cached under the counts it would have once recorded, so record() then reuses it.
        after = self._epsilon_at(self._composition(self._counts + Counter(events), build), self.budget.delta)
        if after > self.budget.epsilon:
            raise BudgetExceededError(
                f"privacy budget exceeded: spent epsilon={spent:.6g}, the next release would bring it "
                f"to {after:.6g}, above the budget epsilon={self.budget.epsilon:g} at "
                f"delta={self.budget.delta:g}; refusing before any noise is drawn"
            )

    def _check_supported(self, event: DpEvent) -> None:
        reason = unsupported_reason(event, self.accountant)
        if reason is not None:
            raise AccountingError(f"the ledger cannot account {event!r}: {reason}")

    def record(
        self, event: DpEvent, *, server_round: int, scope: str = "client", locality: str = "central", note: str = ""
    ) -> LedgerEntry:
        """Append one release (which has already happened, so no budget check) and return its entry."""
        entry = LedgerEntry(event, server_round, scope, locality, note)
        self._check_supported(event)
        if self._entries and entry.scope != self._entries[0].scope:
            raise ConfigError(
                f"this ledger holds {self._entries[0].scope}-level entries; a {entry.scope}-level "
                "release protects a different unit and needs its own ledger"
            )
        self._entries.append(entry)
        self._counts[event] += 1
        self._head = hashlib.sha256(self._head + _canonical(entry.to_dict())).digest()
        return entry

    def _header(self) -> dict[str, Any]:
        budget = None if self.budget is None else {"epsilon": self.budget.epsilon, "delta": self.budget.delta}
        return {"format": _FORMAT, "version": _VERSION, "budget": budget, "accountant": self.accountant}

    def _mac(self, header: dict[str, Any], count: int, head: bytes) -> str | None:
        if self._key is None:
            return None
        # RFC 2104 HMAC-SHA256 over the header, the entry count and the chain head: any
        # edit, insertion, deletion or truncation of entries changes (count, head).
        message = _MAC_DOMAIN + _canonical(header) + count.to_bytes(8, "big") + head
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state: header, entries, chain digest and (with a key) the MAC. Never the key."""
        header = self._header()
        return {
            **header,
            "entries": [entry.to_dict() for entry in self._entries],
            "chain": self._head.hex(),
            "mac": self._mac(header, len(self._entries), self._head),
        }

    @classmethod
    def from_state_dict(cls, state: Any, *, key: bytes | None = None) -> PrivacyLedger:
        """Rebuild a ledger from :meth:`state_dict`; raises CheckpointError if it is invalid.

        The entries must reproduce the stored chain digest; with ``key`` the state must carry
        a MAC that verifies under it (see the module docstring for what that protects).
        """
        try:
            if not isinstance(state, dict) or state.get("format") != _FORMAT:
                raise ConfigError(f"not a privfl ledger (format must be {_FORMAT!r})")
            version = state.get("version")
            if version not in (_VERSION, _UNCHAINED_VERSION):
                raise ConfigError(f"unsupported ledger version {version!r}")
            expected = _STATE_KEYS | ({"chain", "mac"} if version == _VERSION else set())
            if set(state) != expected:
                raise ConfigError(f"ledger state needs keys {sorted(expected)}, got {sorted(state)}")
            raw_budget = state["budget"]
            if raw_budget is not None and (not isinstance(raw_budget, dict) or set(raw_budget) != {"epsilon", "delta"}):
                raise ConfigError(f"budget must be null or {{epsilon, delta}}, got {raw_budget!r}")
            budget = None if raw_budget is None else PrivacyBudget(**raw_budget)
            ledger = cls(budget, state["accountant"], key=key)
            if not isinstance(state["entries"], list):
                raise ConfigError("entries must be a list")
            for raw in state["entries"]:
                if not isinstance(raw, dict) or set(raw) != {"event", "server_round", "scope", "locality", "note"}:
                    raise ConfigError(f"malformed ledger entry {raw!r}")
                ledger.record(
                    event_from_dict(raw["event"]),
                    server_round=raw["server_round"],
                    scope=raw["scope"],
                    locality=raw["locality"],
                    note=raw["note"],
                )
            ledger._verify(state)
        except (PrivflError, KeyError, TypeError, RecursionError) as exc:
            raise CheckpointError(f"invalid privacy ledger state: {exc}") from exc
        return ledger

    def _verify(self, state: dict[str, Any]) -> None:
        """Check the rebuilt entries against the state's chain digest and, with a key, its MAC."""
        if state["version"] == _UNCHAINED_VERSION:
            if self._key is not None:
                raise ConfigError("the ledger has no MAC (written before version 2) but an operator key was given")
            return
        if state["chain"] != self._head.hex():
            raise ConfigError("failed its integrity check: the entries do not match their chain digest (corrupt)")
        if self._key is None:
            return
        header = {k: state[k] for k in ("format", "version", "budget", "accountant")}
        mac = state["mac"]
        expected = self._mac(header, len(self._entries), self._head)
        if not isinstance(mac, str) or expected is None or not hmac.compare_digest(mac, expected):
            raise ConfigError(
                "failed authentication under the operator key: entries edited, inserted, deleted or truncated, "
                "or written without this key"
            )

    def load_state_dict(self, state: Any) -> None:
        """Replace this ledger's accountant and entries with ``state`` (validated first, under this ledger's key).

        A budget this ledger was built with wins over the saved one: a resumed run is held
        to the budget it is given now (spent epsilon always comes from the saved entries).
        """
        other = self.from_state_dict(state, key=self._key)
        budget = self._budget if self._budget is not None else other.budget
        self.__dict__.update(other.__dict__)
        self._budget = budget

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the ledger as JSON atomically (temp file, fsync, os.replace), with its chain digest and MAC."""
        path = Path(path)
        payload = {"ledger": self.state_dict()}
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(payload, fh, allow_nan=False, indent=1)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, key: bytes | None = None) -> PrivacyLedger:
        """Read a ledger written by :meth:`save`.

        Raises:
            CheckpointError: the file is missing, unreadable, corrupt, or (with ``key``) fails
                authentication.
        """
        try:
            text = Path(path).read_text(encoding="utf-8")
            payload = json.loads(text, parse_constant=_reject_constant)
        except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise CheckpointError(f"cannot read privacy ledger {str(path)!r}: {exc}") from exc
        if not isinstance(payload, dict) or set(payload) != {"ledger"}:
            raise CheckpointError(f"{str(path)!r} is not a privfl ledger file")
        try:
            return cls.from_state_dict(payload["ledger"], key=key)
        except CheckpointError as exc:
            raise CheckpointError(f"privacy ledger {str(path)!r}: {exc}") from exc


def check_key(key: bytes | None) -> bytes | None:
    """``key`` if it is None or bytes of at least :data:`MIN_KEY_BYTES`."""
    if key is None:
        return None
    if not isinstance(key, bytes) or len(key) < MIN_KEY_BYTES:
        raise ConfigError(f"the ledger key must be at least {MIN_KEY_BYTES} bytes (e.g. secrets.token_bytes(32))")
    return key


def read_key_file(path: str | os.PathLike[str]) -> bytes:
    """An operator key from a file holding it in hex.

    E.g. ``python -c "import secrets; print(secrets.token_hex(32))" > ledger.key``.
    """
    try:
        key = bytes.fromhex(Path(path).read_text(encoding="ascii").strip())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"cannot read a hex ledger key from {str(path)!r}: {exc}") from None
    return check_key(key)  # type: ignore[return-value]


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False).encode("utf-8")


def _reject_constant(name: str) -> float:
    raise ValueError(f"non-finite number {name} in ledger file")


def _fsync_dir(directory: Path) -> None:
    """Make the rename durable; not every platform can open a directory."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
