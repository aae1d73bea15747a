"""Nested wording of composed problems (ncl.tasks.nested, the task ``mix_nested``) and the chain heads that read
its steps last first (ComputerConfig.nesting): the gold calls give the answer on the VM, the phrases stand in
the text outermost first, the splits are disjoint from training, the labels mark the nested step ends, and the
heads run call 1 on the last step."""

import random

import pytest
import torch

from ncl import tasks
from ncl.computer.call_heads import STEP_WINDOW, CallHeads
from ncl.tasks import compose, mix, nested
from ncl.training import TrainConfig
from ncl.training.data import encode, tokenizer
from ncl.training.factory import build_model
from ncl.training.losses import aux_loss
from ncl.training.tooluse import run_calls

MIX_NESTED = tasks.get("mix_nested")


@pytest.mark.parametrize("split", ["nested/test", "nested_3", "nested_4"])
def test_nested_calls_give_the_answer_and_their_phrases_stand_outermost_first(split):
    problems = MIX_NESTED.generate(split, 60, seed=3)
    low, high = MIX_NESTED.size_range(split)
    assert {e.size for e in problems} == set(range(low, high + 1))
    for e in problems:
        assert e.nested and len(e.calls) == e.size
        assert run_calls(e.call) == e.answer == compose.answer_text(compose.values(e)[-1])
        assert mix.operand_groups(e.prompt) == [o if isinstance(o, tuple) else (o,) for o in e.operands]
        # call 1's phrase is the text's last; each phrase ends where the next one begins with "the"
        starts = [first for first, _ in e.spans]
        assert starts == sorted(starts, reverse=True)
        for k in range(1, e.size):
            assert e.prompt[e.spans[k][1]:e.spans[k - 1][0]] == " "
            assert e.prompt[e.spans[k - 1][0]:].startswith("the ")
        # every later call takes the previous result
        P = len(e.operands)
        assert all(P + k - 1 in c.args for k, c in enumerate(e.calls) if k)


def test_nested_splits_are_disjoint_from_training_and_the_option_leaves_mix_alone():
    examples = MIX_NESTED.generate("train", 10_000, seed=0)
    worded = sum(e.nested and "the " in e.prompt for e in examples) / len(examples)  # not a bare expression
    assert abs(worded - mix.COMPOSE_SHARE * mix.NESTED_SHARE / 2) < 0.02  # half of the nested share
    train = {e.prompt for e in examples}
    for split in ("test", "nested/test", "nested/paraphrase", "nested_3", "nested_4", "compose/test"):
        prompts = {e.prompt for e in MIX_NESTED.generate(split, 300, seed=1234)}
        assert len(prompts) == 300 and not prompts & train, split
    held = [w.split("{steps}")[0] for w in nested.VERB_WRAPPERS[1] + nested.NOUN_WRAPPERS[1]]
    assert all(any(e.prompt.startswith(h) for h in held) for e in MIX_NESTED.generate("nested/paraphrase", 50))
    assert not any(e.nested and e.prompt.startswith(tuple(held)) for e in examples)  # never trained on
    assert not any(s.startswith("nested") for s in tasks.get("mix").splits)
    assert MIX_NESTED.name == "mix_nested" and tasks.get("mix").name == "mix"
    with pytest.raises(ValueError, match="at least 2 calls"):
        nested.make(random.Random(0), 1)


