"""The interface searched from answers alone (``ncl train --discover``, :mod:`ncl.training.discover`)."""

import json
import random
import time
from dataclasses import replace

import pytest
import torch

from ncl import cli, library, tasks
from ncl.library.symbols import SEP
from ncl.training import TrainConfig, build_model, encode, load_checkpoint, tokenizer
from ncl.training import discover as discover_module
from ncl.training.discover import (DIGIT, START, Discovered, Hypothesis, discover, prints, tape, token_pairs,
                                 vm_prints)
from ncl.training.labels import drop_labels
from ncl.training.tooluse import run_call

TINY = ["--layers", "2", "--split", "1", "--batch-size", "4", "--threads", "1", "--quiet", "--log-every", "1"]
#: The rule the benchmark's labels follow: every digit, and the token after a number.
NUMBERS = frozenset({(" ", DIGIT), (DIGIT, DIGIT), (DIGIT, " ")})
CELLS, ARG_CELLS = 128, 4


def _tokens(tok, prompt):
    return [tok.id_to_token(t) for t in [tok.bos_token_id] + tok.encode(prompt)]


def _examples(task, count, seed=0, split="train"):
    rng = random.Random(seed)
    return [tasks.get(task).sample(split, rng) for _ in range(count)]


def test_token_pairs_and_tape():
    tok = tokenizer()
    tokens = _tokens(tok, "add 407 98 =")
    pairs = token_pairs(tokens)
    assert tokens[1:4] == ["add", " ", "4"]  # a task word is one token
    assert pairs[:3] == [(START, tokens[0]), (tokens[0], "add"), ("add", " ")]
    assert pairs[3:7] == [(" ", DIGIT), (DIGIT, DIGIT), (DIGIT, DIGIT), (DIGIT, " ")]
    for e in _examples("long_add", 20) + _examples("sort", 20) + _examples("shortest_path", 20):
        assert tuple(tape(_tokens(tok, e.prompt), NUMBERS, CELLS)) == e.tape  # the labels' tape
    assert tape(_tokens(tok, "add 407 98 ="), NUMBERS, 4) == [4, 0, 7, tape(tokens, NUMBERS, 8)[-1]]  # saturates


@pytest.mark.parametrize("task,programs", [("long_add", {"long_add"}), ("sort", {"list_sort", "merge_sort"}),
                                           ("shortest_path", {"shortest_path"})])
def test_discover_finds_the_labelled_interface(task, programs):
    """From answers alone, the search finds the benchmark's labels: the write rule, a program that computes the
    task, and the arguments (start 0, the tape's length)."""
    tok = tokenizer()
    examples = _examples(task, 24, seed=1)
    found = discover([(_tokens(tok, e.prompt), e.answer) for e in examples], library.names(), ARG_CELLS, CELLS)
    h = found.hypothesis
    assert h is not None and h.program in programs
    for e in _examples(task, 50, seed=2):
        tokens = _tokens(tok, e.prompt)
        written = tape(tokens, h.written, CELLS)
        assert tuple(written) == e.tape
        values = written[:ARG_CELLS] + [0] * (ARG_CELLS - len(written[:ARG_CELLS])) + [len(written), 0]
        assert tuple(values[s] for s in h.sources) == e.args
        assert prints(h.program, e.args, written, CELLS) == e.answer


def test_discover_finds_nothing_in_wrong_answers():
    tok = tokenizer()
    examples = _examples("long_add", 12)
    answers = [e.answer for e in examples[1:] + examples[:1]]  # each example given another's answer
    found = discover([(_tokens(tok, e.prompt), a) for e, a in zip(examples, answers)], library.names(), ARG_CELLS,
                     CELLS)
    assert found.hypothesis is None and found.runs > 0


def test_prints_gives_up_on_a_long_run():
    start = time.time()
    assert prints("fib", (90,), [], CELLS) is None  # the naive recursion would run for years
    assert time.time() - start < 5
    assert prints("long_add", (0, 300), [4, 2], CELLS) is None  # indices past the tape


