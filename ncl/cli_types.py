"""The argument types of ``ncl``'s command line: each parses one option's text or raises an
``argparse.ArgumentTypeError`` that says what was expected. Plain Python, so that a bad option fails before
torch loads."""

from __future__ import annotations

import argparse
import math


#: ``ncl.computer.config.ANSWER_GRAD_HEADS``, spelled here so that argument errors need not import torch (tested
#: equal).
ANSWER_GRAD_HEADS = ("write", "values", "args", "program", "read", "pointers", "halt")
#: ``ncl_kernels.dispatch.BACKENDS``, spelled here so that argument errors need not import torch (tested equal).
BACKENDS = ("reference", "cpp", "triton", "cuda")


def int_at_least(low: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low} (an integer), got {text!r}")
        return value

    return parse


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)


def float_above(low: float, inclusive: bool = False):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value < low or (value == low and not inclusive):
            raise argparse.ArgumentTypeError(f"must be {'>=' if inclusive else '>'} {low:g} (a finite number), "
                                             f"got {text!r}")
        return value

    return parse


positive_float = float_above(0.0)
non_negative_float = float_above(0.0, inclusive=True)


def fraction(text: str) -> float:
    value = non_negative_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be a fraction in [0, 1], got {text!r}")
    return value


def head_names(text: str) -> tuple[str, ...]:
    names = tuple(x.strip() for x in text.split(",") if x.strip())
    wrong = [x for x in names if x not in ANSWER_GRAD_HEADS]
    if not names or wrong:
        raise argparse.ArgumentTypeError(f"must be a comma-separated list of {', '.join(ANSWER_GRAD_HEADS)}, got "
                                         f"{text!r}")
    return names


def memory_size(text: str) -> tuple[int, int, int, int]:
    parts = text.split(",")
    try:
        size = tuple(int(p) for p in parts)
    except ValueError:
        size = ()
    if len(size) != 4 or min(size) < 1:
        raise argparse.ArgumentTypeError(f"must be B,N,D,H: four integers >= 1 separated by commas, got {text!r}")
    return size


def backend_name(text: str) -> str:
    if text not in BACKENDS:
        raise argparse.ArgumentTypeError(f"must be one of {', '.join(BACKENDS)}, got {text!r}")
    return text


__all__ = ["ANSWER_GRAD_HEADS", "BACKENDS", "backend_name", "float_above", "fraction", "head_names", "int_at_least",
           "memory_size", "non_negative_float", "non_negative_int", "positive_float", "positive_int"]
