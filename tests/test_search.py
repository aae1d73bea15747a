"""The program search (ncl.training.search): on chains whose heads choose composed problems' gold calls, a call
given a wrong program is repaired by the programs whose answer is the example's, a right chain's equivalent
programs match too, the rows not searched get no targets, and the loss is the marginal likelihood of the
programs that match."""

import pytest
import torch

from ncl.computer import DEFAULT_MACHINE
from ncl.computer.calls import run_chain
from ncl.computer.outputs import ChainHeads
from ncl.tasks import compose
from ncl.training.search import answer_texts, search_loss, search_pointers, search_programs

from _chain_support import SURE, computer, gold_heads, prompt_tape, runner  # noqa: F401 (a fixture)

#: The search's step limit per call: the longest gold call here (``merge_sort`` of the sorting problem) takes 485
#: steps, and a wrong program that never halts would otherwise run to the fixture's 4000 on every call.
STEPS = 600


def chain_heads(computer, problems, K, wrong=None):
    """The chain of the problems' gold calls, with call ``wrong[b]`` of row b given another program."""
    pi, ptr, halt = gold_heads(problems, computer.program_names, K)
    if wrong is not None:
        for b, k in enumerate(wrong):
            gold = int(pi[b, k].argmax())
            pi[b, k] = 1e-6  # most mass on the next program, the gold one second
            pi[b, k, (gold + 1) % pi.shape[-1]], pi[b, k, gold] = 0.7, 0.3
    with torch.no_grad():
        out = run_chain(runner(computer), pi, ptr, halt, prompt_tape(problems), DEFAULT_MACHINE.registers)
    heads = ChainHeads(pi, out.pointers, halt, None, out.calls, out.program, out.args, out.call_steps,
                       out.segments.cells.argmax(-1), out.segments.length, None)
    return heads, out.mem


def problems_with(calls, count):
    return [e for e in compose.generate("train", count=60, seed=4) if len(e.calls) == calls][:count]


def test_gold_chains_match_their_own_programs_and_the_equivalent_ones(computer):
    """A right chain is searched too: every program that prints the same answer shares the target (a sorted
    list is sorted by ``list_sort`` and by ``merge_sort``), so a spurious program is never the only one."""
    problems = problems_with(1, 1) + problems_with(2, 1)
    sorting = [e for e in compose.generate("train", count=200, seed=4)
               if len(e.calls) == 1 and e.calls[0].program == "list_sort"][:1]
    assert sorting, "no one-call list_sort problem drawn"
    problems += sorting
    heads, mem = chain_heads(computer, problems, 2)
    answers = [e.answer for e in problems]
    assert answer_texts(mem) == answers
    res = search_programs(computer, heads, mem, answers, torch.ones(len(problems), dtype=torch.bool), STEPS)
    names = computer.program_names
    assert res.own.all() and res.runs == sum(len(e.calls) for e in problems) * (len(names) - 1)
    for b, e in enumerate(problems):
        for k, call in enumerate(e.calls):
            assert res.matches[b, k, names.index(call.program)]
        assert not res.matches[b, len(e.calls):].any()  # the calls not run have no targets
    assert res.matches[-1, 0, names.index("merge_sort")]


@pytest.mark.parametrize("calls", [1, 2])
def test_a_wrong_program_is_repaired_by_the_gold_one(computer, calls):
    problems = problems_with(calls, 3)
    wrong = [calls - 1] * 3 if calls == 1 else [0, 1, 0]
    heads, mem = chain_heads(computer, problems, 2, wrong)
    answers = [e.answer for e in problems]
    assert all(t != a for t, a in zip(answer_texts(mem), answers)), "the wrong programs should change the answers"
    rows = torch.tensor([True, True, False])
    res = search_programs(computer, heads, mem, answers, rows, STEPS)
    assert not res.own.any()
    P = len(computer.program_names)
    assert res.runs == 2 * calls * (P - 1)  # every other program at every call of the rows searched
    for b in range(2):
        k = wrong[b]
        gold = computer.program_names.index(problems[b].calls[k].program)
        assert res.matches[b, k, gold]
        # the gold program repairs the chain; no other program of the wrong call's row reproduces its answer
        # at another call, since the wrong call is still wrong there
        assert not res.matches[b, [j for j in range(2) if j != k]].any()
    assert not res.matches[2].any()
    top = search_programs(computer, heads, mem, answers, rows, STEPS, top=1)
    assert top.runs == 2 * calls  # the most likely other program is the gold one
    assert top.matches[:2].sum() == 2 and top.matches[torch.arange(2), wrong[:2]].any(-1).all()


