"""Decoding calls under the library's input contracts (ncl.computer.contracts, ncl.library.reads): the contracts
hold for every gold call the tasks ask, the joint decoding is the best allowed call (against brute force), it
keeps a call that already fits, repairs a program of the wrong arity in a chain, and evaluation offers it."""

import argparse
import itertools
import json

import pytest
import torch

from ncl import cli, library
from ncl import tasks as task_registry
from ncl.computer import DEFAULT_MACHINE
from ncl.computer.calls import run_chain
from ncl.computer.contracts import contract_table, decode_call, segment_numbers
from ncl.library.symbols import SEP, text
from ncl.tasks import compose
from ncl.training.evaluation import DECODES, decoding, eval_file_name, evaluate_run

from _chain_support import computer, gold_heads, prompt_tape, runner  # noqa: F401 (a fixture)


def test_the_contracts_of_the_tape_functions():
    table = contract_table(library.names(), 9)
    row = {name: table[i].nonzero().flatten().tolist() for i, name in enumerate(library.names())}
    assert row["long_add"] == row["long_mul"] == row["long_compare"] == [2]
    assert row["palindrome"] == [1]
    assert row["list_sort"] == row["list_sum"] == list(range(1, 10))
    assert row["shortest_path"] == row["reachable"] == [2, 4, 6, 8]
    assert row["gcd"] == row["fib"] == []  # register programs read no segment
    with pytest.raises(KeyError, match="gcd"):
        library.reads("gcd", 2)


@pytest.mark.parametrize("split", ["train", "test", "paraphrase", "compose_3", "compose_4"])
def test_every_gold_call_of_the_mix_is_in_its_programs_contract(split):
    for e in task_registry.get("mix").generate(split, count=300, seed=2):
        values = e.operands if len(e.calls) == 1 else compose.values(e)
        for call in e.calls:
            count = sum(len(v) if isinstance(v, tuple) else 1 for v in (values[s] for s in call.args))
            assert library.reads(call.program, count), (e.prompt, call)


def test_segment_numbers_count_the_seps_within_the_length():
    cells = torch.tensor([[[4, SEP, 7, SEP], [5, 3, SEP, SEP]]])
    assert segment_numbers(cells, torch.tensor([[4, 3]])).tolist() == [[2, 1]]


def brute_force(pi, ptr, numbers, table):
    best, arg = float("-inf"), None
    P, (A, S) = pi.shape[0], ptr.shape
    for p, combo in itertools.product(range(P), itertools.product(range(S), repeat=A)):
        count = min(sum(int(numbers[s]) for s in combo), table.shape[1] - 1)
        score = float(torch.log(pi[p]) + sum(torch.log(ptr[a, s]) for a, s in enumerate(combo)))
        if table[p, count] and score > best:
            best, arg = score, (p, combo)
    return arg


def test_decode_call_is_the_best_call_in_contract():
    g = torch.Generator().manual_seed(0)
    B, P, A, S = 40, 5, 3, 5
    pi = torch.softmax(3 * torch.randn(B, P, generator=g), -1)
    ptr = torch.softmax(3 * torch.randn(B, A, S, generator=g), -1)
    ptr[:, :, 4] = 0.0  # a segment not available yet
    numbers = torch.randint(0, 3, (B, S), generator=g)
    numbers[:, 0] = 0  # the empty segment
    table = torch.rand(P, 7, generator=g) < 0.3
    table[0] = False  # a program that reads no segment
    table[:, 0] = table[:, 5:] = False
    numbers[:4, 1:] = 5  # the first rows' calls read no numbers or five or more: none fits
    out_pi, out_ptr, fits = decode_call(pi, ptr, numbers, table)
    for b in range(B):
        arg = brute_force(pi[b], ptr[b], numbers[b], table)
        assert bool(fits[b]) == (arg is not None)
        if arg is None:  # nothing fits: the heads' distributions stay
            assert torch.equal(out_pi[b], pi[b]) and torch.equal(out_ptr[b], ptr[b])
            continue
        assert int(out_pi[b].argmax()) == arg[0] and out_pi[b].sum() == 1
        assert tuple(out_ptr[b].argmax(-1).tolist()) == arg[1]
    assert fits.any() and not fits.all()


