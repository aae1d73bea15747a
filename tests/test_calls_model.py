"""The chain of calls inside the model (ComputerConfig.calls): the compose task, its labels, and the heads they
train."""

import json
import random
from dataclasses import replace

import pytest
import torch

from ncl import tasks
from ncl.computer import ComputerConfig
from ncl.computer import word_encoder
from ncl.computer.call_heads import NGRAM, CallHeads, LocalWords, collapse_numbers, list_separators
from ncl.training import TrainConfig
from ncl.training.config import default_computer
from ncl.training.data import encode, tokenizer
from ncl.training.factory import build_model
from ncl.training.losses import aux_loss
from ncl.tasks.base import Example
from ncl.tasks.mix import single_call


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(TrainConfig(task="compose", layers=2))


def test_the_compose_task_builds_a_chain_model(model):
    cfg = model.computer.config
    assert cfg.calls == tasks.COMPOSE.calls == 4
    assert cfg.machine.n == 256 and cfg.machine.cells >= tasks.COMPOSE.call_tape


def test_chain_labels_name_the_gold_calls_and_operand_ends(model):
    tok = tokenizer()
    problems = tasks.COMPOSE.generate("compose_3", count=4, seed=1)
    names = model.computer.program_names
    b = encode(problems, tok, names, calls=4)
    O = 5  # operands a 4-call chain has room for
    for i, e in enumerate(problems):
        assert b["call_program"][i, :3].tolist() == [names.index(c.program) for c in e.calls]
        assert b["call_program"][i, 3] == -100 and b["call_halt"][i].tolist() == [0, 0, 1, -100]
        for k, c in enumerate(e.calls):
            want = [1 + s if s < len(e.operands) else 1 + O + s - len(e.operands) for s in c.args]
            assert b["call_args"][i, k].tolist() == (want + [0])[:2]
        # an operand ends at the token right after its last number
        ids = b["input_ids"][i].tolist()
        marked = (b["operand_end"][i] == 1).nonzero().squeeze(1).tolist()
        assert len(marked) == len(e.operands)
        for m, op in zip(marked, e.operands):
            before = "".join(tok.id_to_token(t) for t in ids[:m] if t != tok.pad_token_id)
            assert before.endswith(str(op[-1] if isinstance(op, tuple) else op)), (before, op)
            assert not tok.id_to_token(ids[m]).isdigit()
        # where each call reads: the first token after its step phrase, a step end
        text = lambda a, b: "".join(tok.id_to_token(t) for t in ids[a:b] if t != tok.pad_token_id)
        focus = b["call_focus"][i].tolist()
        assert focus[3] == -100 and int((b["step_end"][i] == 1).sum()) == len(e.calls)
        for k, (first, end) in enumerate(e.spans):
            assert text(0, focus[k] + 1).removeprefix("<bos>") == e.prompt[:end + 1]
            assert b["step_end"][i, focus[k]] == 1


@pytest.mark.parametrize("read, reach", [("focus", 2), ("text", 2), ("text", 8)])
def test_every_chain_head_learns_from_the_labels(read, reach):
    """Every head of the chain gets a gradient from the labels (with ``step_reach`` 8, the step-end gate's view
    of the tokens from the third ahead on too). With every token a step's end, a step holds one token, which the
    open write gates put on the tape: a step of ``read="text"`` then has no words, so its word pooling and count
    embedding are checked in the test below, on the heads alone."""
    torch.manual_seed(0)
    computer = replace(default_computer(), call_read=read, step_reach=reach)
    model = build_model(TrainConfig(task="compose", layers=2, computer=computer))
    assert hasattr(model.computer.call_heads, "step_further") == (reach > 2)
    with torch.no_grad():  # open the write and operand-end gates, as training makes them, so operands exist
        c = model.computer
        # (and every token a step's end, so that every call reads a token)
        for head in (c.gate_head, c.end_head, c.gate_prev_head, c.end_next_head, c.end_next2_head,
                     c.call_heads.step_end):
            head.weight.zero_()
            if head.bias is not None:
                head.bias.fill_(5.0)
    problems = tasks.COMPOSE.generate("train", count=6, seed=2)
    b = encode(problems, tokenizer(), model.computer.program_names, calls=4)
    model.zero_grad()
    out = model(b["input_ids"], b["attention_mask"], b["read_mask"], labels=b["labels"])
    chain = out["computer"].heads.prompt.chain
    assert chain is not None and chain.pi.shape[:2] == (6, 4)
    loss = aux_loss(out["computer"], b)
    assert torch.isfinite(loss)
    (out["loss"] + loss).backward()
    c = model.computer
    params = [("end_head", c.end_head.weight), ("end_next_head", c.end_next_head.weight),
              ("end_next2_head", c.end_next2_head.weight)] + \
        [(f"call_heads.{n}", p) for n, p in c.call_heads.named_parameters()
         if read == "focus" or not n.startswith(("word_", "count"))]
    for name, p in params:
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def _step_end_at_token_4(heads: CallHeads, tokens: tuple) -> None:
    """Sets the step-end gate of ``heads`` to fire at token 4 of ``tokens`` only (the bias on one token's
    embedding), in place."""
    with torch.no_grad():
        for lin in (heads.step_end, heads.step_next, heads.step_next2):
            lin.weight.zero_()
        heads.step_end.bias.fill_(-5.0)
        tokens[0][:, :, 0] = 0.0
        tokens[0][:, 4, 0] = 1.0
        heads.step_end.weight[0, 0] = 10.0


