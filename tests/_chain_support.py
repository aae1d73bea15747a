"""Chains of calls built from composed problems' gold calls, for the tests of ncl.computer.calls and of the
program search (ncl.training.search)."""

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from ncl.computer import DEFAULT_MACHINE, ComputerConfig, NeuralComputer
from ncl.computer.calls import Segments, operand_segments
from ncl.library.symbols import number_cells

N, CELLS = 256, 96
SURE = 30.0  # a logit that makes a head's choice certain


@pytest.fixture(scope="module")
def computer():
    machine = replace(DEFAULT_MACHINE, n=N, cells=CELLS)
    return NeuralComputer(8, ComputerConfig(machine=machine, max_steps=4000))


def one_hot_tape(rows: list[list[int]]) -> torch.Tensor:
    return F.one_hot(torch.tensor([r + [0] * (CELLS - len(r)) for r in rows]), N).double()


def operand_cells(operand) -> list[int]:
    return number_cells(operand if isinstance(operand, tuple) else (operand,))


def prompt_tape(problems) -> Segments:
    """The problems' operands on a tape, each operand's last SEP marked as its end."""
    rows, ends = [], []
    for e in problems:
        cells, marks = [], []
        for op in e.operands:
            c = operand_cells(op)
            cells += c
            marks += [0] * (len(c) - 1) + [1]
        rows.append(cells)
        ends.append(marks + [0] * (CELLS - len(marks)))
    length = torch.tensor([len(r) for r in rows])
    O = max(len(e.operands) for e in problems)
    return operand_segments(one_hot_tape(rows), length, torch.tensor(ends), O)


def gold_heads(problems, names, K, A=2):
    """The logits that choose each problem's gold calls, and halt at its last one."""
    B, O = len(problems), max(len(e.operands) for e in problems)
    pi = torch.full((B, K, len(names)), -SURE, dtype=torch.double)
    ptr = torch.full((B, K, A, 1 + O + K), -SURE, dtype=torch.double)
    halt = torch.full((B, K), -SURE, dtype=torch.double)
    ptr[..., 0] = 0.0  # an unused slot takes the empty segment
    for b, e in enumerate(problems):
        for k, call in enumerate(e.calls):
            pi[b, k, names.index(call.program)] = SURE
            ptr[b, k, :, 0] = -SURE
            for a, seg in enumerate(call.args):
                i = len(e.operands)
                ptr[b, k, a, 1 + seg if seg < i else 1 + O + seg - i] = SURE
            for a in range(len(call.args), A):
                ptr[b, k, a, 0] = SURE
        halt[b, len(e.calls) - 1] = SURE
    return pi.softmax(-1), ptr, halt


def runner(computer, counter=None):
    def run(pi, regs, mem):
        if counter is not None:
            counter.append(pi.shape[0])
        return computer.run_machine(pi, regs, mem)
    return run