def test_a_wrong_argument_is_repaired_by_the_gold_segment(computer):
    """A call whose second slot takes the empty segment (one operand missing) is repaired by pointing that slot
    at the gold operand; the rows not searched are not tried."""
    problems = [e for e in problems_with(1, 8) if len(e.calls[0].args) == 2][:3]
    pi, ptr, halt = gold_heads(problems, computer.program_names, 2)
    ptr[:, 0, 1] = -SURE
    ptr[:, 0, 1, 0] = SURE  # slot 2 of call 1: the empty segment
    with torch.no_grad():
        out = run_chain(runner(computer), pi, ptr, halt, prompt_tape(problems), DEFAULT_MACHINE.registers)
    heads = ChainHeads(pi, out.pointers, halt, None, out.calls, out.program, out.args, out.call_steps,
                       out.segments.cells.argmax(-1), out.segments.length, None)
    answers = [e.answer for e in problems]
    assert all(t != a for t, a in zip(answer_texts(out.mem), answers))
    rows = torch.tensor([True, True, False])
    res = search_pointers(computer, heads, answers, rows)
    offered = (out.pointers[:2, 0] > 0).sum().item()  # both slots' segments on offer, the chosen ones excepted
    assert res.runs == offered - 2 * 2
    for b in range(2):
        gold = 1 + problems[b].calls[0].args[1]
        assert res.matches[b, 0, 1, gold]
        assert res.matches[b].sum() <= 2  # at most the gold segment, and the other slot's where they commute
    assert not res.matches[2].any() and not res.matches[:, 1].any()


def test_search_loss_is_the_marginal_likelihood_of_the_matching_programs():
    torch.manual_seed(0)
    logits = torch.randn(3, 2, 5, dtype=torch.double, requires_grad=True)
    pi = logits.softmax(-1)
    matches = torch.zeros(3, 2, 5, dtype=torch.bool)
    matches[0, 0, [1, 3]] = True
    matches[2, 1, 4] = True
    loss = search_loss(pi, matches)
    want = -(torch.log(pi[0, 0, 1] + pi[0, 0, 3]) + torch.log(pi[2, 1, 4])) / 2
    torch.testing.assert_close(loss, want)
    loss.backward()
    assert logits.grad[0, 0, 1] < 0 and logits.grad[0, 0, 3] < 0 and logits.grad[2, 1, 4] < 0  # pushed up
    assert logits.grad[1].abs().sum() == 0 and logits.grad[0, 1].abs().sum() == 0  # no match, no target
    assert search_loss(pi, torch.zeros_like(matches)) == 0


def test_inputs_are_checked(computer):
    problems = problems_with(1, 2)
    heads, mem = chain_heads(computer, problems, 2)
    with pytest.raises(ValueError, match="answers"):
        search_programs(computer, heads, mem, ["1"], torch.ones(2, dtype=torch.bool))
    with pytest.raises(ValueError, match="rows"):
        search_programs(computer, heads, mem, ["1", "2"], torch.ones(2))


def test_options():
    from ncl.training import TrainConfig

    for bad, match in ((dict(task="long_add", labels=0.1, search=3), "search: searches the programs of a chain"),
                       (dict(task="mix", labels=1.0, search=3), "search: searches"),
                       (dict(task="mix", model="tooluse", labels=0.1, search=3), "search: searches"),
                       (dict(task="mix", labels=0.1, search=-1), "search must be >= 0")):
        with pytest.raises(ValueError, match=match):
            TrainConfig(**bad).validate()
    TrainConfig(task="mix", labels=0.1, search=3).validate()