def test_text_reading_call_heads_pool_each_steps_words():
    """``read="text"``: call k reads the words between call k-1's focus and its own (not the operands' end
    tokens) and the count of operands ending there; the last step ends at the last token (the answer cue)
    whatever the gate says; every parameter gets a gradient; a call halts when no step ends after its focus."""
    torch.manual_seed(0)
    heads = CallHeads(16, 5, 3, "text")
    h = torch.randn(2, 12, 16, requires_grad=True)
    tokens = tuple(torch.randn(2, 12, 16) for _ in range(3))
    _step_end_at_token_4(heads, tokens)
    mask, ends = torch.ones(2, 12), torch.zeros(2, 12)
    ends[:, [2, 7]] = 1  # an operand ends in each step
    pi, ptr, halt, step_logit, nest_logit, join_logit, window = heads(h, mask, ends, 3, 3, 1 - ends, tokens)
    assert nest_logit is None and join_logit is None and window is None  # without nesting
    assert (step_logit[:, 4] > 0).all() and (step_logit[:, [3, 5, 11]] < 0).all()
    assert (halt[:, 0] < 0).all() and (halt[:, 1] > 0).all()  # call 2 reads up to the last token and halts
    (pi[:, :2].sum() + ptr[:, :2][torch.isfinite(ptr[:, :2])].sum() + step_logit.sum()).backward()
    for name, p in heads.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert h.grad[:, [2, 7]].abs().sum() == 0 and (h.grad[:, [0, 1, 3, 4, 5, 6, 8, 11]].abs().sum((0, 2)) > 0).all()
    moved = h.detach().clone()
    moved[:, 6] += 1.0  # a word of the second step
    pi2 = heads(moved, mask, ends, 3, 3, 1 - ends, tokens)[0]
    assert torch.equal(pi2[:, 0], pi[:, 0].detach()) and not torch.allclose(pi2[:, 1], pi[:, 1])


def test_the_step_end_gate_reads_step_reach_tokens_ahead():
    """``step_reach`` R: the near step-end gate at a token reads it and the R tokens after it, no further (R = 8
    reads from the comma of ``, and then`` to the ``e`` of ``then``); R = 2 keeps the parameters a chain had
    before the option existed; R < 2, or R > 2 on heads that read the focus, is refused."""
    torch.manual_seed(0)
    B, T, d = 2, 14, 16
    h, mask, ends = torch.randn(B, T, d), torch.ones(B, T), torch.zeros(B, T)
    ends[:, 2] = 1
    tokens = tuple(torch.randn(B, T, d) for _ in range(10))
    for reach in (2, 8):
        heads = CallHeads(d, 5, 3, "text", step_reach=reach)
        step = (lambda views: heads(h, mask, ends, 3, 2, 1 - ends, views).step)
        before = step(tokens)
        for j in (reach, reach + 1):
            moved = list(tokens)
            moved[j] = moved[j] + 1.0
            assert torch.equal(step(tuple(moved)), before) == (j > reach), (reach, j)
    assert "step_further.weight" not in dict(CallHeads(d, 5, 3, "text").named_parameters())
    assert heads.step_further.weight.shape == (1, 6 * d)
    heads(h, mask, ends, 3, 2, 1 - ends, tokens).step.sum().backward()
    assert heads.step_further.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="step_reach"):
        CallHeads(d, 5, 3, "text", step_reach=1)
    with pytest.raises(ValueError, match="step_reach"):
        CallHeads(d, 5, 3, "focus", step_reach=8)
    with pytest.raises(ValueError, match="step_reach"):
        replace(default_computer(), call_read="focus", step_reach=8)
    with pytest.raises(ValueError, match="reads 8 tokens ahead"):
        heads(h, mask, ends, 3, 2, 1 - ends, tokens[:3])


