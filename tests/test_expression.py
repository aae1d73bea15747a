"""Arithmetic expressions as composed problems (ncl.tasks.expression, a part of ``mix_nested``): Python's own
reading of the expression gives the gold answer (so the brackets and the calls' order follow precedence), the
steps and their order, the calls' operands, the splits' disjointness and the labels the heads learn from."""

import ast
import random
import re

import pytest

from ncl import tasks
from ncl.tasks import compose, expression, mix
from ncl.tasks.base import ANSWER_CUE, held_out
from ncl.training.data import encode, tokenizer
from ncl.training.tooluse import run_calls

MIX_NESTED = tasks.get("mix_nested")
SYMBOLS = {word: symbol for symbol, word in expression.OPERATORS.values()}
PROGRAMS = {ast.Add: "long_add", ast.Sub: "long_sub", ast.Mult: "long_mul"}


def _expression(e) -> str:
    """The arithmetic in ``e``'s prompt (an evaluation split's: its wrapper as written), operators as symbols."""
    body = e.prompt[:-len(ANSWER_CUE) - 1]
    for wrapper in expression.WRAPPERS[0] + expression.WRAPPERS[1]:
        before, after = wrapper.split("{expr}")
        if body.startswith(before.capitalize()) and body.endswith(after):
            text = body[len(before):len(body) - len(after)]
            return re.sub(r"[a-z]+", lambda m: SYMBOLS[m.group()], text)
    raise AssertionError(f"no wrapper fits {e.prompt!r}")


@pytest.mark.parametrize("split", ["expression/test", "expression/paraphrase", "expression_3", "expression_4"])
def test_expressions_mean_what_python_reads_and_their_calls_give_it(split):
    problems = MIX_NESTED.generate(split, 80, seed=5)
    low, high = MIX_NESTED.size_range(split)
    assert {e.size for e in problems} == set(range(low, high + 1))
    assert {e.nested for e in problems} == {True, False}  # both shapes
    for e in problems:
        text = _expression(e)
        assert set(text) <= set("0123456789 +-*()"), e.prompt
        assert eval(text) == int(e.answer), e.prompt  # precedence and brackets as Python reads them
        assert _calls_as_python_parses(text) == [c.program for c in e.calls], e.prompt
        assert run_calls(e.call) == e.answer == compose.answer_text(compose.values(e)[-1])
        assert all(v >= 0 for v in compose.values(e))
        assert mix.operand_groups(e.prompt) == [(o,) for o in e.operands]
        assert len(e.calls) == len(e.spans) == e.size
        starts = [first for first, _ in e.spans]  # in execution order: backwards when nested
        assert starts == sorted(starts, reverse=e.nested)
        P = len(e.operands)
        for k, c in enumerate(e.calls[1:], 1):  # the previous result: the right operand when read backwards
            assert c.args[e.nested] == P + k - 1
            step = e.prompt[slice(*e.spans[k])]
            own = int(re.search(r"\d+", step).group())  # its other operand stands in its own step
            assert e.operands[c.args[1 - e.nested]] == own


def _calls_as_python_parses(text: str) -> list[str]:
    """The programs of ``text``'s operations in the order Python applies them, for a chain: each operation's one
    compound operand is the one applied before it."""
    node, programs = ast.parse(text, mode="eval").body, []
    while isinstance(node, ast.BinOp):
        programs.append(PROGRAMS[type(node.op)])
        node = node.left if isinstance(node.left, ast.BinOp) else node.right
    return programs[::-1]


def test_an_expression_is_bracketed_only_where_precedence_needs_it():
    seen = set()
    for seed in range(400):
        calls = 2 + seed % 3
        e = expression.make(random.Random(seed), calls)
        text = _expression(e)
        assert _calls_as_python_parses(text) == [c.program for c in e.calls] and len(e.calls) == calls
        seen.add((re.sub(r"\d+", "n", text), e.nested))
        if "(" in text:  # the outermost brackets matter: without them Python reads another tree
            at = text.index("(")
            depth = [text[:i + 1].count("(") - text[:i + 1].count(")") for i in range(len(text))]
            close = next(i for i in range(at, len(text)) if depth[i] == 0)
            bare = text[:at] + text[at + 1:close] + text[close + 1:]
            assert ast.dump(ast.parse(bare)) != ast.dump(ast.parse(text)), text
    assert ("n + n * n", True) in seen and ("n * n + n", False) in seen
    assert ("(n + n) * n", False) in seen and ("n - (n + n)", True) in seen
    assert ("n + (n + n)", True) in seen and ("n + n + n", False) in seen
    with pytest.raises(ValueError, match="at least 2 calls"):
        expression.make(random.Random(0), 1)


