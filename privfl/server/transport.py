"""Moving messages between the server and simulated clients, and driving exchanges.

Every message crosses the wire codec in both directions, so what a client sees
is exactly what a remote client would decode, and bytes are counted per round.
Encoded messages are arrays (:func:`~privfl.core.wire.encode_array`) handed over to
the receiver, which decodes them without copying (``owned=True``); between processes
they travel as raw pipe payloads (``send_bytes`` into a buffer of the announced size),
never pickled.
Clients run in this process, or in worker processes where each client is pinned
to one worker so its :class:`~privfl.core.context.Context` persists across rounds.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing import connection as mp_connection
from typing import Any, Protocol, TypeVar

import numpy as np

from privfl.core.context import Context
from privfl.core.exchange import Exchange
from privfl.core.message import Message
from privfl.core.mods import App
from privfl.core.wire import DEFAULT_LIMITS, WireLimits, decode, encode_array
from privfl.errors import ConfigError, PrivflError
from privfl.server.failures import FailureInjector, FailurePlan

T = TypeVar("T")


@dataclass
class TrafficCounter:
    """Encoded bytes sent to (down) and received from (up) clients, and message counts."""

    bytes_down: int = 0
    bytes_up: int = 0
    messages_down: int = 0
    messages_up: int = 0

    def reset(self) -> None:
        self.bytes_down = self.bytes_up = self.messages_down = self.messages_up = 0


class Transport(Protocol):
    """Moves a round's messages between the server and clients (see :func:`drive`)."""

    traffic: TrafficCounter

    def deliver(self, outbox: Sequence[Message]) -> Iterator[Message]:
        """Send ``outbox`` and yield the replies that arrive (a missing reply is a dropout)."""
        ...

    def client_state(self) -> dict[str, dict[str, Any]]:
        """Checkpoint form of the client-side state this transport holds, by node id."""
        ...

    def restore_client_state(self, saved: dict[str, dict[str, Any]]) -> None:
        """Give clients back the state of :meth:`client_state` (on resume)."""
        ...

    def close(self) -> None: ...


class ClientError(PrivflError):
    """A simulated client raised while handling a message (its traceback is in the text)."""


class InProcessClients:
    """Simulated clients in this process.

    Args:
        app: the client app (a :class:`~privfl.client.app.ClientApp` or any ``App``).
        failures: failure plan applied to every delivered message.
        limits: wire limits used when decoding on either side.
        on_client_error: "raise" to propagate client exceptions, "drop" to treat the
            client as dropped out (as a real deployment would see it).
    """

    def __init__(
        self,
        app: App,
        failures: FailurePlan | None = None,
        limits: WireLimits = DEFAULT_LIMITS,
        on_client_error: str = "raise",
    ) -> None:
        self.app = app
        self.limits = limits
        self.failures = FailureInjector(failures)
        self.traffic = TrafficCounter()
        if on_client_error not in ("raise", "drop"):
            raise ConfigError(f"on_client_error must be 'raise' or 'drop', got {on_client_error!r}")
        self.on_client_error = on_client_error
        self.contexts: dict[int, Context] = {}

    def context(self, node_id: int) -> Context:
        """The persistent context of ``node_id``."""
        return self.contexts.setdefault(node_id, Context(node_id=node_id))

    def client_state(self) -> dict[str, dict[str, Any]]:
        return {str(n): ctx.checkpoint_state() for n, ctx in self.contexts.items()}

    def restore_client_state(self, saved: dict[str, dict[str, Any]]) -> None:
        for node, state in saved.items():
            self.context(int(node)).restore_state(state)

    def _handle_bytes(self, node_id: int, data: np.ndarray) -> np.ndarray:
        message = decode(data, self.limits, owned=True)
        return encode_array(self.app(message, self.context(node_id)))

    def _outgoing(self, message: Message) -> np.ndarray | None:
        """``message`` encoded and counted, or None if its destination has failed."""
        if self.failures.drops(message):
            return None
        data = encode_array(message)
        self.traffic.bytes_down += len(data)
        self.traffic.messages_down += 1
        return data

    def _incoming(self, data: np.ndarray) -> Message:
        """A client's reply (a buffer nobody else holds), counted and decoded."""
        self.traffic.bytes_up += len(data)
        self.traffic.messages_up += 1
        return decode(data, self.limits, owned=True)

    def deliver(self, outbox: Sequence[Message]) -> Iterator[Message]:
        """Send ``outbox`` and yield replies lazily, as each client finishes."""
        for message in outbox:
            data = self._outgoing(message)
            reply = None if data is None else self._call(message.metadata.dst_node, data)
            if reply is not None:
                yield self._incoming(reply)

    def _call(self, node_id: int, data: np.ndarray) -> np.ndarray | None:
        try:
            return self._handle_bytes(node_id, data)
        except Exception as exc:
            if self.on_client_error == "drop":
                return None
            raise ClientError(f"client {node_id} failed: {exc!r}") from exc

    def close(self) -> None:
        """Release resources (nothing to release in-process)."""


_STATE = -1
"""Job "node id" asking a worker for (or giving it) its clients' checkpoint state."""


def _recv_array(conn: Any, size: int) -> np.ndarray:
    """The next raw pipe payload, of ``size`` announced bytes, in a new array (the receiver's own)."""
    buffer = np.empty(size, dtype=np.uint8)
    if conn.recv_bytes_into(buffer) != size:
        raise EOFError(f"expected a payload of {size} bytes")
    return buffer


