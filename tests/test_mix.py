"""The ``mix`` task: every benchmark task asked in natural language (ncl.tasks.phrasing, ncl.tasks.mix). The
templates keep the numbers in the program's order and end each number; training never meets an evaluation
prompt, nor the held-out wording; every split holds 500 distinct prompts; the digit tape's labels find the
numbers inside the sentences. Composed problems (ncl.tasks.compose): their gold calls, run one by one on the
discrete VM, give the answer; their splits are disjoint and need 1-2 calls in training, 3 and 4 beyond."""

import random
import re
from pathlib import Path

import pytest

from ncl import tasks
from ncl.tasks import compose, phrasing
from ncl.tasks.base import held_out
from ncl.tasks.synonyms import SYNONYMS
from ncl.training.data import encode, tokenizer
from _script_support import load_script

MIX = tasks.get("mix")
SINGLE = tasks.MixTask(MIX.tasks, composed=False)  # the single-call prompts alone, for the wording tests


def _skeleton(prompt: str) -> str:
    """The wording of a prompt: each run of numbers (a list, an edge list) blanked to one ``#``."""
    return re.sub(r"\d+(?:[ ,]+\d+)*", "#", prompt)


def _skeletons(task: str, held_out: bool) -> set[str]:
    rng = random.Random(0)
    out = set()
    for template in phrasing.templates(task, held_out):
        e = tasks.get(task).sample("train", rng)
        out.add(_skeleton(phrasing.phrase(task, e, template).prompt))
    return out


@pytest.fixture(scope="module")
def train_prompts():
    return [e.prompt for e in SINGLE.generate("train", 10_000, seed=0)]


def test_every_task_has_trained_and_held_out_templates():
    assert set(phrasing.TEMPLATES) == set(tasks.names())
    for name, ts in phrasing.TEMPLATES.items():
        assert len(phrasing.templates(name)) >= 6 and len(phrasing.templates(name, held_out=True)) >= 2
        assert len(set(ts)) == len(ts)
        assert not any(c.isdigit() for t in ts for c in t)  # the text holds no digit of its own
    with pytest.raises(ValueError, match="no phrasings"):
        phrasing.templates("nope")


@pytest.mark.parametrize("name", tasks.names())
def test_templates_keep_the_numbers_in_order_and_end_each(name):
    """The tape holds the prompt's numbers in order, which must be the program's (Example.numbers), and each
    number ends at a non-digit character."""
    rng = random.Random(1)
    for split in ("train", tasks.get(name).eval_splits[-1]):
        for template in phrasing.TEMPLATES[name]:
            e = tasks.get(name).sample(split, rng)
            p = phrasing.phrase(name, e, template)
            assert (p.answer, p.program, p.numbers, p.size) == (e.answer, e.program, e.numbers, e.size)
            assert tuple(int(x) for x in re.findall(r"\d+", p.prompt)) == e.numbers
            assert all(m.end() < len(p.prompt) for m in re.finditer(r"\d+", p.prompt))


def test_training_never_meets_an_evaluation_prompt():
    """The single-call and the composed parts included: one part's training prompt can read exactly like another
    part's held-out one (a composed ``Sort 50 7 with merge sort.``), which the mix's own hash partition rules out."""
    train = {e.prompt for e in MIX.generate("train", 10_000, seed=0)}
    for split in MIX.eval_splits:
        assert not train & {e.prompt for e in MIX.generate(split, 500, seed=1234)}, split


def test_training_never_uses_the_held_out_wording(train_prompts):
    held = set().union(*(_skeletons(name, True) for name in tasks.names()))
    trained = set().union(*(_skeletons(name, False) for name in tasks.names()))
    assert not held & trained
    unperturbed = tasks.MixTask(MIX.tasks, 0.0, composed=False)
    plain = {_skeleton(e.prompt) for e in unperturbed.generate("train", 10_000, seed=0)}
    assert plain == trained  # unperturbed: every trained wording drawn, and nothing else
    seen = {_skeleton(p) for p in train_prompts}
    assert not seen & held
    # perturbed wording (phrasing.perturb) holds trained words and consonant fillers, never a held-out word
    words = (lambda skeletons: {w for s in skeletons for w in s.split()})
    fillers = words(seen) - words(trained)
    assert fillers and all(set(w) <= set(phrasing.FILLER_LETTERS) for w in fillers)
    assert not fillers & words(held)
    assert len(seen) > 5 * len(trained)
    paraphrase = {_skeleton(e.prompt) for e in SINGLE.generate("paraphrase", 500, seed=1234)}
    assert paraphrase <= held


