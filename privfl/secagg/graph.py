"""The SecAgg+ neighbour graph: each client shares secrets with and masks against k neighbours.

Bell et al. CCS'20 (section 3) replace the complete graph of Bonawitz et al. CCS'17
by a random k-regular graph with k = O(log n), which keeps privacy and dropout
robustness with high probability while cutting client work from O(n) to O(log n).
Here the graph is the Harary graph H(n, k) (position i joined to i +- 1 .. k/2, plus
the opposite position when k is odd) laid over a uniformly random permutation of
the nodes: the graph whose security and dropout bounds :mod:`privfl.secagg.params`
computes (as Google's federated-compute parameter finder does). The permutation is
drawn from a seed no party chooses (the round's session hash, a hash of all signed
round-1 keys), so every client recomputes its own neighbours and a server cannot
place colluders next to a victim after seeing the keys.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence

import numpy as np

from privfl.errors import ConfigError
from privfl.secagg.prg import uniform_words


def neighbour_graph(nodes: Sequence[int], num_neighbours: int, seed: bytes) -> dict[int, tuple[int, ...]]:
    """Each node's sorted neighbours in H(n, k) under the permutation that ``seed`` selects.

    Deterministic in (set of nodes, k, seed): every client recomputes its own neighbours
    from the round's session hash (a hash of all signed round-1 keys, see
    :mod:`privfl.secagg.session`), so a server cannot choose them or place colluders
    next to a victim after seeing the keys. The permutation is a Fisher-Yates shuffle
    driven by the AES-256-CTR keystream under ``seed``, with rejection sampling (no
    modulo bias).
    """
    order, offsets = _layout(nodes, num_neighbours, seed)
    n = len(order)
    return {node: tuple(sorted(order[(i + off) % n] for off in offsets)) for i, node in enumerate(order)}


def neighbours_of(node: int, nodes: Sequence[int], num_neighbours: int, seed: bytes) -> tuple[int, ...]:
    """``neighbour_graph(nodes, num_neighbours, seed)[node]`` without building the other nodes' lists."""
    order, offsets = _layout(nodes, num_neighbours, seed)
    i = order.index(node)
    return tuple(sorted(order[(i + off) % len(order)] for off in offsets))


def _layout(nodes: Sequence[int], num_neighbours: int, seed: bytes) -> tuple[list[int], set[int]]:
    """The seeded permutation of the nodes around the ring, and the ring offsets of H(n, k)."""
    order = sorted(nodes)
    if len(set(order)) != len(order):
        raise ConfigError("node ids must be distinct")
    n, k = len(order), num_neighbours
    if not 1 <= k <= n - 1 or (k % 2 and n % 2):
        raise ConfigError(f"no {k}-regular graph on {n} nodes: need 1 <= k <= n - 1 and k even or n even")
    draw = _SeededDraws(seed)
    for i in range(n - 1, 0, -1):  # Fisher-Yates shuffle
        j = draw.below(i + 1)
        order[i], order[j] = order[j], order[i]
    steps = range(1, k // 2 + 1)
    offsets = set(steps) | {n - s for s in steps}
    if k % 2:
        offsets.add(n // 2)  # odd k (so n is even): join opposite positions
    return order, offsets


class _SeededDraws:
    """Uniform integers below a bound from the AES-CTR keystream of a 32-byte seed."""

    _BATCH = 1024

    def __init__(self, seed: bytes) -> None:
        self._words: Iterator[int] = iter(())
        self._seed = seed
        self._counter = 0

    def _next(self) -> int:
        for word in self._words:
            return int(word)
        # A fresh keystream block per batch: the seed is re-keyed with the batch counter.
        key = hashlib.sha256(self._seed + self._counter.to_bytes(8, "big")).digest()
        self._counter += 1
        self._words = iter(uniform_words(key, self._BATCH, np.dtype(np.uint64)).tolist())
        return self._next()

    def below(self, bound: int) -> int:
        limit = (1 << 64) - (1 << 64) % bound  # reject the top partial range: no modulo bias
        while True:
            word = self._next()
            if word < limit:
                return word % bound
