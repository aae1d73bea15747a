"""The step search (ncl.training.search.search_steps): a chain run again with a step end forced is the chain its
heads choose on those steps, a flip that makes a row print its answer is found, the rows not searched and the
answer cue are never tried, and the loss is the marginal likelihood of the flips that match."""

from dataclasses import replace

import pytest
import torch

from ncl.computer import DEFAULT_MACHINE, ComputerConfig, NeuralComputer
from ncl.computer.outputs import ChainHeads, ChainInputs
from ncl.tasks import compose
from ncl.training.search import answer_texts, search_steps, step_search_loss

from _chain_support import CELLS, N, SURE, prompt_tape

D, K = 8, 2  # K + 1 = 3 operand segments, as prompt_tape gives three numbers


@pytest.fixture(scope="module")
def computer():
    torch.manual_seed(0)
    machine = replace(DEFAULT_MACHINE, n=N, cells=CELLS)
    config = ComputerConfig(machine=machine, max_steps=4000, calls=K, reader="cells", writer="cells")
    comp = NeuralComputer(D, config).double()
    heads = comp.call_heads
    with torch.no_grad():  # every call runs long_add, so the answer depends on the steps alone
        heads.program.weight.zero_()
        heads.program.bias.fill_(-SURE)
        heads.program.bias[comp.program_names.index("long_add")] = SURE
        heads.step_end.bias.fill_(-SURE)  # no step ends but the cue's
    return comp


def two_operand_problems(count):
    return [e for e in compose.generate("train", count=80, seed=5)
            if len(e.operands) == 3 and all(isinstance(o, int) for o in e.operands)][:count]


def chain_inputs(problems, T=14):
    """Prompt-side inputs of ``T`` tokens whose operands end at tokens 3, 7 and 11 (the tape's three numbers)."""
    B = len(problems)
    torch.manual_seed(1)
    h = torch.randn(B, T, D, dtype=torch.double)
    mask = torch.ones(B, T, dtype=torch.double)
    ends = torch.zeros(B, T, dtype=torch.double)
    ends[:, [3, 7, 11]] = 1
    return ChainInputs(h, mask, ends, mask * (1 - ends), None, prompt_tape(problems), None)


def heads_of(computer, inputs):
    logits, pi, out = computer._calls(inputs, grad=False)
    heads = ChainHeads(pi, out.pointers, logits.halt, None, out.calls, out.program, out.args, out.call_steps,
                       out.segments.cells.argmax(-1), out.segments.length, logits.step, inputs=inputs)
    return heads, out


def test_forcing_nothing_reruns_the_same_chain_and_a_forced_step_end_adds_a_call(computer):
    problems = two_operand_problems(3)
    inputs = chain_inputs(problems)
    heads, out = heads_of(computer, inputs)
    rows = torch.arange(len(problems))
    same = computer.chain_with_steps(inputs, rows, torch.full((3, 14), -1))
    assert torch.equal(same.mem, out.mem) and torch.equal(same.calls, out.calls)
    assert torch.equal(same.program, out.program) and torch.equal(same.args, out.args)
    assert out.calls.tolist() == [1, 1, 1]  # the cue is the only step end
    force = torch.full((3, 14), -1)
    force[:, 7] = 1
    split = computer.chain_with_steps(inputs, rows, force)
    assert split.calls.tolist() == [2, 2, 2]
    with pytest.raises(ValueError, match="force"):
        computer.chain_with_steps(inputs, rows, torch.full((3, 13), -1))


def test_the_search_finds_the_step_end_that_prints_the_answer(computer):
    problems = two_operand_problems(3)
    inputs = chain_inputs(problems)
    heads, out = heads_of(computer, inputs)
    force = torch.full((3, 14), -1)
    force[:, 7] = 1  # the answers a chain that ends its first step at token 7 prints
    answers = answer_texts(computer.chain_with_steps(inputs, torch.arange(3), force).mem)
    assert all(a != b for a, b in zip(answers, answer_texts(out.mem))), "the split chain should answer otherwise"
    rows = torch.tensor([True, True, False])
    res = search_steps(computer, heads, answers, rows)
    assert res.runs == 2 * 3  # each searched row's operand ends: 3, 7, 11 (the cue, 13, is never flipped)
    assert not res.marks.any()
    assert res.matches[:2, 7].all()
    assert not res.matches[2].any()  # not searched
    assert not res.matches[:, 13].any()


def test_the_step_search_loss_raises_the_flips_that_match():
    logit = torch.tensor([[-3.0, 2.0, -1.0], [0.5, -2.0, 1.0]], requires_grad=True)
    marks = logit.detach() > 0
    matches = torch.tensor([[True, True, False], [False, False, False]])
    loss = step_search_loss(logit, marks, matches)
    p = torch.sigmoid(torch.tensor([-3.0, -2.0]))  # the flips' probabilities: unmarked → on, marked → off
    assert torch.allclose(loss, -torch.log(p.sum()))
    loss.backward()
    assert logit.grad[0, 0] < 0 and logit.grad[0, 1] > 0  # toward the flips
    assert (logit.grad[0, 2] == 0) and (logit.grad[1] == 0).all()  # no match: no gradient
    assert step_search_loss(logit, marks, torch.zeros_like(matches)).item() == 0.0