def test_perturbed_wording_keeps_the_numbers():
    """perturb deletes words, inserts fillers and (optionally) swaps synonyms, but keeps every slot, in order, each
    number still ended."""
    rng = random.Random(3)
    for name in tasks.names():
        for template in phrasing.templates(name):
            for _ in range(20):
                noisy = phrasing.perturb(template, rng, rate=0.5, synonyms=0.5)
                assert re.findall(r"{\w+}", noisy) == re.findall(r"{\w+}", template)
                p = phrasing.phrase(name, tasks.get(name).sample("train", rng), noisy)
                assert tuple(int(x) for x in re.findall(r"\d+", p.prompt)) == p.numbers
    assert phrasing.perturb("What is {a} plus {b}?", rng, rate=0.0) == "What is {a} plus {b}?"
    # with synonyms (off by default): the table's synonyms of the template's own words, capitalised as they were
    swapped = {phrasing.perturb("Reverse {list}.", rng, rate=0.0, synonyms=1.0) for _ in range(50)}
    assert swapped <= {s[:1].upper() + s[1:] + " {list}." for s in SYNONYMS["reverse"]} and len(swapped) > 3
    assert phrasing.perturb("Merge-sort these: {list}.", rng, rate=0.0, synonyms=1.0).startswith("Merge-sort ")
    assert tasks.MixTask(MIX.tasks, noise=0.0).generate("train", 50, seed=0)[0].prompt.startswith(
        tuple(t.split("{")[0] for n in tasks.names() for t in phrasing.templates(n)))


def test_splits_hold_500_distinct_prompts_of_every_task():
    assert {"train", "test", "paraphrase", "long_add/ood_8x", "merge_sort/ood_8x", "reachable/ood_4x"} <= \
        set(MIX.splits)
    for split in ("test", "paraphrase", "long_mul/ood_8x", "shortest_path/ood_4x"):
        ex = MIX.generate(split, 500, seed=1234)
        assert len({e.prompt for e in ex}) == 500
    programs = {e.program for e in SINGLE.generate("test", 500, seed=1234)}
    assert programs == {tasks.get(n).program for n in tasks.names()}  # every task, in equal shares
    every12th = MIX.generate("test", 600, seed=1234)[11::12]  # the parts in turn: the composed one is last
    assert all(e.program in compose.APPLY and len(e.calls) in (1, 2) for e in every12th)
    assert sum(len(e.calls) == 2 for e in every12th) >= 15
    assert MIX.size_range("long_add/ood_4x") == (20, 20) and MIX.size_range("compose_4") == (4, 4)
    assert MIX.max_segment("train") == max([tasks.get(n).max_segment("train") for n in tasks.names()]
                                           + [compose.ComposeTask.call_tape])
    assert MIX.n == max(tasks.get(n).n for n in tasks.names())
    assert {len(e.calls) for e in MIX.generate("compose_3", 50, seed=1)} == {3}
    assert [MIX.split_axis(s) for s in ("compose_4", "compose/test", "sort/ood_2x", "test")] == \
        ["calls", "calls", "length", "task"]
    with pytest.raises(ValueError, match="unknown split"):
        MIX.generate("long_add/ood_16x", 5)
    assert "mix" in tasks.all_names() and "mix" not in tasks.names()


def test_the_digit_tape_labels_find_the_numbers_in_a_sentence():
    e = phrasing.phrase("long_add", tasks.Example("add 407 98 =", "505", "long_add", (407, 98), 3),
                        "What is {a} plus {b}?")
    tok = tokenizer()
    b = encode([e], tok, None)
    toks = [tok.id_to_token(int(t)) for t in b["input_ids"][0]]
    written = "".join(t for t, g in zip(toks, b["gate"][0].tolist()) if g == 1)
    assert written == "407 98?"  # every digit, and the character that ends each number


# --- composed problems (ncl.tasks.compose) ------------------------------------------------------------------


def _on_the_vm(e):
    """The calls of ``e`` run one by one on the discrete VM, each result read back as a later call's argument
    (the tool-use executor): the last result's text. Also checked: no intermediate result is negative."""
    from ncl.training.tooluse import run_call, run_calls

    segments = [o if isinstance(o, tuple) else (o,) for o in e.operands]
    for c in e.calls:
        out = run_call(f"{c.program}({', '.join(str(x) for a in c.args for x in segments[a])})")
        assert out is not None and "-" not in out
        segments.append(tuple(int(x) for x in out.split()))
    assert run_calls(e.call) == out  # the tool-use text of the same calls
    return out


