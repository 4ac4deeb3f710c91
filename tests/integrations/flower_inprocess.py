"""A Flower Grid that runs ClientApps in this process: Flower's server workflows without Ray or sockets.

Each node has its own Flower ``Context`` (``node_config`` with ``partition-id`` and
``num-partitions``, node-local ``state``), kept across messages as a SuperNode keeps
it. A ClientApp that raises becomes Flower's error reply
(``CLIENT_APP_RAISED_EXCEPTION``), as Flower's runtimes return it; a node in
``down`` never answers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from types import SimpleNamespace

from flwr.app import Context, Error, Message, RecordDict
from flwr.common.constant import ErrorCode

RUN_ID = 77


class InProcessGrid:
    def __init__(self, client_app: Callable[[Message, Context], Message], num_nodes: int) -> None:
        self.client_app = client_app
        self.run = SimpleNamespace(run_id=RUN_ID)
        # Flower node ids use all 64 bits.
        self.node_ids = [2**64 - 1 - 7919 * i for i in range(num_nodes)]
        self.contexts = {
            nid: Context(
                run_id=RUN_ID,
                node_id=nid,
                node_config={"partition-id": i, "num-partitions": num_nodes},
                state=RecordDict(),
                run_config={},
            )
            for i, nid in enumerate(self.node_ids)
        }
        self.down: set[int] = set()
        self.errors: list[str] = []
        self.on_message: Callable[[Message], None] | None = None

    def get_node_ids(self) -> list[int]:
        return [n for n in self.node_ids if n not in self.down]

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> list[Message]:
        del timeout
        replies = []
        for message in messages:
            if self.on_message is not None:
                self.on_message(message)
            node = message.metadata.dst_node_id
            if node in self.down:
                continue
            try:
                replies.append(self.client_app(message, self.contexts[node]))
            except Exception as exc:  # what Flower's runtime does with a ClientApp exception
                self.errors.append(f"{type(exc).__name__}: {exc}")
                error = Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=f"{type(exc).__name__}: {exc}")
                replies.append(Message(error, reply_to=message))
        return replies
