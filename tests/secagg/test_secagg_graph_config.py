"""Neighbour graph and configuration validation."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from privfl.errors import ConfigError, MessageError
from privfl.secagg.config import RoundParams, SecAggConfig
from privfl.secagg.graph import (
    check_graph_params,
    default_num_neighbours,
    default_threshold,
    neighbour_graph,
    neighbours_of,
)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(2, 80), data=st.data())
def test_graph_is_k_regular_symmetric_without_self_loops(n: int, data: st.DataObject) -> None:
    k = data.draw(st.integers(1, n - 1).filter(lambda k: k % 2 == 0 or n % 2 == 0))
    nodes = list(range(10, 10 + n))
    graph = neighbour_graph(nodes, k, bytes(32))
    assert set(graph) == set(nodes)
    for u, nbrs in graph.items():
        assert len(nbrs) == k and u not in nbrs and len(set(nbrs)) == k
        assert all(u in graph[v] for v in nbrs)


def test_graph_is_a_function_of_the_seed_only() -> None:
    seeds = [bytes([i]) * 32 for i in range(5)]
    graphs = {tuple(sorted(neighbour_graph(range(1, 41), 4, seed).items())) for seed in seeds}
    assert len(graphs) == 5  # different seeds, different permutations
    assert neighbour_graph(range(1, 41), 4, seeds[0]) == neighbour_graph(list(range(40, 0, -1)), 4, seeds[0])


def test_graph_is_harary_under_a_permutation() -> None:
    """H(n, k): every node's neighbours are the k/2 nearest on either side of one ring (params.py analyses this)."""
    graph = neighbour_graph(range(1, 21), 6, bytes(32))
    ring = [1]
    while len(ring) < 20:  # walk the ring: the next node is the unvisited neighbour adjacent to both ends' runs
        u = ring[-1]
        candidates = [v for v in graph[u] if v not in ring and len(set(graph[v]) & set(graph[u])) == 4]
        ring.append(candidates[0] if len(ring) == 1 else next(v for v in candidates if ring[-2] in graph[v]))
    position = {u: i for i, u in enumerate(ring)}
    for u, nbrs in graph.items():
        distances = sorted(min((position[u] - position[v]) % 20, (position[v] - position[u]) % 20) for v in nbrs)
        assert distances == [1, 1, 2, 2, 3, 3]


@pytest.mark.parametrize("n", [2, 3, 10, 100, 500, 1000])
def test_defaults_grow_like_log_n_and_are_safe(n: int) -> None:
    k = default_num_neighbours(n)
    assert k == min(2 * math.ceil(math.log2(n)), n - 1)
    t = default_threshold(k)
    assert k / 2 < t <= k
    check_graph_params(n, k, t)


@pytest.mark.parametrize(
    ("n", "k", "t"),
    [
        (10, 4, 2),  # t <= k/2: a server could split the neighbourhood
        (10, 4, 1),
        (10, 4, 5),  # t > k
        (10, 10, 6),  # k >= n
        (10, 0, 1),
        (1, 1, 1),
        (9, 3, 2),  # odd k and odd n: no regular graph
    ],
)
def test_unsafe_or_impossible_graph_settings(n: int, k: int, t: int) -> None:
    with pytest.raises(ConfigError):
        check_graph_params(n, k, t)


def test_config_validation() -> None:
    for bad in (
        {"clip": -1.0},
        {"bits": 0},
        {"max_weight": 0},
        {"weighting": "median"},
        {"num_neighbours": 4, "threshold": 2},
        {"threshold": 3},
        {"modulus_bits": 65},
    ):
        with pytest.raises(ConfigError):
            SecAggConfig(**bad)


def test_round_params_choose_a_modulus_that_cannot_wrap() -> None:
    params = SecAggConfig(bits=16, max_weight=1024).round_params(100)
    assert params.modulus_bits == (100 * 65535).bit_length() and params.dtype.itemsize == 4
    assert SecAggConfig(bits=24, max_weight=1 << 32).round_params(500).dtype.itemsize == 8
    assert SecAggConfig(weighting="uniform").round_params(10).max_weight == 1
    with pytest.raises(ConfigError, match="wrap"):
        SecAggConfig(bits=16, modulus_bits=20).round_params(100)
    with pytest.raises(ConfigError):
        SecAggConfig(num_neighbours=8, threshold=5).round_params(8)  # k >= n


def test_round_params_travel_and_are_revalidated() -> None:
    params = SecAggConfig().round_params(20)
    assert RoundParams.from_config(params.to_config()) == params
    unsafe = {**params.to_config(), "secagg.threshold": params.num_neighbours // 2}
    with pytest.raises(MessageError, match="unsafe"):
        RoundParams.from_config(unsafe)
    missing = dict(params.to_config())
    del missing["secagg.bits"]
    with pytest.raises(MessageError):
        RoundParams.from_config(missing)
    with pytest.raises(MessageError):
        RoundParams.from_config({**params.to_config(), "secagg.bits": "16"})


def test_one_nodes_neighbours_match_the_whole_graph() -> None:
    graph = neighbour_graph(range(1, 31), 6, b"\x07" * 32)
    assert all(neighbours_of(u, range(1, 31), 6, b"\x07" * 32) == graph[u] for u in graph)
