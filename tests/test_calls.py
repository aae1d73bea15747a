"""The chain of library calls (ncl.computer.calls): composed problems' calls and intermediate results against the
discrete VM, gradients to every call's heads, halting across calls, input checks."""

import pytest
import torch
import torch.nn.functional as F

from ncl.computer import DEFAULT_MACHINE
from ncl.computer.calls import call_tape, operand_segments, result_segment, run_chain
from ncl.library.symbols import END, SEP, text
from ncl.tasks import compose
from ncl.training.tooluse import run_call, run_calls

from _chain_support import CELLS, computer, gold_heads, one_hot_tape, prompt_tape, runner  # noqa: F401 (a fixture)


@pytest.mark.parametrize("split", ["train", "compose_3", "compose_4"])
def test_calls_and_intermediate_results_equal_the_vm(computer, split):
    problems = compose.generate(split, count=6, seed=3)
    K = max(len(e.calls) for e in problems)
    pi, ptr, halt = gold_heads(problems, computer.program_names, K)
    with torch.no_grad():
        out = run_chain(runner(computer), pi, ptr, halt, prompt_tape(problems), DEFAULT_MACHINE.registers)
    O = max(len(e.operands) for e in problems)
    for b, e in enumerate(problems):
        assert int(out.calls[b]) == len(e.calls)
        seg_values = compose.values(e)  # the operands, then each gold call's result
        for k, call in enumerate(e.calls):  # each call's result against the VM's on the same arguments
            flat = [v for s in call.args for v in (seg_values[s] if isinstance(seg_values[s], tuple) else
                                                   (seg_values[s],))]
            vm = run_call(f"{call.program}({', '.join(map(str, flat))})")
            seg = out.segments.cells[b, 1 + O + k].argmax(-1).tolist()[:int(out.segments.length[b, 1 + O + k])]
            assert text(seg).strip() == vm.strip(), (e.prompt, k)
        assert text(out.mem[b].argmax(-1).tolist()) == e.answer == run_calls(e.call)


def test_gradients_reach_every_calls_heads(computer):
    torch.manual_seed(0)
    problems = compose.generate("compose_3", count=3, seed=5)
    K = 3
    pi, ptr, halt = gold_heads(problems, computer.program_names, K)
    # soft heads around the gold choices: the argmax stays the gold one, the other candidates get weight
    pi_logits = (torch.log(pi) * 0.1 + 0.3 * torch.randn_like(pi)).requires_grad_()
    ptr = (ptr * 0.05 + 0.1 * torch.randn_like(ptr)).requires_grad_()
    halt = (halt * 0.05).requires_grad_()
    out = run_chain(runner(computer), pi_logits.softmax(-1), ptr, halt, prompt_tape(problems),
                    DEFAULT_MACHINE.registers)
    assert (out.calls == K).all()
    weight = torch.randn_like(out.mem)
    ((out.mem * weight).sum() + out.r0.sum()).backward()
    for k in range(K):
        assert pi_logits.grad[:, k].abs().sum() > 0, f"call {k + 1}'s program head has no gradient"
        assert ptr.grad[:, k].abs().sum() > 0, f"call {k + 1}'s pointers have no gradient"
    for k in range(K - 1):
        assert halt.grad[:, k].abs().sum() > 0, f"call {k + 1}'s halting gate has no gradient"


def test_answer_grad_false_cuts_the_pointers_and_halting_gradient(computer):
    problems = compose.generate("train", count=2, seed=1)
    pi, ptr, halt = gold_heads(problems, computer.program_names, 2)
    ptr, halt = (ptr * 0.05).requires_grad_(), (halt * 0.05).requires_grad_()
    pi = pi.requires_grad_()  # a path for backward: the fixture's computer mixes programs with answer_grad on
    out = run_chain(runner(computer), pi, ptr, halt, prompt_tape(problems), DEFAULT_MACHINE.registers,
                    answer_grad=False)
    (out.mem * torch.randn_like(out.mem)).sum().backward()
    assert ptr.grad is None and halt.grad is None


