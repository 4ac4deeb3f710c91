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
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Sequence

from privfl.errors import ConfigError


def default_num_neighbours(num_nodes: int) -> int:
    """k = 2 * ceil(log2 n), capped at n - 1 (the complete graph).

    This equals the neighbour count of Flower's SecAgg+ default ``num_shares`` =
    2 * ceil(log2 n) + 1, which counts the client itself.
    """
    if num_nodes < 2:
        raise ConfigError(f"secure aggregation needs at least 2 clients, got {num_nodes}")
    return min(2 * math.ceil(math.log2(num_nodes)), num_nodes - 1)


def default_threshold(num_neighbours: int) -> int:
    """t = floor(k / 2) + 1: the smallest threshold above k / 2."""
    return num_neighbours // 2 + 1


def check_graph_params(num_nodes: int, num_neighbours: int, threshold: int) -> None:
    """Raise :class:`ConfigError` unless (n, k, t) is a safe, buildable SecAgg+ setting.

    Requires 1 <= k <= n - 1 (a client cannot have more neighbours than other clients),
    k even or n even (a k-regular graph exists), and k / 2 < t <= k:
    with t <= k / 2 a server could split a neighbourhood into two halves that each hold
    t shares and ask one half for self-mask shares and the other for mask-key shares,
    unmasking an individual input (Bell et al. CCS'20, section 3.2).
    """
    for name, value in (("num_nodes", num_nodes), ("num_neighbours", num_neighbours), ("threshold", threshold)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name} must be an int, got {value!r}")
    if num_nodes < 2:
        raise ConfigError(f"secure aggregation needs at least 2 clients, got {num_nodes}")
    if not 1 <= num_neighbours <= num_nodes - 1:
        raise ConfigError(f"num_neighbours must be in [1, n - 1] = [1, {num_nodes - 1}], got {num_neighbours}")
    if num_neighbours % 2 and num_nodes % 2:
        raise ConfigError(f"no {num_neighbours}-regular graph on {num_nodes} nodes (odd k and odd n): use an even k")
    if not num_neighbours / 2 < threshold <= num_neighbours:
        raise ConfigError(
            f"threshold must satisfy k/2 < t <= k (k = {num_neighbours}); got t = {threshold}, "
            "and t <= k/2 lets a malicious server unmask individual inputs"
        )


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
