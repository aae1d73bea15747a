"""Graph programs over the digit tape (``ncl.library.symbols``): breadth-first search on an edge list.

The segment ``mem[start : start+length]`` holds the numbers ``s t u1 v1 u2 v2 ...`` (each as its decimal digits,
most significant first, then ``SEP``): a query from node ``s`` to node ``t`` and the directed edges ``u_i -> v_i``
of a graph on nodes ``0..N-1``. The answer goes to cells ``0, 1, ...``, ended by ``END``; the return value is the
number of answer cells before ``END``.

Exact at n = 256, C = 256 for graphs of up to :data:`MAX_NODES` nodes and ``2 * MAX_NODES`` edges (at most about
250 input cells); ``resources(name, length)`` bounds the cells and VM steps for any such input.
"""

from ncl.library.symbols import END, SEP

__all__ = ["shortest_path", "reachable"]

#: Library functions the public ones call that are no program of their own (see ``ncl.library.sources.lists``).
HELPERS = ["graph_bfs"]

#: The largest graph ``resources`` bounds: node ids below 24.
MAX_NODES = 24

#: The tape when these functions run as plain Python.
mem = [0] * 256


def graph_bfs(start, length):
    """Breadth-first search from ``s`` on the segment's graph: ``1 + `` the length of a shortest path from ``s``
    to ``t``, or 0 if ``t`` is unreachable (or the segment holds fewer than two numbers).

    The numbers are compacted in place (``count`` values from ``start``; each took at least two cells, so a
    value is never stored past the cell being read), and each becomes the address of its node's label in an
    array right above them (``base = start + count``, one cell per node ``0..max id``): label 0 means not
    reached yet, label ``d + 1`` reached at distance ``d``. Round ``level`` scans the edge list once and labels
    ``level + 1`` every unlabelled head of an edge whose tail has label ``level`` (level-synchronous, so a round
    extends the search by exactly one edge); the search stops when ``t`` has a label or a round labels nothing.
    Every address ``base + id`` must stay below n and C.
    """
    w = start
    value = 0
    for r in range(start, start + length):  # start + length once: length would take the constant's register
        c = mem[r]
        if c == SEP:
            mem[w] = value
            w += 1
            value = 0
        else:
            value = value * 10 + c
    base = w
    if base < start + 2:
        return 0
    top = base
    for i in range(start, base):
        node = mem[i] + base
        mem[i] = node
        top = max(top, node)
    for i in range(base, top + 1):
        mem[i] = 0
    mem[mem[start]] = 1
    last = base - 1  # an edge's tail lies below it (an odd last number is no edge)
    level = 1
    grew = 1
    while grew and mem[mem[start + 1]] == 0:  # t re-read each round: a register less in the edge loop
        grew = 0
        e = start + 2
        while e < last:
            if mem[mem[e]] == level:
                head = mem[e + 1]
                if mem[head] == 0:
                    mem[head] = level + 1
                    grew = 1
            e += 2
        level += 1
    return mem[mem[start + 1]]


def shortest_path(start, length):
    """The number of edges on a shortest path from ``s`` to ``t``, as a number answer (``0`` when ``s == t``);
    no digits at all (the answer is just ``END``, 0 cells) when ``t`` is unreachable.

    Computed by ``graph_bfs``; a path of d edges takes d + 1 rounds over the edge list. Exact at n = 256,
    C = 256 for up to ``MAX_NODES`` nodes and ``2 * MAX_NODES`` edges.
    """
    label = graph_bfs(start, length)
    if label == 0:
        mem[0] = END
        return 0
    d = label - 1
    out = 0
    if d >= 100:
        mem[out] = d // 100
        out += 1
    if d >= 10:
        mem[out] = d // 10 % 10
        out += 1
    mem[out] = d % 10
    mem[out + 1] = END
    return out + 1


def reachable(start, length):
    """Whether ``t`` is reachable from ``s`` (``s == t`` counts), as the number answer ``1`` or ``0``; returns 1.

    Computed by ``graph_bfs``. Exact like ``shortest_path``.
    """
    mem[0] = min(graph_bfs(start, length), 1)  # a label is 0 (unreachable) or a distance + 1
    mem[1] = END
    return 1


def reads(name, count):
    """Whether a call of ``name`` may run on a segment of ``count`` numbers: the query's ``s`` and ``t``, then
    two numbers an edge (none: no edges). Plain Python, not compiled (``ncl.library.reads``)."""
    if name not in __all__:
        raise KeyError(f"no input contract for {name!r} in {__name__}")
    return count >= 2 and count % 2 == 0


def resources(name, length):
    """Upper bounds ``(cells, steps)`` for running ``name`` on any segment of ``length`` cells at ``start = 0``
    that holds a query and a graph in range (node ids below ``MAX_NODES``, at most ``2 * MAX_NODES`` edges;
    registers = 8): the cells touched (the highest index + 1) and the VM steps, the entry stub's included. A
    plain Python function, not compiled.

    With E edges (each number takes a digit and a SEP, so ``2 + 2E <= length // 2``), M = 2 + 2E numbers and N
    nodes, ``graph_bfs`` costs 8 a digit cell, 10 a SEP, 8 a number (to an address) and 4 a label cleared, plus
    11 + 7E a round over the edges and at most 7 more an edge (the round in which its tail is on the frontier).
    Rounds: one per distance level reached plus a last one that labels nothing, so at most min(N, E + 1).
    """
    if name not in ("shortest_path", "reachable"):
        raise KeyError(f"no resource bounds for {name!r} in {__name__}")
    edges = max(0, min(2 * MAX_NODES, (length // 2 - 2) // 2))
    numbers = 2 + 2 * edges
    rounds = min(MAX_NODES, edges + 1)
    bfs = 40 + 8 * length + 2 * numbers + 8 * numbers + 4 * MAX_NODES + rounds * (11 + 7 * edges) + 7 * edges
    answer = 23 if name == "shortest_path" else 10  # a distance below 100 (MAX_NODES - 1 at most)
    return max(length, numbers + MAX_NODES, 4), 3 + bfs + answer