def test_a_one_call_problem_stops_after_one_call(computer):
    problems = [e for e in compose.generate("train", count=40, seed=2) if len(e.calls) == 1][:2]
    problems += [e for e in compose.generate("train", count=40, seed=2) if len(e.calls) == 2][:2]
    K = 4
    pi, ptr, halt = gold_heads(problems, computer.program_names, K)
    rows_run = []
    with torch.no_grad():
        out = run_chain(runner(computer, rows_run), pi, ptr, halt, prompt_tape(problems), DEFAULT_MACHINE.registers)
    assert out.calls.tolist() == [1, 1, 2, 2]
    assert rows_run == [4, 2]  # call 2 ran only for the two-call rows; calls 3 and 4 ran for none
    assert out.stop.argmax(-1).tolist() == [0, 0, 1, 1]
    assert (out.program[:2, 1:] == -1).all() and (out.args[:2, 1:] == -1).all()


def test_operand_segments_split_a_list_from_the_number_after_it():
    cells = [5, SEP, 3, SEP, 9, SEP, 7, SEP]
    mem = one_hot_tape([cells])
    ends = torch.zeros(1, CELLS)
    ends[0, 5] = ends[0, 7] = 1
    seg = operand_segments(mem, torch.tensor([8]), ends, 3)
    assert seg.count.tolist() == [2] and seg.length.tolist() == [[0, 6, 2, 0]]
    assert seg.cells[0, 1, :6].argmax(-1).tolist() == cells[:6]
    assert seg.cells[0, 2, :2].argmax(-1).tolist() == [7, SEP]
    assert (seg.cells[0, 1, 6:].argmax(-1) == 0).all()


def test_result_segment_ends_a_number_with_sep_and_keeps_a_list():
    mem = one_hot_tape([[7, 3, END, 4], [2, SEP, 5, SEP, END], [END, 1]])
    cells, length = result_segment(mem)
    assert length.tolist() == [3, 4, 0]
    assert cells[0, :3].argmax(-1).tolist() == [7, 3, SEP] and cells[0, 3].argmax().item() == 0
    assert cells[1, :4].argmax(-1).tolist() == [2, SEP, 5, SEP]


def test_call_tape_concatenates_the_chosen_segments_in_slot_order():
    seg = operand_segments(one_hot_tape([[6, 3, SEP, 2, SEP]]), torch.tensor([5]),
                           torch.tensor([[0, 0, 1, 0, 1] + [0] * (CELLS - 5)]), 2)
    ptr = F.one_hot(torch.tensor([[2, 1]]), 3).double()  # "subtract 2 from 63" read the other way round
    mem, length = call_tape(seg, ptr)
    assert length.tolist() == [5] and mem[0, :5].argmax(-1).tolist() == [2, SEP, 6, 3, SEP]


def test_inputs_are_checked(computer):
    seg = operand_segments(one_hot_tape([[1, SEP]]), torch.tensor([2]), torch.tensor([[0, 1] + [0] * (CELLS - 2)]), 1)
    pi = torch.full((1, 2, len(computer.program_names)), 1.0 / len(computer.program_names))
    with pytest.raises(ValueError, match="pointer_logits"):
        run_chain(runner(computer), pi, torch.zeros(1, 2, 2, 3), torch.zeros(1, 2), seg, 8)
    with pytest.raises(ValueError, match="halt_logit"):
        run_chain(runner(computer), pi, torch.zeros(1, 2, 2, 4), torch.zeros(2), seg, 8)
    with pytest.raises(ValueError, match="pi"):
        run_chain(runner(computer), pi[0], torch.zeros(1, 2, 2, 4), torch.zeros(1, 2), seg, 8)
    with pytest.raises(ValueError, match="ends"):
        operand_segments(one_hot_tape([[1, SEP]]), torch.tensor([2]), torch.zeros(1, 3), 1)
    with pytest.raises(ValueError, match="length"):
        operand_segments(one_hot_tape([[1, SEP]]), torch.tensor([2.0]), torch.zeros(1, CELLS), 1)
    with pytest.raises(ValueError, match="pointers"):
        call_tape(seg, torch.zeros(1, 2, 5))
