"""Arithmetic on Z_n.

As compiled, every value is in 0..n-1 and + - * wrap modulo n. As Python, the same functions compute on
unbounded ints; the two agree modulo n, and exactly wherever no intermediate value leaves 0..n-1.
"""

__all__ = ["add", "sub", "mul", "divmod", "gcd", "mul_mod", "pow_mod"]


def add(a, b):
    """a + b (mod n)."""
    return a + b


def sub(a, b):
    """a - b (mod n)."""
    return a - b


def mul(a, b):
    """a * b (mod n)."""
    return a * b


def divmod(a, b):
    """The quotient and the remainder, returned as a pair: the quotient in r0, the remainder in r1.

    Division by 0 gives (0, 0), like the machine's DIV and MOD.
    """
    if b == 0:
        return 0, 0
    return a // b, a % b


def gcd(a, b):
    """The greatest common divisor (Euclid); gcd(a, 0) = a."""
    while b != 0:
        a, b = b, a % b
    return a


def mul_mod(a, b, m):
    """a * b % m by shift-and-add, so that no partial sum exceeds 2m - 2: exact for m <= (n + 1) // 2
    (2m - 2 < n).

    m = 0 gives 0.
    """
    if m == 0:
        return 0
    a = a % m
    product = 0
    while b != 0:
        if b % 2 != 0:
            product = (product + a) % m
        a = (a + a) % m
        b = b // 2
    return product


def pow_mod(base, exp, m):
    """base ** exp % m by square-and-multiply on mul_mod: exact for m <= (n + 1) // 2. m = 0 gives 0."""
    if m == 0:
        return 0
    result = 1 % m
    base = base % m
    while exp != 0:
        if exp % 2 != 0:
            result = mul_mod(result, base, m)
        base = mul_mod(base, base, m)
        exp = exp // 2
    return result
