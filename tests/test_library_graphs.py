"""The digit-tape graph programs (``ncl.library.sources.graphs``): ``shortest_path`` and ``reachable`` against a
breadth-first search in plain Python, on the VM over their whole range (n = C = 256) and within their
``resources`` bounds, as Python, and on the soft machine on small graphs."""

from __future__ import annotations

import random
from collections import deque

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ncl
from ncl.library.sources.graphs import MAX_NODES
from ncl.library.symbols import number_cells, text

VM = ncl.MachineConfig(n=256, cells=256, registers=8, stack=24)
#: The soft machine: sharp enough (β = 120) that leaked mass underflows and hard inputs stay exact.
SOFT = ncl.MachineConfig(n=256, cells=48, registers=8, stack=24, sharpness=120.0)
GRAPHS = ["shortest_path", "reachable"]
#: Fills the tape past the input: a cell the function should neither read as zero nor write.
SENTINEL = 201


def distance(s: int, t: int, edges: list[tuple[int, int]]) -> int | None:
    """Edges on a shortest path from s to t (None: unreachable), by breadth-first search."""
    seen = {s: 0}
    queue = deque([s])
    while queue:
        u = queue.popleft()
        for a, b in edges:
            if a == u and b not in seen:
                seen[b] = seen[u] + 1
                queue.append(b)
    return seen.get(t)


def spec(name: str, s: int, t: int, edges: list[tuple[int, int]]) -> str:
    d = distance(s, t, edges)
    if name == "reachable":
        return "0" if d is None else "1"
    return "" if d is None else str(d)


def segment(s: int, t: int, edges: list[tuple[int, int]]) -> list[int]:
    return number_cells([s, t] + [x for edge in edges for x in edge])


def check_vm(name: str, s: int, t: int, edges: list[tuple[int, int]]):
    """Runs ``name`` on the graph at cell 0 on the VM and as Python: the answer, its cell count, the step
    bound, and no write at or past the cell bound (the tape past the input holds SENTINEL)."""
    cells_in = segment(s, t, edges)
    length = len(cells_in)
    want = spec(name, s, t, edges)
    cells, steps = ncl.library.resources(name, length)
    assert length < VM.n and cells <= VM.cells
    tape = cells_in + [SENTINEL] * (VM.cells - length)
    out = ncl.library.get(name, VM).execute(0, length, mem=tape, engine="vm")
    assert text(out.mem) == want, f"{name}: {text(out.mem)!r} != {want!r}"
    assert out.value == len(want)
    assert out.steps <= steps, f"{name}: {out.steps} steps, bound {steps}"
    assert out.mem[cells:] == tape[cells:]
    value, after = ncl.library.call_python(name, 0, length, mem=tape)
    assert (text(after), value) == (want, len(want))
    assert after[cells:] == tape[cells:]
    return out


# --- inputs -------------------------------------------------------------------------------------------------

@st.composite
def graphs(draw, max_nodes=MAX_NODES, max_edges=None, max_cells=VM.n - 1):
    """``(s, t, edges)`` on nodes 0..N-1 with up to 2N edges (self loops and duplicates included): random, a
    path listed backwards with extra edges, or a graph where t has no edge in."""
    nodes = draw(st.integers(1, max_nodes))
    most = min(2 * nodes, max_edges if max_edges is not None else 2 * nodes)
    size = draw(st.integers(0, most))  # drawn first: the list strategy itself would favour few edges
    node = st.integers(0, nodes - 1)
    edges = draw(st.lists(st.tuples(node, node), min_size=size, max_size=size))
    s, t = draw(node), draw(node)
    shape = draw(st.sampled_from(["path", "random", "no way in"]))
    if shape == "path":
        order = draw(st.permutations(range(nodes)))
        path = list(zip(order, order[1:]))[::-1]  # backwards: one round over the edges extends it by one edge
        edges = (path + edges)[:most]
        s, t = order[0], order[-1]
    elif shape == "no way in":
        edges = [(a, b) for a, b in edges if b != t]
    while edges and len(segment(s, t, edges)) > max_cells:
        edges.pop()
    return s, t, edges


