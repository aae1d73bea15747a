"""List and palindrome programs over the digit tape (``ncl.library.symbols``).

The segment ``mem[start : start+length]`` holds the prompt's numbers, each as its decimal digits (most significant
first, one cell each) followed by ``SEP``; the answer goes to cells ``0, 1, ...``, ended by ``END``, and the
return value is the number of answer cells before ``END``. A list answer is each element's digits followed by
``SEP``; a number answer is its digits (no leading zeros). The input may be overwritten once read, so the list
functions first compact the numbers' values in place (``list_parse``), work on the values, and print them back
from the top of the segment (``list_print``), where printing cannot overtake them. Cells from ``start + length``
up are not touched, except by the answer's ``END`` when ``start = 0``.

Exact at n = 128, C = 128 for up to 32 elements of 0..99 (at most 96 input cells); ``palindrome`` for 1..64
digits, with a stack deep enough for its recursion (``MachineConfig(stack=S)`` holds ``S - 1`` return
addresses: 64 digits need S >= 33). ``resources(name, length)`` bounds the cells and VM steps for any such input.
"""

from ncl.library.symbols import END, SEP

__all__ = ["list_sort", "list_reverse", "list_sum", "merge_sort", "palindrome"]

#: Library functions the public ones call that are no program of their own (they are left out of
#: ``ncl.library.names()`` and the image's entries, but compiled into every program that calls them).
HELPERS = ["list_parse", "list_print", "merge_sort_run"]

#: The longest list ``resources`` bounds.
MAX_ELEMENTS = 32

#: The tape when these functions run as plain Python.
mem = [0] * 128


def list_parse(start, length, stride):
    """Reads the numbers of the digit segment ``mem[start:start+length]`` and stores their values in place, the
    k-th at ``mem[start + stride*k]``; returns the cell after the last one stored (``start + stride*count``).

    Each number takes at least two cells (a digit and its SEP), so with stride 1 or 2 a value is never stored
    past the cell being read. Values are taken modulo n, so numbers must stay below n.
    """
    w = start
    value = 0
    for r in range(start, start + length):
        c = mem[r]
        if c == SEP:
            mem[w] = value
            w += stride
            value = 0
        else:
            value = value * 10 + c
    return w  # not the count: start would stay live through the loop, and the constant 10 would not fit


def list_print(first, count):
    """Writes the values ``mem[first:first+count]`` (each below 1000) as a list answer at cells 0, 1, ...: each
    one's digits and a SEP, then END; returns the number of cells before END.

    The values must lie where the answer cannot overtake them: at the top of the segment they were read from,
    ``first = start + length - count``, the digits of the values already printed fit below the next one (each
    number's digits and SEP took at least as many cells in the input as they take in the answer).
    """
    out = 0
    for i in range(first, first + count):
        v = mem[i]
        if v >= 100:
            mem[out] = v // 100
            out += 1
        if v >= 10:
            mem[out] = v // 10 % 10
            out += 1
        mem[out] = v % 10
        mem[out + 1] = SEP
        out += 2
    mem[out] = END
    return out


