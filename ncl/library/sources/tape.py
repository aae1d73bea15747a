"""Functions on the tape ``mem``: a segment is given by its first cell and its length, ``(start, length)``.

Compiled, ``mem[i]`` is the machine's memory cell i (the index folds modulo the number of cells). Run as Python,
they use this module's ``mem`` list (``ncl.library.call_python`` swaps a tape in). The segment must lie within the
tape: ``start + length`` at most the number of cells (and below n).
"""

from builtins import max as larger  # this module's max() is the tape function; larger() is the MAX op

__all__ = ["insertion_sort", "bubble_sort", "reverse", "sum", "max", "count", "binary_search", "copy"]

#: The tape when these functions run as plain Python.
mem = [0] * 128


def insertion_sort(start, length):
    """Sorts mem[start:start+length] ascending, in place: each cell in turn sinks into the sorted prefix by
    compare-exchanges with its left neighbour.

    The compare-exchange is branch-free (min and max), and the sinking does not stop early at the key's place
    (past it, the sorted prefix exchanges nothing): only loop counters branch, never data. That keeps the soft
    machine exact for longer, and gives a sensible answer on soft tape values (a sorting network).
    """
    for i in range(start + 1, start + length):
        j = i
        while j > start:
            a = mem[j - 1]
            b = mem[j]
            mem[j - 1] = min(a, b)
            mem[j] = larger(a, b)
            j -= 1


def bubble_sort(start, length):
    """Sorts mem[start:start+length] ascending, in place: each pass of compare-exchanges of neighbours carries the
    largest remaining value to the end of the unsorted part. Branch-free on data, like insertion_sort.
    """
    end = start + length
    while end > start + 1:
        for i in range(start + 1, end):
            a = mem[i - 1]
            b = mem[i]
            mem[i - 1] = min(a, b)
            mem[i] = larger(a, b)
        end -= 1


def reverse(start, length):
    """Reverses mem[start:start+length] in place."""
    i = start
    j = start + length
    while i + 1 < j:
        j -= 1
        a = mem[i]
        mem[i] = mem[j]
        mem[j] = a
        i += 1


def sum(start, length):
    """mem[start] + ... + mem[start+length-1] (mod n)."""
    total = 0
    for i in range(start, start + length):
        total += mem[i]
    return total


def max(start, length):
    """The largest value in mem[start:start+length]; 0 for an empty segment."""
    best = 0
    for i in range(start, start + length):
        best = larger(best, mem[i])
    return best


def count(start, length, value):
    """How many cells of mem[start:start+length] equal value."""
    found = 0
    for i in range(start, start + length):
        found += mem[i] == value  # a comparison is 0 or 1: no branch on data
    return found


def binary_search(start, length, target):
    """The leftmost offset i in 0..length with mem[start+i] >= target, for a sorted segment (bisect_left);
    length if every cell is smaller.
    """
    lo = 0
    hi = length
    while lo < hi:
        mid = lo + (hi - lo) // 2
        if mem[start + mid] < target:
            lo = mid + 1
        else:
            hi = mid
    return lo


def copy(src, dst, length):
    """Copies mem[src:src+length] to mem[dst:dst+length], cell by cell from the first (like a forward loop)."""
    for i in range(length):
        mem[dst + i] = mem[src + i]
