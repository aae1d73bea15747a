"""Schoolbook long arithmetic on the digit tape (``ncl.library.symbols``): numbers of any length, one decimal digit
per cell, on a machine whose registers only count to n.

Each function takes the segment ``(start, length)`` of ``mem`` that holds the prompt's two numbers, each written
most significant digit first and ended by ``SEP``: ``4071 98`` is the cells ``4 0 7 1 SEP 9 8 SEP``, called as
``long_add(0, 8)``. The answer goes to cells ``0, 1, ...`` (digits most significant first, no leading zeros, a
negative difference after ``MINUS``, a comparison as one ``LT``/``EQ``/``GT`` cell) and is ended by ``END``; the
return value is the answer's length (the cells before ``END``). The inputs are consumed: the functions compute in
place in the input cells (add, sub), or in scratch cells above the segment (mul), and copy the answer down at the
end. Inputs may carry leading zeros; the answer never does.

Every value the machine holds is a digit, a small digit sum, or a cell address, so the functions are exact while
the addresses fit: ``start + length <= n`` and the tape has the cells ``resources`` reports (for two 40-digit
operands: n = 128 for add, sub and compare; n = 256 for mul, whose product sits above the input). ``resources``
is plain Python (not compiled): the cells and machine steps a call on a segment of a given length needs at most.
"""

from ncl.library.symbols import END, EQ, GT, LT, MINUS, SEP

__all__ = ["long_add", "long_sub", "long_mul", "long_compare"]

#: The range: each operand has 1 to MAX_DIGITS digits (``resources`` bounds calls in it).
MAX_DIGITS = 40

#: The tape when these functions run as plain Python.
mem = [0] * 256


def long_compare(start, length):
    """Compares the segment's two numbers a and b: writes one cell, ``LT``, ``EQ`` or ``GT`` (a < b, a == b,
    a > b), then ``END``; returns 1.

    Tape: ``a's digits, SEP, b's digits, SEP`` at ``mem[start:start+length]``; the answer at cells 0, 1. Uses no
    cell outside the segment and the answer. Exact for any digit counts with ``start + length <= n``.

    Leading zeros are skipped, then the digit counts decide; equal counts are compared from the most significant
    digit to the first difference.
    """
    last = start + length - 1
    mem[last] = SEP  # already there in a well-formed prompt; it bounds the scans below on any tape
    p = start
    while mem[p] != SEP:
        p += 1
    if p == start or last - p < 2:  # not two numbers (not a prompt): no answer
        mem[0] = END
        return 0
    af = start
    while mem[af] == 0:  # leading zeros; a's SEP stops the scan
        af += 1
    af = min(af, p - 1)  # the number 0 keeps one digit
    bf = p + 1
    while mem[bf] == 0:
        bf += 1
    bf = min(bf, last - 1)
    x = p - af
    y = last - bf
    if x == y:
        mem[last] = END  # unequal to a's SEP, so the lockstep scan stops at the ends when a == b
        while mem[af] == mem[bf]:
            af += 1
            bf += 1
        x = mem[af]
        y = mem[bf]
        if x == SEP:  # the scan ran onto the ends: equal
            y = x
    mem[0] = EQ + (x > y) - (x < y)
    mem[1] = END
    return 1


def long_add(start, length):
    """a + b for the segment's two numbers: writes its digits (most significant first, no leading zeros) and
    ``END`` at cells 0...; returns the number of digits.

    Tape: ``a's digits, SEP, b's digits, SEP`` at ``mem[start:start+length]``. The sum is formed in the longer
    operand's cells (the shorter one's digits added in, then the carry rippled up), then copied down to cell 0; no
    cell outside the segment and the answer is used. Exact for any digit counts with ``start + length <= n``.
    """
    last = start + length - 1
    mem[last] = SEP  # already there in a well-formed prompt; it bounds the scan below on any tape
    p = start
    while mem[p] != SEP:
        p += 1
    if p == start or last - p < 2:  # not two numbers (not a prompt): no answer, and no copy past the only SEP
        mem[0] = END
        return 0
    carry = 0
    if p - start >= last - p - 1:
        # a is the longer: add b into a's cells; b's digits end at a's SEP
        i = p - 1
        j = last - 1
        v = mem[j]
        while v != SEP:
            t = mem[i] + v + carry
            mem[i] = t % 10
            carry = t // 10
            i -= 1
            j -= 1
            v = mem[j]
        stop = start - 1
        xs = start
    else:
        # b is the longer: add a into b's cells
        i = last - 1
        j = p - 1
        stop = start - 1
        while j != stop:
            t = mem[i] + mem[j] + carry
            mem[i] = t % 10
            carry = t // 10
            i -= 1
            j -= 1
        stop = p
        xs = p + 1
    while carry != 0 and i != stop:  # ripple the carry through the longer operand's upper digits
        t = mem[i] + 1
        mem[i] = t % 10
        carry = t // 10
        i -= 1
    # the sum is in the longer operand's cells xs..., up to its SEP, after a 1 if the carry left the top
    if carry != 0:
        o = 1
        if xs == 0:
            # they start at cell 0 (a is the longer, at start 0): rotate the 1 in, each cell taking the one before
            prev = 1
            v = mem[0]
            while v < 10:
                mem[o - 1] = prev
                prev = v
                v = mem[o]
                o += 1
            mem[o - 1] = prev
            mem[o] = END
            return o
        mem[0] = 1  # below the cells the copy reads (xs >= 1)
    else:
        o = 0
        while mem[xs] == 0:  # leading zeros (from the inputs' own); the SEP stops it
            xs += 1
    v = mem[xs]
    while v < 10:  # down to cell o, up to the longer operand's SEP
        mem[o] = v
        o += 1
        xs += 1
        v = mem[xs]
    if o == 0:  # every digit was 0
        mem[0] = 0
        o = 1
    mem[o] = END
    return o


