"""Generate the known-answer transcript of one full SecAgg+ round (tests/vectors/secagg_round.json).

Run once, from the repository root: ``python tests/vectors/secagg_round.py``. The
committed JSON file is the reference; ``test_secagg_transcript.py`` regenerates the round
and compares it digest by digest, and checks that this script still writes the file.

The round (Bonawitz et al. CCS'17, Figure 5, the active-server protocol, with Bell et
al. CCS'20's neighbour graph): n = 5 clients with fixed updates and weights, identity
and operator keys from fixed Ed25519 seeds (signatures are deterministic, RFC 8032
section 5.1.6), and every client's randomness a deterministic stream (SHA-256 in counter
mode over a per-node label) fed to ``SecAggMod``'s private ``_entropy``. Client 5 drops
after share-keys: its shares are in its neighbours' hands, its masked input never
arrives, and the server recovers its pairwise mask keys at unmasking. The server draws no
random bytes. Every message travels through the wire codec (:mod:`privfl.core.wire`);
the transcript records, in order, each message's stage, source, destination, size and
the SHA-256 of its encoded bytes, then the exact sum. Byte strings are lowercase hex.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from privfl.client.app import ClientApp
from privfl.client.numpy_client import NumPyClient
from privfl.core import wire
from privfl.core.context import Context
from privfl.core.exchange import RoundSpec, SamplingInfo
from privfl.core.message import Message
from privfl.secagg import SecAggConfig, SecAggMod, secagg_exchange
from privfl.secagg import protocol as p
from privfl.secagg.identity import ClientTrust, IdentityKey, Roster
from privfl.server.transport import drive

HERE = Path(__file__).resolve().parent
FILE = HERE / "secagg_round.json"
NODES = (1, 2, 3, 4, 5)
DIMENSION = 4
RUN_ID, SERVER_ROUND = 7, 1
CONFIG = SecAggConfig(coordinate_bound=2.0, bits=16, max_weight=64, corruption=0.0)
DROPS = frozenset({(p.STAGE_MASKED_INPUT, 5)})  # (stage, node): node 5 leaves after share-keys
LABEL = b"privfl transcript/v1/"


class CounterStream:
    """SHA-256 in counter mode: block i = SHA-256(label || i as 8 bytes big-endian); counts the bytes drawn."""

    def __init__(self, label: bytes) -> None:
        self.label, self.counter, self.buffer, self.drawn = label, 0, b"", 0

    def __call__(self, n: int) -> bytes:
        while len(self.buffer) < n:
            self.buffer += hashlib.sha256(self.label + self.counter.to_bytes(8, "big")).digest()
            self.counter += 1
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        self.drawn += n
        return out


def identity(name: str) -> IdentityKey:
    """An Ed25519 key from the fixed seed SHA-256(LABEL || name) (RFC 8032 section 5.1.5)."""
    return IdentityKey(Ed25519PrivateKey.from_private_bytes(hashlib.sha256(LABEL + name.encode()).digest()))


def update(node: int) -> np.ndarray:
    """Client ``node``'s fixed update: exact binary fractions in [-1, 1] (float32)."""
    return np.array([(node * (i + 3) % 9 - 4) / 4 for i in range(DIMENSION)], dtype=np.float32)


def weight(node: int) -> int:
    """Client ``node``'s number of examples."""
    return 2 * node + 1


class FixedClient(NumPyClient):
    def __init__(self, node: int) -> None:
        self.node = node

    def get_parameters(self, config: dict) -> list[np.ndarray]:
        return [np.zeros(DIMENSION, np.float32)]

    def fit(self, parameters: list[np.ndarray], config: dict) -> tuple[list[np.ndarray], int, dict]:
        return [parameters[0] + update(self.node)], weight(self.node), {}

    def evaluate(self, parameters: list[np.ndarray], config: dict) -> tuple[float, int, dict]:
        return 0.0, 1, {}


def run(entropy: Callable[[int], Callable[[int], bytes]] | None = None) -> dict[str, Any]:
    """The round's transcript; ``entropy(node)`` gives each client's byte source (``None``: the OS CSPRNG)."""
    operator = identity("operator")
    keys = {u: identity(f"node {u}") for u in NODES}
    roster = Roster({u: k.public for u, k in keys.items()}, CONFIG.corruption, int(CONFIG.security_bits))
    signed = roster.sign(operator)
    trust = ClientTrust(operator.public, keys)
    sources = {u: None if entropy is None else entropy(u) for u in NODES}
    apps = {
        u: ClientApp(
            lambda node: FixedClient(node),
            mods=[SecAggMod(trust=trust) if s is None else SecAggMod(trust=trust, _entropy=s)],
        )
        for u, s in sources.items()
    }
    contexts = {u: Context(node_id=u) for u in NODES}
    messages: list[dict[str, Any]] = []

    def record(message: Message) -> Message:
        data = wire.encode(message)
        md = message.metadata
        entry = {"stage": md.stage, "src": md.src_node, "dst": md.dst_node, "size": len(data)}
        messages.append(entry | {"sha256": hashlib.sha256(data).hexdigest()})
        return wire.decode(data)

    def deliver(outbox: Sequence[Message]) -> Iterator[Message]:
        for message in outbox:
            received = record(message)
            dst = message.metadata.dst_node
            if (message.metadata.stage, dst) not in DROPS:
                yield record(apps[dst](received, contexts[dst]))

    parameters = {"w": np.zeros(DIMENSION, np.float32)}
    spec = RoundSpec(RUN_ID, SERVER_ROUND, NODES, parameters, {}, SamplingInfo(len(NODES), 1.0, False))
    result = drive(secagg_exchange(spec, CONFIG, signed), deliver)
    return {
        "source": "Bonawitz et al. CCS'17 Figure 5 (active server) with Bell et al. CCS'20 neighbours",
        "nodes": list(NODES),
        "dropped_after_share_keys": [u for _, u in sorted(DROPS)],
        "operator_public": operator.public.hex(),
        "identity_public": {str(u): k.public.hex() for u, k in keys.items()},
        "inputs": {str(u): {"update": update(u).astype("<f4").tobytes().hex(), "weight": weight(u)} for u in NODES},
        "identity_seed": f"SHA-256({LABEL.decode()!r} || 'operator' or 'node {{u}}')",
        "entropy_stream": f"SHA-256({LABEL.decode()}entropy/node {{u}} || i as 8 bytes big-endian), i = 0, 1, ...",
        "entropy_bytes": {str(u): getattr(s, "drawn", None) for u, s in sources.items()},
        "messages": messages,
        "params": result.params.to_config(),
        "survivors": list(result.survivors),
        "dropped": {stage: list(nodes) for stage, nodes in result.dropped.items() if nodes},
        "total_dtype": result.total.dtype.newbyteorder("<").str,
        "total": result.total.astype(result.total.dtype.newbyteorder("<")).tobytes().hex(),
    }


def deterministic(node: int) -> CounterStream:
    return CounterStream(LABEL + f"entropy/node {node}".encode())


def render() -> str:
    return json.dumps(run(deterministic), indent=1) + "\n"


def main() -> None:
    FILE.write_text(render())
    print(f"wrote {FILE}", file=sys.stderr)


if __name__ == "__main__":
    main()
