"""The SecAgg+ neighbour graph: each client shares secrets with and masks against k neighbours.

Bell et al. CCS'20 (section 3) replace the complete graph of Bonawitz et al. CCS'17
by a random k-regular graph with k = O(log n), which keeps privacy and dropout
robustness with high probability while cutting client work from O(n) to O(log n).
Here the graph is a random circulant: position i is joined to i +- s for k/2 offsets
s drawn at random from [1, (n - 1)/2] (plus the opposite position when k is odd),
laid over a uniformly random permutation of the nodes; both are drawn by the server
from the OS CSPRNG. It is exactly k-regular, and unlike the Harary graph (offsets
1 .. k/2) two neighbours share few other neighbours, so clients excluded for lack
of live neighbours rarely push the clients next to them below the threshold too.

k and t are chosen, and checked, in :mod:`privfl.secagg.params`.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

from privfl.errors import ConfigError


def neighbour_graph(nodes: Sequence[int], num_neighbours: int) -> dict[int, tuple[int, ...]]:
    """Each node's sorted neighbours in a random k-regular circulant graph over a random permutation."""
    order = list(nodes)
    if len(set(order)) != len(order):
        raise ConfigError("node ids must be distinct")
    n, k = len(order), num_neighbours
    if not 1 <= k <= n - 1 or (k % 2 and n % 2):
        raise ConfigError(f"no {k}-regular graph on {n} nodes: need 1 <= k <= n - 1 and k even or n even")
    rng = secrets.SystemRandom()
    rng.shuffle(order)
    steps = rng.sample(range(1, (n - 1) // 2 + 1), k // 2)
    offsets = {s for s in steps} | {n - s for s in steps}
    if k % 2:
        offsets.add(n // 2)  # odd k (so n is even): join opposite positions
    return {node: tuple(sorted(order[(i + off) % n] for off in offsets)) for i, node in enumerate(order)}