def test_labels_put_the_cue_on_call_one_and_mark_nested_step_ends():
    e = nested.make(random.Random(4), 3)
    seq = compose.make(random.Random(4), 2, compose.WRAPPERS[0])
    tok = tokenizer()
    names = sorted({c.program for x in (e, seq) for c in x.calls})
    b = encode([e, seq], tok, names, calls=4, slots=3, cue_focus=True)
    cue = int(b["read_mask"][0].nonzero()[0]) - 1  # the last token the heads read (the "=" is read)
    focus = b["call_focus"][0].tolist()
    assert focus[0] == cue and focus[3] == -100  # call 1, the last phrase, reads up to the cue
    assert focus[2] < focus[1] < focus[0]
    assert (b["step_nest"][0] == 1).nonzero().squeeze(1).tolist() == sorted(focus[1:3])
    assert (b["step_nest"][1] >= 0).sum() == 1 and (b["step_nest"][1] == 0).sum() == 1  # ", then": not nested
    ids = b["input_ids"][0].tolist()
    for t in focus[1:3]:  # a nested step ends at the space before the next phrase's "the"
        assert "".join(tok.id_to_token(i) for i in ids[t:t + 4]) == " the"
    # the near gate's own labels: the comma of ", then", not a nested step end, nor the cue
    assert (b["step_join"][0] == 1).sum() == 0 and ((b["step_join"][0] >= 0) == (b["step_end"][0] >= 0)).all()
    comma = (b["step_join"][1] == 1).nonzero().squeeze(1).tolist()
    assert len(comma) == 1 and tok.id_to_token(b["input_ids"][1, comma[0]].item()) == ","
    assert b["step_end"][1, comma[0]] == 1 and (b["step_end"][1] == 1).sum() == 2


def _heads_with_marks(nested_marks: bool, near: tuple[int, ...] = ()):
    """Nesting heads whose window gate fires where a token's feature 0 is 1 and calls a step end nested where its
    feature 1 is: marks at tokens 3 and 7, operands ending at 2, 6 and 9, twelve tokens; the near gate fires
    where feature 2 is 1: at the tokens ``near``."""
    torch.manual_seed(0)
    d = 16
    heads = CallHeads(d, 5, 3, "text", nesting=True)
    here = -STEP_WINDOW[0] * d  # the token's own slot in the window
    with torch.no_grad():
        hidden, out = heads.step_window[0], heads.step_window[-1]
        for layer in (hidden, out, heads.step_end, heads.step_next, heads.step_next2):
            layer.weight.zero_()
        hidden.bias.zero_()  # (the near gate keeps its bias, -2: it marks nothing here)
        hidden.weight[0, here] = hidden.weight[1, here + 1] = 1.0  # GELU(1) = 0.84, GELU(0) = 0
        out.weight[0, 0] = out.weight[1, 1] = 20.0
        out.bias.fill_(-5.0)
        heads.step_end.weight[0, 2] = 20.0
    h = torch.randn(2, 12, d)
    tokens = torch.randn(2, 12, d)
    tokens[:, :, :3] = 0.0
    tokens[:, list(near), 2] = 1.0
    tokens[:, [3, 7], 0] = 1.0
    tokens[:, [3, 7], 1] = float(nested_marks)
    views = (tokens,) + tuple(torch.nn.functional.pad(tokens[:, j:], (0, 0, 0, j))
                              for j in range(1, STEP_WINDOW[1] + 1))
    ends = torch.zeros(2, 12)
    ends[:, [2, 6, 9]] = 1
    return heads, h, torch.ones(2, 12), ends, views


def test_a_step_ends_where_the_near_gate_or_the_window_says_so():
    heads, h, mask, ends, views = _heads_with_marks(False, near=(5,))
    out = heads(h, mask, ends, 3, 3, 1 - ends, views)
    assert (out.step[:, [3, 5, 7]] > 0).all() and (out.step[:, [2, 4, 6, 10]] < 0).all()
    assert (out.join[:, 5] > 0).all() and (out.join[:, [3, 7]] < 0).all()  # the near gate's own logits
    assert torch.equal(out.window, heads._window(views)[..., 0]) and (out.window[:, 5] < 0).all()
    assert torch.equal(out.step, torch.maximum(out.join, out.window))
    assert (out.halt[:, :3] < 0).all()  # four steps now: no call of three halts