def test_expression_splits_are_disjoint_from_training_and_share_it_with_nested_wording():
    examples = MIX_NESTED.generate("train", 6000, seed=0)
    exprs = [e for e in examples if _has_operator(e.prompt)]
    share = mix.COMPOSE_SHARE * mix.NESTED_SHARE / 2
    assert abs(len(exprs) / len(examples) - share) < 0.02
    train = {e.prompt for e in examples}
    for split in ("expression/test", "expression/paraphrase", "expression_3", "expression_4", "paraphrase"):
        prompts = {e.prompt for e in MIX_NESTED.generate(split, 300, seed=77)}
        assert len(prompts) == 300 and not prompts & train, split
    held = {w.split("{expr}")[0] for w in expression.WRAPPERS[1]}
    assert not any(e.prompt.startswith(tuple(h for h in held if h)) for e in exprs)


def _outer(e) -> tuple[int, int] | None:
    """Where the brackets of :func:`expression.bracketed` stand in ``e``'s prompt, if its whole expression is in
    one pair (a made expression never is: a left-deep one's bracket closes before its last step)."""
    first, last = min(s for s, _ in e.spans), max(t for _, t in e.spans)
    text = e.prompt[first:last]
    depth = [text[:i + 1].count("(") - text[:i + 1].count(")") for i in range(len(text))]
    return (first, last - 1) if text[0] == "(" and 0 not in depth[:-1] else None


def test_training_brackets_change_nothing_and_the_plain_problem_stays_on_the_training_side():
    rng = random.Random(2)
    for _ in range(200):
        e = expression.make(rng, rng.randint(2, 4))
        b = expression.bracketed(e)
        assert _outer(e) is None and _outer(b) is not None
        first, last = _outer(b)
        assert b.prompt[:first] + b.prompt[first + 1:last] + b.prompt[last + 1:] == e.prompt
        assert eval(_expression(b)) == eval(_expression(e)) == int(b.answer)
        assert (b.calls, b.operands, b.answer, b.nested) == (e.calls, e.operands, e.answer, e.nested)
        assert [b.prompt[s:t].strip("()") for s, t in b.spans] == [e.prompt[s:t].strip("()") for s, t in e.spans]
    exprs = [e for e in MIX_NESTED.generate("train", 6000, seed=1) if _has_operator(e.prompt)]
    outer = [e for e in exprs if _outer(e) is not None]
    assert abs(len(outer) / len(exprs) - expression.OUTER) < 0.05
    held = {e.prompt for split in ("expression/test", "test") for e in MIX_NESTED.generate(split, 300, seed=78)}
    for e in outer:  # the problem as written without them is a training prompt too
        first, last = _outer(e)
        plain = e.prompt[:first] + e.prompt[first + 1:last] + e.prompt[last + 1:]
        assert plain not in held and not held_out(mix.NAME, plain), e.prompt


def _has_operator(prompt: str) -> bool:
    """Whether ``prompt`` holds two operators between numbers, as a two-call expression does (and no other
    training prompt: a single call has one)."""
    op = r"\)* ([-+*]|plus|minus|times) \(*"
    return re.search(rf"\d{op}\d+{op}\d", prompt) is not None


def test_labels_read_a_right_deep_expression_from_its_last_step():
    rng = random.Random(11)
    e = next(x for x in iter(lambda: expression.make(rng, 3), None) if x.nested)
    f = next(x for x in iter(lambda: expression.make(rng, 3), None) if not x.nested)
    tok = tokenizer()
    b = encode([e, f], tok, sorted(expression.OPERATORS), calls=4, slots=3, cue_focus=True)
    cue = int(b["read_mask"][0].nonzero()[0]) - 1
    back, forward = b["call_focus"].tolist()
    assert back[0] == cue and back[2] < back[1] < back[0] and back[3] == -100
    assert forward[2] == int(b["read_mask"][1].nonzero()[0]) - 1 and forward[0] < forward[1] < forward[2]
    assert (b["step_nest"][0] == 1).nonzero().squeeze(1).tolist() == sorted(back[1:3])
    assert (b["step_nest"][1] == 0).nonzero().squeeze(1).tolist() == forward[:2]
    ids = b["input_ids"][0].tolist()
    for t in back[1:3]:  # a right-deep step ends at the space after its operator
        assert tok.id_to_token(ids[t]) == " " and tok.id_to_token(ids[t - 1]) in "+-*s"