def list_sort(start, length):
    """The segment's numbers sorted ascending, as a list answer (``31 4 77`` -> ``4 31 77``).

    Iterative: the values are compacted in place, moved to the top of the segment, sorted there by insertion
    with compare-exchanges like the tape module's ``insertion_sort`` (branch-free on data; inlined, since run as
    Python a function sees only its own module's tape) and printed. Returns the answer's cell count.
    Exact for up to 32 elements of 0..99 at n = 128, C = 128.
    """
    count = min(list_parse(start, length, 1) - start, length // 2)  # well-formed: at most length/2 numbers
    end = start + length
    src = start + count
    first = end
    while src > start:  # last first: the two ranges overlap only on a malformed segment
        src -= 1
        first -= 1
        mem[first] = mem[src]
    for i in range(first + 1, end):
        j = i
        while j > first:
            a = mem[j - 1]
            b = mem[j]
            mem[j - 1] = min(a, b)
            mem[j] = max(a, b)
            j -= 1
    return list_print(first, end - first)


def list_reverse(start, length):
    """The segment's numbers in reverse order, as a list answer (``31 4 77`` -> ``77 4 31``).

    The values are compacted in place, then copied, reversed, to the top of the segment (the two ranges are
    disjoint: a segment of length L holds at most L/2 numbers) and printed. Exact like ``list_sort``.
    """
    count = min(list_parse(start, length, 1) - start, length // 2)
    dst = start + length
    for i in range(start, start + count):
        dst -= 1
        mem[dst] = mem[i]
    return list_print(dst, count)


def list_sum(start, length):
    """The true sum of the segment's numbers, as a number answer (``31 4 77`` -> ``112``).

    The sum may exceed n, so it is kept as ``100*hundreds + units`` with ``units < 100``: adding v carries when
    ``units >= 100 - v``, and then ``units - (100 - v)`` is the new units, so no value ever leaves 0..99 (or the
    hundreds). Exact for up to 32 elements of 0..99 at n = 128 (sums up to 3168), and for any count whose
    hundreds stay below n.
    """
    hundreds = 0
    units = 0
    value = 0
    for r in range(start, start + length):
        c = mem[r]
        if c == SEP:
            room = 100 - value
            if units >= room:
                units -= room
                hundreds += 1
            else:
                units += value
            value = 0
        else:
            value = value * 10 + c
    out = 0
    if hundreds > 0:
        if hundreds >= 100:
            mem[out] = hundreds // 100
            out += 1
        if hundreds >= 10:
            mem[out] = hundreds // 10 % 10
            out += 1
        mem[out] = hundreds % 10
        mem[out + 1] = units // 10  # the units' tens digit, zero or not
        out += 2
    elif units >= 10:
        mem[0] = units // 10
        out = 1
    mem[out] = units % 10
    mem[out + 1] = END
    return out + 1


def merge_sort_run(lo, hi):
    """Sorts the values at ``mem[lo], mem[lo+2], ..., mem[hi-2]`` ascending by top-down merge sort, using the
    odd cells between them (``mem[lo+1], mem[lo+3], ...``) as the merge buffer; returns ``hi``.

    Recursive: it sorts each half, then copies the left half into the buffer and merges the buffer with the
    right half back into the even cells (the output never passes the right half's next value, and once the
    buffer is spent the right half's rest is already in place). Returning ``hi`` lets the caller keep two values
    across each recursive call instead of three. Depth: ceil(log2(count)) + 1 nested calls.
    """
    if hi - lo < 4:  # fewer than two values
        return hi
    mid = merge_sort_run(lo, lo + (hi - lo) // 4 * 2)
    hi = merge_sort_run(mid, hi)
    i = lo
    while i < mid:  # the left half into the buffer
        mem[i + 1] = mem[i]
        i += 2
    k = lo
    i = lo + 1
    j = mid
    while i < mid:
        a = mem[i]
        if j < hi and mem[j] < a:
            mem[k] = mem[j]
            j += 2
        else:
            mem[k] = a
            i += 2
        k += 2
    return hi


def merge_sort(start, length):
    """The segment's numbers sorted ascending, as a list answer, by a recursive top-down merge sort.

    The values are compacted in place at stride 2 (``mem[start + 2k]``; the cells between them are the merge
    buffer, inside the segment since each number took at least two cells), sorted by the recursive
    ``merge_sort_run`` (depth ceil(log2(count)) + 1), moved to the top of the segment and printed.
    Exact like ``list_sort``. Each level takes a return slot and two data slots, so m values need
    ``stack >= 2 * ceil(log2(m)) + 4`` (14 for 32 values).
    """
    count = min((list_parse(start, length, 2) - start) // 2, length // 2)
    merge_sort_run(start, start + 2 * count)
    src = start + 2 * count
    dst = start + length
    while src > start:
        src -= 2
        dst -= 1
        mem[dst] = mem[src]
    return list_print(dst, count)


def palindrome(start, length):
    """Whether the one number in the segment (its digits ``mem[start : start+length-1]``, then SEP) reads the
    same backwards: the number answer ``1`` or ``0``; returns 1 (one answer cell).

    Recursive: compare the outer digits, and if they agree and more than two digits are left, recurse on the
    inner ones (``palindrome(start + 1, length - 2)``). Every comparison happens on the way down and only the
    call where the recursion stops (a mismatch, or the middle) writes the answer, so writing cells 0 and 1
    never destroys a digit still to be read. Depth:
    ceil(d / 2) nested calls for d digits and nothing saved across them, so d digits need ``stack >= ceil(d/2) +
    1`` (64 digits: S >= 33).
    """
    if mem[start] != mem[start + length - 2]:
        mem[0] = 0
    elif length > 3:
        return palindrome(start + 1, length - 2)
    else:
        mem[0] = 1
    mem[1] = END
    return 1


def reads(name, count):
    """Whether a call of ``name`` may run on a segment of ``count`` numbers: ``palindrome`` reads one number's
    digits, the list functions a list of one or more. Plain Python, not compiled (``ncl.library.reads``)."""
    if name not in __all__:
        raise KeyError(f"no input contract for {name!r} in {__name__}")
    return count == 1 if name == "palindrome" else count >= 1


def resources(name, length):
    """Upper bounds ``(cells, steps)`` for running ``name`` on any segment of ``length`` cells in its range at
    ``start = 0`` (up to ``MAX_ELEMENTS`` numbers below 100; any digits for palindrome; registers = 8): the cells
    touched (the highest index + 1) and the VM steps, the entry stub's CALL and HALT included. A plain Python
    function, not compiled.

    Each bound counts the compiled loops' instructions on their costliest branches, taken as a function of the
    element count m (at most length // 2, since every number takes a digit and a SEP, at most MAX_ELEMENTS, and
    at most ``length - 2m`` of them have two digits), and maximised over m. The cap keeps the bound of a long
    segment from counting a quadratic sort of more elements than any list in range has (an evaluation's step
    budget is the largest bound of any function at the input's length).
    """
    if name == "palindrome":  # ceil(d/2) levels for d = length - 1 digits, 15 steps each, the last one 18
        return max(length, 2), 15 * max(1, length // 2) + 5
    if name == "list_sum":  # 10 a digit cell, 16 a SEP, up to 45 outside the loop
        return max(length, 6), 45 + 10 * length + 6 * min(length // 2, MAX_ELEMENTS)
    if name not in ("list_sort", "list_reverse", "merge_sort"):
        raise KeyError(f"no resource bounds for {name!r} in {__name__}")
    worst = 0
    for m in range(min(length // 2, MAX_ELEMENTS) + 1):
        parse = 10 + 8 * length + 2 * m
        printing = 13 + 13 * m + 4 * min(m, max(0, length - 2 * m))
        if name == "list_sort":  # move to the top 6 a value; insertion sort 11 a compare-exchange
            work = 26 + 6 * m + 7 * max(m - 1, 0) + 11 * (m * (m - 1) // 2)
        elif name == "list_reverse":
            work = 21 + 6 * m
        else:
            work = 37 + 6 * m + _merge_sort_run_steps(m)
        worst = max(worst, parse + work + printing)
    return length + 1, worst  # the answer is as long as the input, and its END follows


def _merge_sort_run_steps(count):
    """Steps of ``merge_sort_run`` on ``count`` values, at most: a call with fewer than two values costs 6; a
    larger one 38, plus 6 a left value copied to the buffer, 11 a left value and 13 a right value merged (every
    value merged once, at the costliest branch), plus its two halves."""
    if count < 2:
        return 6
    left = count // 2
    right = count - left
    return 38 + 17 * left + 13 * right + _merge_sort_run_steps(left) + _merge_sort_run_steps(right)