def test_the_mean_pool_reads_each_steps_words_alike():
    """``program_pool="mean"`` (``word_view="pretrained"``): a call's program logits are the step's words' plain
    mean (plus the operand count) through the program head: unchanged by edits of the step's words that keep
    their mean, which move the pointers (they still pool by the queries)."""
    torch.manual_seed(0)
    heads = CallHeads(16, 5, 3, "text", program_pool="mean")
    h = torch.randn(1, 12, 16)
    mask, ends, tokens = torch.ones(1, 12), torch.zeros(1, 12), tuple(torch.randn(1, 12, 16) for _ in range(3))
    ends[:, [2, 7]] = 1
    _step_end_at_token_4(heads, tokens)
    pi, ptr = heads(h, mask, ends, 3, 2, 1 - ends, tokens)[:2]
    shifted, v = h.clone(), torch.randn(16)
    shifted[:, 5] += v  # two words of the second step, their mean kept
    shifted[:, 9] -= v
    pi2, ptr2 = heads(shifted, mask, ends, 3, 2, 1 - ends, tokens)[:2]
    torch.testing.assert_close(pi2, pi)
    finite = torch.isfinite(ptr[:, 1])
    assert not torch.allclose(ptr2[:, 1][finite], ptr[:, 1][finite])
    mean = h[0, [0, 1, 3, 4]].mean(0)  # the first step's words (token 2 ends an operand: not a word)
    want = heads.program(mean + heads.count.weight[1])
    torch.testing.assert_close(pi[0, 0], want)
    with pytest.raises(ValueError, match="program_pool"):
        CallHeads(16, 5, 3, "focus", program_pool="mean")


def test_word_dropout_leaves_words_out_of_the_mean_in_training_only():
    """``word_dropout`` (``ComputerConfig.word_dropout``): in training the mean pool leaves out a random share of
    the step's words, so two forwards differ and some step's mean is over fewer words; in evaluation it is the
    mean over every word, as without the option; the pointers never change."""
    torch.manual_seed(0)
    plain = CallHeads(16, 5, 3, "text", program_pool="mean")
    heads = CallHeads(16, 5, 3, "text", program_pool="mean", word_dropout=0.5)
    heads.load_state_dict(plain.state_dict())
    h = torch.randn(4, 12, 16)
    mask, ends, tokens = torch.ones(4, 12), torch.zeros(4, 12), tuple(torch.randn(4, 12, 16) for _ in range(3))
    ends[:, [2, 7]] = 1
    for m in (plain, heads):
        _step_end_at_token_4(m, tokens)
    want, ptr = plain(h, mask, ends, 3, 2, 1 - ends, tokens)[:2]
    heads.eval()
    torch.testing.assert_close(heads(h, mask, ends, 3, 2, 1 - ends, tokens)[0], want)
    heads.train()
    first, ptr1 = heads(h, mask, ends, 3, 2, 1 - ends, tokens)[:2]
    second = heads(h, mask, ends, 3, 2, 1 - ends, tokens)[0]
    assert not torch.allclose(first, want) and not torch.allclose(first, second)
    torch.testing.assert_close(ptr1, ptr)
    with pytest.raises(ValueError, match="word_dropout"):
        CallHeads(16, 5, 3, "text", word_dropout=0.5)  # the queries' pool has no dropout
    with pytest.raises(ValueError, match="word_dropout"):
        ComputerConfig(word_dropout=0.2)  # the collapsed view's program head pools by the queries