@pytest.mark.parametrize("split", list(compose.CALLS))
def test_composed_calls_on_the_vm_give_the_answer(split):
    problems = compose.generate(split, 60, seed=5)
    low, high = compose.CALLS[split]
    assert {e.size for e in problems} == set(range(low, high + 1))
    for e in problems:
        assert len(e.calls) == e.size and _on_the_vm(e) == e.answer
        assert compose.answer_text(compose.values(e)[-1]) == e.answer
        # the prompt's numbers are the operands, in order, each ended by a non-digit character
        assert tuple(int(x) for x in re.findall(r"\d+", e.prompt)) == e.numbers
        assert not e.prompt[-1].isdigit()
        # every call reads a prompt operand or an earlier call's result
        P = len(e.operands)
        assert all(a < P + i for i, c in enumerate(e.calls) for a in c.args)


def test_composed_splits_are_disjoint_and_distinct():
    train = {e.prompt for e in compose.generate("train", 10_000, seed=0)}
    for split in ("test", "paraphrase", "compose_3", "compose_4"):
        prompts = {e.prompt for e in compose.generate(split, 500, seed=1234)}
        assert len(prompts) == 500 and not prompts & train, split
    held = {w.split("{steps}")[0] for w in compose.WRAPPERS[1]}
    assert all(any(e.prompt.startswith(h) for h in held) for e in compose.generate("paraphrase", 100, seed=1))
    # training perturbs its wrappers (phrasing.perturb): consonant fillers, never a word of a held-out wrapper
    words = (lambda texts: {w.strip(".,;:?").lower() for t in texts for w in t.split()})
    phrases = [p for table in (compose.FIRST, compose.THEN_LEFT, compose.THEN_RIGHT, compose.THEN_UNARY)
               for ps in table.values() for p in ps]
    held_words = words(compose.WRAPPERS[1]) - words(compose.WRAPPERS[0]) - words(phrases)
    assert held_words  # "could", "job", ...
    train_words = words(train)
    assert not held_words & train_words
    assert any(w and set(w) <= set(phrasing.FILLER_LETTERS) for w in train_words)
    e = compose.make(random.Random(3), 2, compose.WRAPPERS[0])
    assert e.call.count(";") == 1 and "#1" in e.call
    with pytest.raises(ValueError, match="unknown split"):
        compose.generate("compose_9")


@pytest.mark.parametrize("split", ["train", "test", "paraphrase", "shortest_path/ood_2x", "sort/ood_2x",
                                   "long_compare/ood_2x", "palindrome/ood_2x", "compose_3"])
def test_every_mix_prompt_is_a_chain_whose_gold_calls_give_the_answer(split):
    """A single-task prompt is a chain of one call on every operand, in order (mix.operand_groups: a list or an
    edge list is one operand); run on the VM, the gold calls give the answer; the chain's labels encode (three
    slots: a graph question's s, t and edges)."""
    from ncl.tasks import mix
    from ncl.training.tooluse import run_calls

    problems = MIX.generate(split, 48, seed=7)
    for e in problems:
        assert isinstance(e, compose.Composed) and e.spans and len(e.calls) >= 1
        assert (_on_the_vm(e) if len(e.calls) > 1 else run_calls(e.call)) == e.answer
        flat = tuple(x for o in e.operands for x in (o if isinstance(o, tuple) else (o,)))
        assert flat == e.numbers
        assert all(len(c.args) <= mix.SLOTS for c in e.calls)
    names = sorted({c.program for e in problems for c in e.calls})
    b = encode(problems, tokenizer(), names, calls=MIX.calls, slots=MIX.slots)
    assert b["call_args"].shape == (48, MIX.calls, mix.SLOTS)
    assert (b["step_end"] == 1).sum(1).tolist() == [len(e.calls) for e in problems]
    assert mix.operand_groups("from 2 to 5 in 1 2, 2 5, 0 1?") == [(2,), (5,), (1, 2, 2, 5, 0, 1)]
    assert mix.operand_groups("sort 5 3 9, then add 7.") == [(5, 3, 9), (7,)]


