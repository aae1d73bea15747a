"""Recursive (and one iterative) functions on Z_n: they run on the machine's real stacks.

Each level of recursion takes one return-stack slot, plus one data-stack slot per value the caller still needs
after the call; a stack holds MachineConfig.stack - 1 items.
"""

__all__ = ["factorial", "fib", "fib_iter", "sum_to"]


def factorial(k):
    """k! (mod n), recursively: k levels deep."""
    if k < 2:
        return 1
    return k * factorial(k - 1)


def fib(k):
    """The k-th Fibonacci number (mod n), by the doubly recursive definition: k levels deep, ~fib(k) calls."""
    if k < 2:
        return k
    return fib(k - 1) + fib(k - 2)


def fib_iter(k):
    """The k-th Fibonacci number (mod n), by iteration."""
    a, b = 0, 1
    for _ in range(k):
        a, b = b, a + b
    return a


def sum_to(k):
    """0 + 1 + ... + k (mod n), recursively: k levels deep."""
    if k == 0:
        return 0
    return k + sum_to(k - 1)