def test_a_lists_inner_separators_are_not_a_steps_words():
    """With ``call_separators=False`` (``ncl train``'s default with scarce labels) the space after each comma of
    an edge list, between two written tokens, is no word: a long list would outweigh the words that name the
    program. An operator between numbers and the space before ``then`` have a word beside them and stay words."""
    tok = tokenizer()
    prompt = "path 1 0 in 1 0, 0 2, 2 1, then add 3 + 4 ="
    toks = [tok.decode([i]) for i in tok.encode(prompt)]
    written = torch.tensor([[float(t.isdigit() or (i > 0 and toks[i - 1].isdigit())) for i, t in enumerate(toks)]])
    marked = list_separators(written, torch.ones_like(written))[0].nonzero().flatten().tolist()
    assert marked == [16, 21] and toks[15:17] == [",", " "] and toks[20:22] == [",", " "]
    torch.manual_seed(3)  # the model's own write gates, random: the words it pools leave out what they sandwich
    model = build_model(TrainConfig(task="mix", layers=2))
    assert model.computer.config.call_separators is True  # the default, and what older configs trained with
    with torch.no_grad():  # about half the tokens written (the untrained gate writes none)
        model.computer.gate_head.bias.zero_()
    problems = [e for e in tasks.get("mix").generate("train", 40, seed=0) if e.program == "shortest_path"][:4]
    c = model.computer.config
    b = encode(problems, tok, model.computer.program_names, calls=c.calls, slots=c.slots, cue_focus=True)
    words = {}
    for keep in (False, True):
        model.computer.config = replace(model.computer.config, call_separators=keep)
        with torch.no_grad():
            heads = model(b["input_ids"], b["attention_mask"], b["read_mask"])["computer"].heads.prompt
        mask = heads.chain.inputs.mask
        written = (torch.sigmoid(heads.gate_logit) > 0.5).to(mask.dtype) * mask
        words[keep], seps = heads.chain.inputs.words, list_separators(written, mask)
    assert seps.any()
    assert torch.equal(words[True], mask * (1 - written))
    assert torch.equal(words[False], words[True] * ~seps)


def test_collapse_numbers_keeps_each_numbers_first_digit():
    """Left padding stays left padding; a dropped digit maps to its number's first digit's column."""
    is_digit = torch.tensor([[0, 0, 0, 1, 1, 1, 0, 1, 0], [0, 0, 0, 0, 1, 0, 1, 1, 0]]).bool()
    mask = torch.tensor([[0, 1, 1, 1, 1, 1, 1, 1, 1], [1] * 9])
    keep, kept, where = collapse_numbers(is_digit, mask)
    assert keep.tolist() == [[0, 0, 1, 2, 3, 6, 7, 8], [0, 1, 2, 3, 4, 5, 6, 8]]
    assert kept.tolist() == [[0, 0] + [1] * 6, [1] * 8]
    assert where[0, 1:].tolist() == [2, 3, 4, 4, 4, 5, 6, 7] and where[1].tolist() == [0, 1, 2, 3, 4, 5, 6, 6, 7]


@pytest.mark.parametrize("view", ["collapsed", "context", "local"] + [
    pytest.param(v, marks=pytest.mark.skipif(not word_encoder.available(), reason="no encoder weights"))
    for v in ("pretrained", "hybrid")])
def test_the_words_states_see_no_number_length_when_collapsed(view):
    """``word_view="collapsed"`` (the default), ``"local"``, ``"pretrained"`` and ``"hybrid"`` (both its views):
    the states the chain's heads pool the words from are the same beside a 2-digit and a 20-digit number (the
    prompt as written, ``"context"``, is not: a 4x ``long_sub`` prompt ran ``long_compare``); the other heads
    still read the prompt as written."""
    torch.manual_seed(0)
    model = build_model(TrainConfig(task="mix", layers=2, computer=replace(default_computer(), word_view=view)))
    model.eval()
    if view == "local":  # its convolutions start as the identity: give them weights that read the neighbours
        with torch.no_grad():
            model.local_words.mix.weight.normal_(0, 0.05)
    problems = [single_call("long_sub", Example("", str(a - 72), "long_sub", (a, 72), 2), "Tell me {a} minus {b}.")
                for a in (95, 31415926535897932384)]
    c, tok = model.computer.config, tokenizer()
    b = encode(problems, tok, model.computer.program_names, calls=c.calls, slots=c.slots, cue_focus=True)
    with torch.no_grad():
        out = model(b["input_ids"], b["attention_mask"], b["read_mask"])["computer"]
    inputs = out.heads.prompt.chain.inputs
    after = len(" minus 72. =")  # the tokens after the first number, the same in both rows
    first = inputs.h.shape[1] - after
    same = torch.allclose(inputs.h[0, first:], inputs.h[1, first:], atol=1e-5)
    assert same == (view != "context")
    assert (inputs.program_h is None) == (view != "hybrid")
    if view == "hybrid":
        assert torch.allclose(inputs.program_h[0, first:], inputs.program_h[1, first:], atol=1e-5)
    # "Tell me ", before the number, reads the same in either view (causal), in the columns the rows have it in
    assert torch.allclose(inputs.h[0, first - 10:first - 2], inputs.h[1, first - 28:first - 20], atol=1e-5)