def test_chatter_ends_some_composed_training_prompts_in_filler_words():
    """``compose.chatter`` puts a clause of filler words (never English) after a problem's last step, joined by
    ``, and`` or ``,`` (so that ``, and`` is no step end by itself), and keeps its calls, operands and step
    spans; ``mix`` trains a quarter of its composed problems so, after the hash partition, and no evaluation
    prompt; ``mix_nested`` (its runs predate it) none."""
    from ncl.tasks import mix

    rng = random.Random(5)
    for _ in range(50):
        e = compose.make(rng, rng.randint(1, 2), compose.WRAPPERS[0])
        c = compose.chatter(e, rng)
        at = max(end for _, end in e.spans)
        clause = c.prompt[at:len(c.prompt) - len(e.prompt) + at]
        assert c.prompt[:at] == e.prompt[:at] and c.prompt.endswith(e.prompt[at:])
        assert clause.startswith(compose.CHATTER_JOIN) and "then" not in clause
        words = clause.removeprefix(", and ").removeprefix(", ").split(" ")
        assert 1 <= len(words) <= 3 and all(set(w) <= set(phrasing.FILLER_LETTERS) for w in words)
        assert (c.calls, c.operands, c.spans, c.answer, c.numbers) == (e.calls, e.operands, e.spans, e.answer,
                                                                          e.numbers)

    def chattered(task, split, count=3000):
        out = 0
        for e in task.generate(split, count, seed=3):
            tail = e.prompt[max(end for _, end in e.spans):]
            out += tail.startswith(", ") and not tail.startswith(", and report")  # (a held-out wrapper)
        return out / count

    assert MIX.chatter == mix.CHATTER == 0.25 and tasks.get("mix_nested").chatter == 0
    share = mix.COMPOSE_SHARE * mix.CHATTER
    assert share / 2 < chattered(MIX, "train") < share * 1.5
    assert chattered(tasks.MixTask(MIX.tasks, chatter=0.0), "train") == 0
    # drawn with the same generator, a problem with the clause is one without it that the partition put on the
    # training side: the clause comes after the partition, so it never moves a problem from one side to the other
    plain, always, changed = tasks.MixTask(MIX.tasks, chatter=0.0), tasks.MixTask(MIX.tasks, chatter=1.0), 0
    for i in range(300):
        e0, e1 = plain.sample("train", random.Random(i)), always.sample("train", random.Random(i))
        if e1.prompt != e0.prompt:
            changed += 1
            at = max(end for _, end in e0.spans)
            assert e1.prompt[:at] == e0.prompt[:at] and e1.calls == e0.calls and not held_out(mix.NAME, e0.prompt)
    assert 50 < changed < 130  # the composed share, 30 %
    for split in ("test", "paraphrase", "compose_3", "compose_4"):
        assert chattered(MIX, split, 500) == 0, split
    with pytest.raises(ValueError, match="chatter"):
        tasks.MixTask(MIX.tasks, chatter=1.5)


def test_run_calls_refuses_what_cannot_run():
    from ncl.training.tooluse import run_calls

    assert run_calls("list_sort(5, 3, 9); list_reverse(#1)") == "9 5 3 "
    assert run_calls("long_sub(3, 9)") == "-6"  # a sign may end the chain...
    assert run_calls("long_sub(3, 9); long_add(#1, 2)") is None  # ...but feeds no later call
    assert run_calls("long_add(#1, 2)") is None and run_calls("long_add(1, 2); long_add(#2, 1)") is None
    assert run_calls("long_add(1, 2); nope(#1)") is None


def test_the_synonym_table_is_keyed_by_trained_words_only():
    """``scripts/make_synonyms.py`` keys the WordNet table by the words of the trained wording alone, so a
    held-out template's word reaches training only as a synonym of a trained one; regenerated from WordNet
    (where Debian's ``wordnet-base`` is installed) it equals the committed table, and the committed file is the
    script's rendering of it."""
    script = load_script("scripts/make_synonyms.py")
    trained = script.trained_words()
    assert "plus" in trained and "the" not in trained and "altogether" not in trained
    assert set(SYNONYMS) <= set(trained) and len(SYNONYMS) > 30
    assert all(re.fullmatch(r"[a-z]+( [a-z]+){0,2}", s) and s != w for w, ss in SYNONYMS.items() for s in ss)
    assert "turn" in SYNONYMS["reverse"] and "add together" in SYNONYMS["total"]
    assert script.render(SYNONYMS) == script.OUT.read_text()  # the file, licence notice included, as written
    wordnet = Path("/usr/share/wordnet")
    if (wordnet / "index.noun").exists():
        assert script.synonyms(wordnet, trained) == SYNONYMS