def long_sub(start, length):
    """a - b for the segment's two numbers, as a true integer: writes ``MINUS`` (if negative), the digits of
    |a - b| (most significant first, no leading zeros) and ``END`` at cells 0...; returns the answer's length.

    Tape: ``a's digits, SEP, b's digits, SEP`` at ``mem[start:start+length]``. The numbers are compared first
    (as ``long_compare``), then the smaller is subtracted from the larger in the larger's cells (the borrow
    rippled up), and the difference is copied down to cell 0; no cell outside the segment and the answer is used.
    Exact for any digit counts with ``start + length <= n``.
    """
    last = start + length - 1
    mem[last] = SEP  # already there in a well-formed prompt; it bounds the scans below on any tape
    p = start
    while mem[p] != SEP:
        p += 1
    if p == start or last - p < 2:  # not two numbers (not a prompt): no answer
        mem[0] = END
        return 0
    af = start
    while mem[af] == 0:
        af += 1
    af = min(af, p - 1)
    bf = p + 1
    while mem[bf] == 0:
        bf += 1
    bf = min(bf, last - 1)
    x = p - af
    y = last - bf
    if x == y:
        mem[last] = END  # as long_compare: the lockstep scan stops at the ends when a == b
        i = af
        j = bf
        while mem[i] == mem[j]:
            i += 1
            j += 1
        x = mem[i]
        y = mem[j]
        if x == SEP:
            mem[0] = 0
            mem[1] = END
            return 1
    mem[bf - 1] = SEP  # b's significant digits start right after a SEP (its leading zeros are not needed)
    borrow = 0
    o = 0
    if x > y:
        # a > b: subtract b in a's cells; b's digits end at the SEP before them
        i = p - 1
        j = last - 1
        v = mem[j]
        while v != SEP:
            u = mem[i] + 10 - v - borrow
            mem[i] = u % 10
            borrow = u < 10
            i -= 1
            j -= 1
            v = mem[j]
        s = af
    else:
        # a < b: subtract a in b's cells, and the answer is negative
        i = last - 1
        j = p - 1
        stop = af - 1
        while j != stop:
            u = mem[i] + 10 - mem[j] - borrow
            mem[i] = u % 10
            borrow = u < 10
            i -= 1
            j -= 1
        s = bf
        o = 1
        mem[0] = MINUS  # below b's cells, which hold the difference
    if borrow != 0:  # ripple the borrow: the larger number has a nonzero digit up there
        while mem[i] == 0:
            mem[i] = 9
            i -= 1
        mem[i] -= 1
    while mem[s] == 0:  # the difference is not 0, so a nonzero digit stops this
        s += 1
    v = mem[s]
    while v < 10:  # down to cell o, up to the larger operand's SEP (or END)
        mem[o] = v
        o += 1
        s += 1
        v = mem[s]
    mem[o] = END
    return o