def test_a_call_that_fits_is_kept():
    """Where each head's argmax is already in contract, decoding changes nothing."""
    names = ["long_add", "palindrome", "list_sort"]
    table = contract_table(names, 6)
    pi = torch.tensor([[0.1, 0.7, 0.2]])
    ptr = torch.tensor([[[0.1, 0.8, 0.1], [0.9, 0.05, 0.05], [0.9, 0.05, 0.05]]])  # one number, then empty
    out_pi, out_ptr, fits = decode_call(pi, ptr, torch.tensor([[0, 1, 1]]), table)
    assert fits.all() and out_pi.argmax(-1).item() == 1 and out_ptr.argmax(-1).tolist() == [[1, 0, 0]]


def test_a_wrong_arity_program_is_repaired_in_a_chain(computer):
    """Two-number problems whose program head leans to ``palindrome`` (one number) print the wrong answer as
    the heads choose, and the gold one decoded under the contracts: the pointers take both numbers, so the
    most likely program that reads two is the gold one, second to palindrome."""
    problems = [e for e in compose.generate("train", count=60, seed=4)  # palindrome prints 0 or 1: not those
                if len(e.calls) == 1 and e.calls[0].program in compose.BINARY and e.answer not in ("0", "1")][:3]
    names = computer.program_names
    pi, ptr, halt = gold_heads(problems, names, 1)
    gold = pi.argmax(-1)
    pi = torch.full_like(pi, 1e-6)
    pi[..., names.index("palindrome")] = 0.6
    pi.scatter_(-1, gold[..., None], 0.3)
    tape = prompt_tape(problems)
    table = contract_table(names, DEFAULT_MACHINE.cells)
    with torch.no_grad():
        heads = run_chain(runner(computer), pi, ptr, halt, tape, DEFAULT_MACHINE.registers)
        decoded = run_chain(runner(computer), pi, ptr, halt, tape, DEFAULT_MACHINE.registers, contracts=table)
    answers = [e.answer for e in problems]
    assert (heads.program[:, 0] == names.index("palindrome")).all()
    assert all(text(m.argmax(-1).tolist()) != a for m, a in zip(heads.mem, answers))
    assert torch.equal(decoded.program, gold)
    assert [text(m.argmax(-1).tolist()) for m in decoded.mem] == answers


def test_evaluation_offers_the_decoding_and_checks_it():
    assert eval_file_name() == "eval.json" and eval_file_name("contracts") == "eval-contracts.json"
    with pytest.raises(ValueError, match="decode must be one of"):
        eval_file_name("beam")
    with pytest.raises(ValueError, match="chain of calls"):
        decoding(torch.nn.Linear(2, 2), "contracts")


@pytest.mark.slow
def test_ncl_eval_decodes_a_mix_run_under_the_contracts(tmp_path, capsys):
    run = tmp_path / "mix"
    tiny = ["--layers", "2", "--batch-size", "4", "--threads", "1", "--quiet", "--steps", "1"]
    assert cli.main(["train", "--task", "mix", "--out", str(run), *tiny]) == 0
    data = tmp_path / "mine.jsonl"
    data.write_text('{"prompt": "add 4 and 9, then multiply it by 12. =", "answer": "156"}\n')
    capsys.readouterr()
    assert cli.main(["eval", str(run), "--data", str(data), "--json", "--decode", "contracts"]) == 0
    assert json.loads(capsys.readouterr().out)["splits"]["data"]["count"] == 1
    result = evaluate_run(run, count=2, splits=["paraphrase"], decode="contracts")
    assert result["decode"] == "contracts" and result["splits"]["paraphrase"]["count"] == 2
    assert (run / "eval-contracts.json").exists() and not (run / "eval.json").exists()
    sort = tmp_path / "sort"
    assert cli.main(["train", "--task", "sort", "--out", str(sort), *tiny]) == 0
    assert cli.main(["eval", str(sort), "--data", str(data), "--decode", "contracts"]) == 2
    assert "chain of calls" in capsys.readouterr().err


def test_the_cli_offers_every_decoding():
    """``ncl eval`` and ``ncl trace`` list their --decode choices without importing torch (start-up time): the
    same as :data:`~ncl.training.evaluation.DECODES`."""
    sub = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for command in ("eval", "trace"):
        action = next(a for a in sub.choices[command]._actions if a.dest == "decode")
        assert tuple(action.choices) == DECODES and action.default == "heads"
