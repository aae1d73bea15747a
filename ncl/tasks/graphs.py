"""Planning on small directed graphs: ``shortest_path`` (how many edges from s to t) and ``reachable`` (whether
t can be reached from s).

The prompt lists the query and then the edges: ``"path 2 5 0 1 1 2 2 5 ="`` asks for the distance from 2 to 5
in the graph 0→1, 1→2, 2→5. A graph on N nodes (ids 0..N−1) has N distinct random edges (no self loops: an
average out-degree of one, so paths are long and some pairs are unreachable). The axis is the node count: 3–6
in training and ``test``, exactly 12 and 24 at ``ood_2x`` and
``ood_4x``. ``shortest_path`` asks only about reachable pairs s ≠ t; ``reachable``'s answers are half ``1``,
half ``0``.
"""

from __future__ import annotations

import random
from collections import deque

from ncl.tasks.base import Example, Task, fmt

NODE_SIZES = {"train": (3, 6), "test": (3, 6), "ood_2x": (12, 12), "ood_4x": (24, 24)}


def edge_count(nodes: int) -> int:
    """Edges of a graph on ``nodes`` (≥ 3) nodes: one per node."""
    return nodes


def random_graph(rng: random.Random, nodes: int) -> list[tuple[int, int]]:
    """``edge_count(nodes)`` distinct directed edges u→v, u ≠ v, in random order."""
    pairs = [(u, v) for u in range(nodes) for v in range(nodes) if u != v]
    return rng.sample(pairs, edge_count(nodes))


def distances(edges, nodes: int, source: int) -> list[int | None]:
    """BFS distances from ``source`` (None: unreachable)."""
    adj = [[] for _ in range(nodes)]
    for u, v in edges:
        adj[u].append(v)
    dist: list[int | None] = [None] * nodes
    dist[source] = 0
    queue = deque([source])
    while queue:
        u = queue.popleft()
        for v in adj[u]:
            if dist[v] is None:
                dist[v] = dist[u] + 1
                queue.append(v)
    return dist


def _segment(nodes: int) -> int:
    # the query and every edge: 2 + 2E numbers of at most len(str(nodes - 1)) digits, each with its SEP
    return (2 + 2 * edge_count(nodes)) * (len(str(nodes - 1)) + 1)


def _shortest_path_task() -> Task:
    def make(rng: random.Random, size: int) -> Example:
        while True:
            edges = random_graph(rng, size)
            s = rng.randrange(size)
            targets = [t for t, d in enumerate(distances(edges, size, s)) if d]
            if targets:
                t = rng.choice(targets)
                d = distances(edges, size, s)[t]
                numbers = (s, t) + tuple(x for e in edges for x in e)
                return Example(fmt("path", numbers), str(d), "shortest_path", numbers, size)

    return Task("shortest_path", "shortest_path", "nodes", NODE_SIZES, make, segment=_segment, n=256)


def _reachable_task() -> Task:
    def make(rng: random.Random, size: int) -> Example:
        want = rng.random() < 0.5
        while True:
            edges = random_graph(rng, size)
            s = rng.randrange(size)
            dist = distances(edges, size, s)
            pool = [t for t in range(size) if (dist[t] is not None) == want]
            if pool:
                t = rng.choice(pool)
                numbers = (s, t) + tuple(x for e in edges for x in e)
                return Example(fmt("reach", numbers), str(int(want)), "reachable", numbers, size)

    return Task("reachable", "reachable", "nodes", NODE_SIZES, make, segment=_segment, n=256)


TASKS = {"shortest_path": _shortest_path_task(), "reachable": _reachable_task()}

__all__ = ["NODE_SIZES", "TASKS", "distances", "edge_count", "random_graph"]