def test_a_word_knows_its_place_among_its_steps_operands():
    ends = torch.zeros(3, 9, dtype=torch.bool)
    ends[0, [2, 5]] = True  # "multiply 36 by 7"-like: two operands
    ends[1, 6] = True  # "multiply it by 36": words before the operand only
    assert CallHeads._roles(ends).tolist() == [[0, 0, 0, 1, 1, 1, 2, 2, 2], [0] * 7 + [2, 2], [0] * 9]
    heads, h, mask, ends, views = _heads_with_marks(False)
    moved = ends.clone()
    moved[:, 2], moved[:, 0] = 0, 1  # the first step's operand ends at token 0: token 1 is now after it
    programs = [heads(h, mask, e, 3, 3, 1 - ends, views).program for e in (ends, moved)]  # the same words
    assert torch.equal(*programs)  # the places' embeddings start at zero
    with torch.no_grad():
        heads.word_role.weight.normal_()
    before, after = [heads(h, mask, e, 3, 3, 1 - ends, views).program for e in (ends, moved)]
    assert not torch.allclose(after[:, 0], before[:, 0]) and torch.allclose(after[:, 1:], before[:, 1:])


@pytest.mark.parametrize("nested_marks", [True, False])
def test_nesting_heads_read_the_last_step_first(nested_marks):
    heads, h, mask, ends, views = _heads_with_marks(nested_marks)
    pi, ptr, halt, step_logit, nest_logit, _, _ = heads(h, mask, ends, 3, 3, 1 - ends, views)
    assert (step_logit[:, [3, 7]] > 0).all() and (step_logit[:, [2, 4, 10]] < 0).all()
    assert ((nest_logit[:, [3, 7]] > 0) == nested_marks).all()
    # the operands offered to each call: its step's own, one each here
    offered = torch.isfinite(ptr[:, :, 0, 1:4])  # (B, K, O)
    want = [2, 1, 0] if nested_marks else [0, 1, 2]
    assert offered.sum(-1).eq(1).all() and offered.float().argmax(-1).tolist() == [want, want]
    assert (halt[:, :2] < 0).all() and (halt[:, 2] > 0).all()  # three steps: call 3 halts
    # call 1 reads the last step's words (tokens 8-11) when reading backwards, the first's (0-3) otherwise
    first = 8 if nested_marks else 0
    for t, call in ((first, 0), (5, 1)):
        moved = h.clone()
        moved[:, t] += 1.0
        pi2 = heads(moved, mask, ends, 3, 3, 1 - ends, views)[0]
        others = [k for k in range(3) if k != call]
        assert not torch.allclose(pi2[:, call], pi[:, call]) and torch.equal(pi2[:, others], pi[:, others])


def test_a_mix_nested_model_trains_every_nesting_head():
    torch.manual_seed(0)
    model = build_model(TrainConfig(task="mix_nested", layers=2))
    assert model.computer.config.nesting and model.computer.config.slots == mix.SLOTS
    problems = [nested.make(random.Random(s), 2) for s in range(3)] + \
        [compose.make(random.Random(9), 2, compose.WRAPPERS[0])]
    b = encode(problems, tokenizer(), model.computer.program_names, calls=model.computer.config.calls,
               slots=mix.SLOTS, cue_focus=True)
    out = model(b["input_ids"], b["attention_mask"], b["read_mask"], labels=b["labels"])
    loss = aux_loss(out["computer"], b)
    (out["loss"] + loss).backward()
    gate = model.computer.call_heads.step_window
    w = gate[-1].weight
    assert w.grad is not None and (w.grad.abs().sum(1) > 0).all()  # both outputs: step end and nested
    assert gate[0].weight.grad.abs().sum() > 0
    heads = model.computer.call_heads  # the near gate, labelled apart, and the words' places in their steps
    assert all(m.weight.grad.abs().sum() > 0 for m in (heads.step_end, heads.step_next, heads.step_next2))
    assert heads.word_role.weight.grad.abs().sum() > 0
    assert MIX_NESTED.split_axis("nested_3") == "calls"  # a nested split's sizes count calls