def test_relabel_gives_the_hypothesis_labels():
    """A batch without labels gets, on the rows the hypothesis explains, the labels the task would have given;
    a row with a wrong answer gets none."""
    tok = tokenizer()
    cfg = TrainConfig(task="long_add", labels=0.0, discover=16, layers=2, split=1)
    model = build_model(cfg)
    computer = model.computer
    found = Discovered.for_model(tasks.get("long_add"), cfg, tok, model)
    assert found.found.hypothesis.program == "long_add"
    assert found.vm_checked == 16 and found.record()["vm_checked"] == 16  # each search example again on the VM
    examples = _examples("long_add", 8, seed=3)
    examples[2] = replace(examples[2], answer="1" + examples[2].answer)
    full = encode(examples, tok, computer.program_names)
    rows = torch.ones(len(examples), dtype=torch.bool)
    out, explained = found.relabel(full, drop_labels(full, ~rows), examples, rows)
    assert explained.tolist() == [i != 2 for i in range(8)]
    for key in ("gate", "program", "args", "read_gate", "digit"):
        assert torch.equal(out[key][explained], full[key][explained]), key
        assert (out[key][~explained] == -100).all(), key


def test_the_kept_hypothesis_runs_on_the_vm_too(monkeypatch):
    """The VM prints what Python prints for the kept hypothesis (its argument values checked against ``n``); a
    VM that printed otherwise stops the search with a ValueError naming both."""
    machine = build_model(TrainConfig(task="long_add", layers=2, split=1)).computer.config.machine
    cells_written = [4, 2, SEP, 9, 9, SEP]
    assert vm_prints("long_add", (0, 6), cells_written, machine) == prints("long_add", (0, 6), cells_written,
                                                                              machine.cells) == "141"
    assert vm_prints("long_add", (0, machine.n), cells_written, machine) is None  # outside the machine's values
    monkeypatch.setattr(discover_module, "vm_prints", lambda *args: "0")
    cfg = TrainConfig(task="long_add", labels=0.0, discover=4, layers=2, split=1)
    with pytest.raises(ValueError, match="as Python and '0' on the VM"):
        Discovered.for_model(tasks.get("long_add"), cfg, tokenizer(), build_model(cfg))


def test_cli_discovers_at_f0(tmp_path):
    assert cli.main(["train", "--task", "long_add", "--out", str(tmp_path / "a"), *TINY, "--steps", "2",
                     "--labels", "0"]) == 0
    cfg = load_checkpoint(tmp_path / "a")["config"]
    assert cfg["discover"] == 32 and cfg["computer"]["answer_grad"] is False
    record = json.loads((tmp_path / "a" / "discovered.json").read_text())
    assert record["hypothesis"]["program"] == "long_add" and record["examples"] == 32
    assert Hypothesis.from_dict(record["hypothesis"]).written == NUMBERS
    lines = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines() if "loss" in x]
    assert all(x["discovered"] == 1.0 and x["aux_loss"] > 0 for x in lines)
    with pytest.raises(ValueError, match="discover: labels the examples without labels"):
        TrainConfig(task="mix", labels=0.0, discover=8).validate()
    with pytest.raises(ValueError, match="discover: labels the examples without labels"):
        TrainConfig(task="sort", model="llama", labels=1.0, discover=8).validate()
    with pytest.raises(ValueError, match="discover: labels the examples without labels"):
        TrainConfig(task="long_add", discover=8).validate()  # every example labelled


def test_tooluse_calls_from_the_search(tmp_path):
    """The tool-use baseline gets the same search: the call the hypothesis writes is the labelled call, and a row
    whose answer it does not print keeps none."""
    tok = tokenizer()
    cfg = TrainConfig(task="sort", model="tooluse", labels=0.0, discover=16, layers=2, split=1)
    found = Discovered.for_model(tasks.get("sort"), cfg, tok, build_model(cfg))
    examples = _examples("sort", 6, seed=4)
    examples[1] = replace(examples[1], answer="9 " + examples[1].answer)
    out, explained = found.relabel_calls(examples, torch.ones(6, dtype=torch.bool))
    assert explained.tolist() == [i != 1 for i in range(6)]
    names = {"list_sort", "merge_sort"}
    for e, o, x in zip(examples, out, explained.tolist()):
        assert (o.numbers == e.numbers and o.program in names and run_call(o.call) == e.answer) if x else o == e
    assert cli.main(["train", "--task", "sort", "--model", "tooluse", "--out", str(tmp_path / "t"), *TINY,
                     "--steps", "2", "--labels", "0", "--discover", "8"]) == 0
    lines = [json.loads(x) for x in (tmp_path / "t" / "metrics.jsonl").read_text().splitlines() if "loss" in x]
    assert all(x["discovered"] == 1.0 and x["lm_loss"] > 0 for x in lines)


def test_too_many_pairs_is_refused():
    tokens = ["<bos>", *"abcdefghijklm", "1", " ", "="]
    with pytest.raises(ValueError, match="token pairs the write rule has not decided"):
        discover([(tokens, "1")], library.names(), ARG_CELLS, CELLS)