def long_mul(start, length):
    """a * b for the segment's two numbers: writes its digits (most significant first, no leading zeros) and
    ``END`` at cells 0...; returns the number of digits.

    Tape: ``a's digits, SEP, b's digits, SEP`` at ``mem[start:start+length]``. The product is accumulated least
    significant digit first in the cells from ``start + length`` up (La + Lb of them), one row per digit of a, each
    adding that digit times b with the carry done inline, so no cell or register exceeds 9 + 81 + 9 < n. Then it
    is copied down to cell 0. Exact while ``start + 2 * length - 2 <= n`` (two 40-digit operands: n = 256).
    """
    if length < 4:  # no room for two numbers (and the scan below would start below the segment)
        mem[0] = END
        return 0
    last = start + length - 1
    # b's digits end at the SEP before them, and the rows rely on it: find it from b's side, so that no SEP is
    # left among b's digits even on a tape that is not a prompt (a SEP in a's cells stands in for the scan's stop)
    first = mem[start]
    mem[start] = SEP
    p = last - 1
    while mem[p] != SEP:
        p -= 1
    mem[start] = first
    if last - p < 2 or p == start:  # not two numbers: stop, as the rows need both
        mem[0] = END
        return 0
    base = last + 1
    for r in range(base, base + last - 1 - p):  # the cells the first row adds into
        mem[r] = 0
    mem[last] = start - 1  # the rows' stop, read back through b's SEP cell (the rows end on a's SEP)
    r = base
    j = last - 1
    i = p - 1
    stop = start - 1
    while i != stop:
        d = mem[i]
        mem[i] = j  # b's last digit (the row's start), read back below through cell p - 1 (a's digits are read)
        carry = 0
        v = mem[j]
        while v != SEP:
            t = d * v + mem[r] + carry
            mem[r] = t % 10
            carry = t // 10
            r += 1
            j -= 1
            v = mem[j]
        mem[r] = carry  # a cell no earlier row reached
        jr = mem[j - 1]  # j is at a's SEP
        r = r + j + 1 - jr  # the next row starts one cell up
        stop = mem[jr + 1]
        j = jr
        i -= 1
    last = j + 1  # recomputed: holding it across the rows would take a register the inner loop needs
    top = last + last - i - 2  # the product's top cell, start + length - 1 + La + Lb (i = start - 1)
    while mem[top] == 0 and top != last + 1:
        top -= 1
    o = 0
    while top != last:
        mem[o] = mem[top]
        o += 1
        top -= 1
    mem[o] = END
    return o


def reads(name, count):
    """Whether a call of ``name`` may run on a segment of ``count`` numbers: each function here reads two (a and
    b). Plain Python, not compiled (``ncl.library.reads``)."""
    if name not in __all__:
        raise KeyError(f"no input contract for {name!r} in {__name__}")
    return count == 2


def resources(name, length):
    """Upper bounds for one call on a segment of ``length`` cells: ``(cells, steps)``.

    ``cells`` is one more than the highest cell the call touches when the segment starts at cell 0 (add it to
    ``start`` otherwise), ``steps`` the VM steps of the whole run, entry stub included. Both hold for every pair
    of numbers in range (1 to ``MAX_DIGITS`` digits each) that fills the segment, however its digits split
    between a and b and whatever they are (leading zeros included), so a run can be given its tape and step limit
    from the input's length alone. Plain Python, not compiled.

    The step bounds count the compiled loops on their costliest branches (per-digit costs read off the generated
    code; ``tests/test_library_digits.py`` holds them to the measured worst cases), for La + Lb digits:

    - ``long_compare``: 4 a cell to find a's SEP, 3 a leading zero skipped, 6 a digit the numbers share from the
      top: 65 + 4·La + 3·(La + Lb).
    - ``long_add``: 4 a cell of a, 11 a digit added, 9 a digit the carry ripples through, 6 a digit copied down
      (7 when rotated past the carry's 1, at start 0): 55 + 20·La + 2·Lb if La >= Lb, else 55 + 6·La + 15·Lb.
    - ``long_sub``: the comparison, then 12 a digit subtracted, 4 a zero the borrow passes, 3 a leading zero of
      the difference, 6 a digit copied down: 93 + 4·La + 3·(La + Lb) + 7·max(La, Lb) + 11·min(La, Lb).
    - ``long_mul``: 12 a digit pair, 19 a row (a digit of a), 8 a digit of b (finding the SEP, clearing the
      first row's cells), 6 a product digit stripped or copied: 61 + 12·La·Lb + 25·La + 14·Lb.

    A segment shorter than 4 cells holds no two numbers, and one longer than ``2 * MAX_DIGITS + 2`` none in range:
    they get the bounds of the nearest length that does (and at least their own cells).

    Raises:
        KeyError: a name that is not one of this module's functions.
    """
    if name not in __all__:
        raise KeyError(f"no resource bounds for {name!r} in {__name__}")
    s = min(max(length, 4), 2 * MAX_DIGITS + 2) - 2  # La + Lb
    steps = max(_steps(name, la, s - la) for la in range(max(1, s - MAX_DIGITS), min(MAX_DIGITS, s - 1) + 1))
    cells = 2 * s + 2 if name == "long_mul" else s + 2  # mul's product sits above the segment
    return max(cells, length), steps


def _steps(name, la, lb):
    """The step bound of ``resources`` for La = la and Lb = lb digits (see there)."""
    if name == "long_compare":
        return 65 + 4 * la + 3 * (la + lb)
    if name == "long_add":
        return 55 + (20 * la + 2 * lb if la >= lb else 6 * la + 15 * lb)
    if name == "long_sub":
        return 93 + 4 * la + 3 * (la + lb) + 7 * max(la, lb) + 11 * min(la, lb)
    return 61 + 12 * la * lb + 25 * la + 14 * lb