def test_a_run_searches_the_unlabelled_examples(tmp_path):
    """``ncl train --search-programs`` on mix: the metrics say how many unlabelled examples the model answered
    and how many a search repaired; eval.json and the report name the search."""
    import json

    from ncl import cli
    from ncl.training import evaluate_run, load_checkpoint
    from ncl.training.report import labels_family, model_label

    out = tmp_path / "run"
    assert cli.main(["train", "--task", "mix", "--out", str(out), "--layers", "2", "--split", "1", "--batch-size",
                     "4", "--threads", "1", "--quiet", "--log-every", "1", "--steps", "3", "--labels", "0.1",
                     "--labels-only", "--search-programs", "2", "--no-search-pointers", "--replay", "0"]) == 0
    assert load_checkpoint(out)["config"]["search"] == 2
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if "loss" in x]
    assert len(lines) == 3
    for line in lines:
        assert 0 <= line["search_right"] <= 1 and 0 <= line["search_repaired"] <= 1
        assert line["search_right"] + line["search_repaired"] <= 1
    result = evaluate_run(out, count=2, splits=["test"], threads=1)
    assert result["search"] == 2 and result["call_separators"] is False and result["word_view"] == "context"
    assert model_label(result) == "augmented (F=0.1, labels only + program search + words without list separators)"
    assert model_label({**result, "word_view": "collapsed"}) == "augmented (F=0.1, labels only + program search + " \
        "words without list separators + words read with the numbers collapsed)"
    assert model_label({**result, "word_view": "local"}).endswith("+ words read by their neighbours alone)")
    assert model_label({**result, "word_view": "pretrained"}).endswith("+ words read by a pretrained encoder)")
    assert model_label({**result, "word_view": "hybrid"}).endswith(
        "+ program read by a pretrained encoder, pointers with the numbers collapsed)")
    result = {**result, "call_separators": None}  # an eval.json written before the option existed
    assert model_label(result) == "augmented (F=0.1, labels only + program search)"
    assert labels_family(result) == ("augmented, labels only + program search", 0.1)
    default = {**result, "answer_grad": True, "answer_grad_heads": ["read"]}  # a chain's default at 0 < F < 1
    assert model_label(default) == "augmented (F=0.1, answer grad to read + program search)"
    assert labels_family(default) == ("augmented, answer grad to read + program search", 0.1)
    now = {**default, "search_pointers": True, "replay": 4}  # the default since the step and pointer searches
    assert model_label(now) == "augmented (F=0.1, answer grad to read + program and pointer search + replay 4)"
    assert model_label({**now, "call_separators": False}) == \
        "augmented (F=0.1, answer grad to read + program and pointer search + replay 4 + words without list separators)"
    every = {**now, "search_steps": True}
    assert labels_family(every) == ("augmented, answer grad to read + program, step and pointer search + replay 4",
                                    0.1)


def test_the_defaults_with_scarce_labels(tmp_path):
    """Between 0 and 1 a single call's heads train on the labels alone (docs/labels.md measured the answer's
    gradient harming), and a chain's programs and arguments are searched and its labelled examples replayed, the
    answer's gradient reaching its read gates alone; at F = 0 only the answer's gradient is left. A chain's heads
    leave a list's inner separators out of the words at 0 < F < 1 (unless ``--call-separators``), and pool them
    with every label (docs/labels.md measured both); they read the words in the prompt as written at 0 < F < 1,
    as the runs there did, and with every label on ``mix`` the program's by the pretrained encoder and the
    pointers' with the numbers collapsed, and with its numbers collapsed elsewhere (docs/language.md)."""
    from ncl import cli
    from ncl.cli_train import REPLAY, SEARCH_CANDIDATES
    from ncl.computer.config import ANSWER_GRAD_HEADS
    from ncl.training import load_checkpoint

    tiny = ["--layers", "2", "--split", "1", "--batch-size", "2", "--threads", "1", "--quiet", "--steps", "1"]
    every = list(ANSWER_GRAD_HEADS)
    off = ["--search-programs", "0", "--no-search-pointers", "--replay", "0", "--labels-only", "--call-separators",
           "--word-view", "collapsed"]
    for name, task, extra, search, answer_grad, heads, pointers, replay, separators, view in (
            ("mix", "mix", ["--labels", "0.5"], SEARCH_CANDIDATES, True, ["read"], True, REPLAY, False, "context"),
            ("off", "mix", ["--labels", "0.5", *off], 0, False, every, False, 0, True, "collapsed"),
            ("sort", "sort", ["--labels", "0.5"], 0, False, every, False, 0, True, "collapsed"),
            ("zero", "sort", ["--labels", "0"], 0, False, every, False, 0, True, "collapsed"),  # --discover
            ("zero_mix", "mix", ["--labels", "0"], 0, True, every, False, 0, True, "collapsed"),
            ("all", "mix", [], 0, False, every, False, 0, True, "hybrid"),
            ("mix_nested", "mix_nested", [], 0, False, every, False, 0, True, "collapsed")):
        assert cli.main(["train", "--task", task, "--out", str(tmp_path / name), *tiny, *extra]) == 0, name
        cfg = load_checkpoint(tmp_path / name)["config"]
        got = (cfg["search"], cfg["computer"]["answer_grad"], list(cfg["computer"]["answer_grad_heads"]),
               cfg["search_pointers"], cfg["replay"], cfg["search_steps"], cfg["computer"]["call_separators"],
               cfg["computer"]["word_view"])
        assert got == (search, answer_grad, heads, pointers, replay, False, separators, view), name
        assert cfg["discover"] == (32 if name == "zero" else 0), name
        assert cfg["computer"]["program_norm"] == (name != "all"), name  # mix with every label: the encoder's mean