EDGE_GRAPHS = {
    "s == t": (3, 3, [(0, 1), (1, 3)]),
    "s == t, no edges": (0, 0, []),
    "no edges": (0, 1, []),
    "unreachable": (0, 3, [(0, 1), (1, 2), (2, 0), (3, 0)]),
    "against the edge": (1, 0, [(0, 1)]),
    "self loop": (0, 1, [(0, 0), (0, 1), (1, 1)]),
    "duplicates": (0, 2, [(0, 1), (0, 1), (1, 2), (1, 2)]),
    "cycle": (2, 1, [(0, 1), (1, 2), (2, 3), (3, 0)]),
    "shortcut": (0, 4, [(0, 1), (1, 2), (2, 3), (3, 4), (1, 4)]),
    "two-digit ids": (23, 10, [(23, 17), (17, 12), (12, 10), (23, 11), (11, 10)]),
    "long path": (0, 23, [(i, i + 1) for i in range(22, -1, -1)] + [(i, 0) for i in range(23, 0, -1)]),
}


# --- the VM over the whole range ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", GRAPHS)
@pytest.mark.parametrize("case", list(EDGE_GRAPHS))
def test_graph_edge_cases(name, case):
    check_vm(name, *EDGE_GRAPHS[case])


@pytest.mark.parametrize("name", GRAPHS)
@settings(max_examples=60)
@given(graph=graphs())
def test_graphs_equal_python_bfs(name, graph):
    check_vm(name, *graph)


@pytest.mark.parametrize("seed", range(8))
def test_full_size_random_graphs(seed):
    """24 nodes and up to 48 edges (as many as fit in 255 cells; hypothesis favours smaller graphs)."""
    rng = random.Random(seed)
    edges = [(rng.randrange(MAX_NODES), rng.randrange(MAX_NODES)) for _ in range(2 * MAX_NODES)]
    s, t = rng.randrange(MAX_NODES), rng.randrange(MAX_NODES)
    while len(segment(s, t, edges)) > VM.n - 1:
        edges.pop()
    for name in GRAPHS:
        check_vm(name, s, t, edges)


def test_unreachable_shortest_path_is_an_empty_answer():
    out = check_vm("shortest_path", 0, 2, [(0, 1), (2, 0)])
    assert out.value == 0 and out.mem[0] == ncl.library.symbols.END


def test_graphs_do_not_assume_start_zero():
    cells_in = segment(0, 2, [(0, 1), (1, 2)])
    tape = [7, 7] + cells_in + [0] * 40
    for name, want in (("shortest_path", "2"), ("reachable", "1")):
        out = ncl.library.get(name, VM).execute(2, len(cells_in), mem=tape, engine="vm")
        assert text(out.mem) == want


@pytest.mark.parametrize("name", GRAPHS)
@pytest.mark.parametrize("config", [VM, ncl.MachineConfig(n=32, cells=16, registers=8, stack=16)],
                         ids=["n256", "n32"])
@settings(max_examples=30)
@given(data=st.data())
def test_graphs_halt_on_any_tape(name, config, data):
    """Malformed segments (any cell values) give some answer, but the VM halts without a stack fault."""
    length = data.draw(st.integers(0, config.n - 1))
    start = data.draw(st.integers(0, config.n - 1 - length))
    tape = data.draw(st.lists(st.integers(0, config.n - 1), min_size=config.cells, max_size=config.cells))
    ncl.library.get(name, config).execute(start, length, mem=tape, engine="vm")


@pytest.mark.parametrize("name", GRAPHS)
def test_step_bound_is_not_loose(name):
    """A path through all 24 nodes, listed backwards, with 48 edges: within 1.5x of the bound."""
    s, t, edges = EDGE_GRAPHS["long path"]
    edges = edges + [(5, 5)] * (2 * MAX_NODES - len(edges))
    out = check_vm(name, s, t, edges)
    assert ncl.library.resources(name, len(segment(s, t, edges)))[1] <= 1.5 * out.steps


def test_helper_is_compiled_but_no_entry():
    assert set(GRAPHS) <= set(ncl.library.names()) and "graph_bfs" not in ncl.library.names()
    assert ncl.library.get("reachable", VM).functions == ["reachable", "graph_bfs"]


# --- the soft machine ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", GRAPHS)
@settings(max_examples=6)
@given(graph=graphs(max_nodes=6, max_edges=10, max_cells=SOFT.cells))
def test_graphs_soft_equals_vm(name, graph):
    cells_in = segment(*graph)
    compiled = ncl.library.get(name, SOFT)
    assert ncl.library.resources(name, len(cells_in))[0] <= SOFT.cells
    hard = compiled.execute(0, len(cells_in), mem=cells_in, engine="vm")
    soft = compiled.execute(0, len(cells_in), mem=cells_in)
    assert text(hard.mem) == spec(name, *graph)
    assert soft.mem == hard.mem and soft.regs == hard.regs and soft.steps == hard.steps
    assert soft.halted >= 0.99