def test_local_words_read_their_neighbours_alone():
    """``word_view="local"``: a token's state changes with a token at most :data:`NGRAM` away and with no token
    further (the words read the same in any sentence), the left padding reads as nothing, and the gradient
    reaches both convolutions."""
    torch.manual_seed(0)
    d, T = 8, 20
    words = LocalWords(d)
    with torch.no_grad():
        words.mix.weight.normal_(0, 0.3)
    x = torch.randn(1, T, d, requires_grad=True)
    mask = torch.ones(1, T)
    y = words(x, mask)
    y[0, 10].sum().backward()
    reach = x.grad[0].abs().sum(-1) > 0
    assert reach.tolist() == [abs(t - 10) <= NGRAM for t in range(T)]
    assert words.grams.weight.grad.abs().sum() > 0 and words.mix.weight.grad.abs().sum() > 0
    padded = torch.cat([torch.randn(1, 3, d), x.detach()], 1)  # the same row, 3 padding columns on its left
    pad_mask = torch.cat([torch.zeros(1, 3), mask], 1)
    assert torch.allclose(words(padded, pad_mask)[:, 3:], words(x.detach(), mask), atol=1e-6)


def test_training_draws_no_held_out_problem():
    rng = random.Random(0)
    train = {tasks.COMPOSE.sample("train", rng).prompt for _ in range(2000)}
    for split in tasks.COMPOSE.eval_splits:
        assert not train & {e.prompt for e in tasks.COMPOSE.generate(split, 300, seed=1234)}, split


def test_a_chain_needs_the_digit_tape():
    with pytest.raises(ValueError, match="calls"):
        ComputerConfig(calls=2, reader="mlp")
    with pytest.raises(ValueError, match="calls"):
        replace(ComputerConfig(reader="cells"), calls=-1)


def test_ncl_trace_prints_each_call_and_draws_it(tmp_path, capsys):
    from ncl import cli

    run = str(tmp_path / "run")
    assert cli.main(["train", "--task", "compose", "--out", run, "--steps", "2", "--layers", "1", "--split", "1",
                     "--batch-size", "2", "--threads", "1", "--quiet"]) == 0
    capsys.readouterr()
    png = tmp_path / "trace.png"
    prompt = "Add 4 and 9, then multiply the result by 12."
    assert cli.main(["trace", run, prompt, "--json", "--png", str(png)]) == 0
    result = json.loads(capsys.readouterr().out)
    # asked as a user writes it: the answer cue that every prompt of the task ends with is added
    assert result["prompt"] == prompt + " =" and 1 <= len(result["calls"]) <= tasks.COMPOSE.calls
    assert cli.main(["trace", run, prompt + " =", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == result
    names = build_model(TrainConfig(task="compose", layers=1)).computer.program_names
    for c in result["calls"]:
        assert c["program"] in names and c["steps"] >= 0
        assert all(a["source"].startswith(("operand", "call")) for a in c["args"])
    assert [c["halts"] for c in result["calls"]][-1] and png.stat().st_size > 1000
    assert cli.main(["trace", run, prompt]) == 0
    assert "call 1:" in capsys.readouterr().out
    assert cli.main(["trace", run, prompt, "--json", "--decode", "contracts"]) == 0
    assert json.loads(capsys.readouterr().out)["calls"][0]["program"] in names
    assert cli.main(["trace", str(tmp_path / "none"), prompt]) == 2
