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
    """Sorts mem[start:start+length] ascending, in place, by insertion."""
    for i in range(start + 1, start + length):
        key = mem[i]
        j = i
        while j > start and mem[j - 1] > key:
            mem[j] = mem[j - 1]
            j -= 1
        mem[j] = key


def bubble_sort(start, length):
    """Sorts mem[start:start+length] ascending, in place, by compare-and-swap of neighbours.

    Each pass moves the largest remaining value to the end of the unsorted part. The swap is branch-free
    (min and max), because every data-dependent branch makes the soft machine drift faster.
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
        if mem[i] == value:
            found += 1
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