def _worker_main(app: App, limits: WireLimits, conn: Any) -> None:
    # Protocol: the parent sends a job header (node id and payload size, or _STATE with its payload;
    # None to stop), then for a node the encoded message as raw bytes. The worker answers (True, size)
    # followed by the encoded reply as raw bytes, or (False, traceback); a state request gets (True, state).
    contexts: dict[int, Context] = {}
    while True:
        job = conn.recv()
        if job is None:
            return
        node_id, payload = job
        if node_id == _STATE:
            # Between rounds only: our own parent process, never another party's bytes.
            if payload is None:
                conn.send((True, {str(n): ctx.checkpoint_state() for n, ctx in contexts.items()}))
            else:
                for node, saved in payload.items():
                    contexts.setdefault(int(node), Context(node_id=int(node))).restore_state(saved)
                conn.send((True, None))
            continue
        data = _recv_array(conn, payload)
        try:
            message = decode(data, limits, owned=True)
            ctx = contexts.setdefault(node_id, Context(node_id=node_id))
            reply = encode_array(app(message, ctx))
        except Exception:
            conn.send((False, traceback.format_exc()))
        else:
            conn.send((True, len(reply)))
            conn.send_bytes(reply)


class ProcessPoolClients(InProcessClients):
    """Simulated clients spread over ``workers`` processes (client ``i`` lives in worker ``i % workers``).

    Only encoded bytes cross process boundaries. The app must be picklable (a
    module-level ``client_fn``) when the start method is not ``fork``.
    """

    def __init__(self, app: App, workers: int, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        if workers < 1:
            raise ConfigError(f"workers must be >= 1, got {workers}")
        method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
        ctx = mp.get_context(method)
        self._conns = []
        self._procs = []
        for _ in range(workers):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker_main, args=(app, self.limits, child), daemon=True)
            proc.start()
            child.close()
            self._conns.append(parent)
            self._procs.append(proc)
        self._dead: set[int] = set()

    def deliver(self, outbox: Sequence[Message]) -> Iterator[Message]:
        # One job in flight per worker: a worker blocked on sending a large reply
        # can then never wait on a parent blocked on sending it the next job.
        queues: list[list[tuple[int, np.ndarray]]] = [[] for _ in self._conns]
        for message in outbox:
            data = self._outgoing(message)
            if data is not None:
                node = message.metadata.dst_node
                queues[node % len(self._conns)].append((node, data))
        busy: dict[Any, tuple[int, int]] = {}

        def submit(w: int) -> None:
            if w in self._dead:
                self._fail(queues[w].pop(0)[0] if queues[w] else None, w, "its worker process died")
                queues[w].clear()
            elif queues[w]:
                node, data = queues[w].pop(0)
                self._conns[w].send((node, len(data)))
                self._conns[w].send_bytes(data)
                busy[self._conns[w]] = (w, node)

        try:
            for w in range(len(self._conns)):
                submit(w)
            while busy:
                for conn in mp_connection.wait(list(busy)):
                    w, node = busy.pop(conn)
                    try:
                        ok, payload = conn.recv()
                        if ok:
                            payload = _recv_array(conn, payload)
                    except (EOFError, OSError):
                        self._dead.add(w)
                        ok, payload = False, "worker process died"
                    submit(w)
                    if not ok:
                        self._fail(node, w, payload)
                        continue
                    yield self._incoming(payload)
        finally:
            # A consumer that stops early (an exchange that aborts, or unread replies) must not
            # leave answers in the pipes for the next delivery to mistake for its own.
            for conn, (w, _) in busy.items():
                try:
                    ok, size = conn.recv()
                    if ok:
                        _recv_array(conn, size)
                except (EOFError, OSError):
                    self._dead.add(w)

    def _fail(self, node: int | None, worker: int, detail: str) -> None:
        if node is None or self.on_client_error == "drop":
            return
        raise ClientError(f"client {node} failed in worker {worker}:\n{detail}")

    def client_state(self) -> dict[str, dict[str, Any]]:
        """The checkpoint state of every client, gathered from the workers that hold them."""
        saved: dict[str, dict[str, Any]] = {}
        for conn in self._conns:
            conn.send((_STATE, None))
            saved.update(conn.recv()[1])
        return saved

    def restore_client_state(self, saved: dict[str, dict[str, Any]]) -> None:
        for w, conn in enumerate(self._conns):
            conn.send((_STATE, {n: s for n, s in saved.items() if int(n) % len(self._conns) == w}))
            conn.recv()

    def close(self) -> None:
        for conn in self._conns:
            with contextlib.suppress(BrokenPipeError, OSError):
                conn.send(None)
        for proc in self._procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()


def drive(exchange: Exchange[T], deliver: Callable[[Sequence[Message]], Iterable[Message]]) -> T:
    """Run a sans-IO exchange to completion, moving its messages with ``deliver``.

    Replies the exchange did not read before yielding again are discarded.
    """
    replies: Iterator[Message] | None = None
    try:
        outbox = next(exchange)
        while True:
            if replies is not None and hasattr(replies, "close"):
                replies.close()
            replies = iter(deliver(outbox))
            outbox = exchange.send(replies)
    except StopIteration as stop:
        return stop.value
    finally:
        if replies is not None and hasattr(replies, "close"):
            replies.close()
