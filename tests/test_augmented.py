"""NeuralComputer and AugmentedLlama: shapes, straight-through values, finite gradients end to end, both
program-choice modes, exactness of the machine on hard inputs, and a few steps lowering the loss on every task."""

import pytest
import torch

from ncl import tasks
from ncl.augmented import AugmentedLlama, PlainLlama
from ncl.llama import LlamaConfig
from ncl.machine import MachineConfig
from ncl.nn import ComputerConfig, Heads, NeuralComputer, straight_through, straight_through_gate
from dataclasses import replace

from ncl.library import symbols
from ncl.tasks import Example
from ncl.training import TrainConfig, aux_loss, build_model, encode, resolve_numbers, tokenizer


def _llama():
    return LlamaConfig.preset("tiny", num_hidden_layers=2)


def test_straight_through():
    soft = torch.softmax(torch.randn(3, 5), -1).requires_grad_(True)
    hard = straight_through(soft)
    assert torch.equal(hard.detach(), torch.nn.functional.one_hot(soft.argmax(-1), 5).float())
    (hard * torch.arange(5.0)).sum().backward()
    assert torch.allclose(soft.grad, torch.arange(5.0).expand(3, 5))
    p = torch.tensor([0.2, 0.7], requires_grad=True)
    g = straight_through_gate(p)
    assert g.tolist() == [0.0, 1.0]
    g.sum().backward()
    assert p.grad.tolist() == [1.0, 1.0]
    assert not straight_through(soft, grad=False).requires_grad
    assert not straight_through_gate(p, grad=False).requires_grad


@pytest.mark.parametrize("mode", ["mixture", "superposition"])
def test_gradients_finite_end_to_end(mode):
    torch.manual_seed(0)
    model = AugmentedLlama(_llama(), ComputerConfig(mode=mode, max_steps=12), split=1)
    tok = tokenizer()
    ex = tasks.get("sort").generate("train", 3)
    b = encode(ex, tok, model.computer.program_names, cells=False)  # the MLP reader: one value per number
    out = model(b["input_ids"], b["attention_mask"], b["read_mask"], labels=b["labels"])
    assert out["logits"].shape == (3, b["input_ids"].shape[1], model.llama.config.vocab_size)
    comp = out["computer"]
    assert comp.readout.shape == (3, b["input_ids"].shape[1], 64)
    # typed heads, which say which reader made the token logits (the default: one value per token)
    assert isinstance(comp.heads, Heads) and comp.heads.prompt.reader == "mlp" and comp.heads.writer == "embed"
    assert comp.heads.prompt.value_logits.shape[-1] == 128 and comp.heads.prompt.digit_logits is None
    assert comp.heads.print_r0 is None and comp.heads.digit_gate_logit is None
    assert torch.all(comp.readout[b["read_mask"] == 0] == 0)
    (out["loss"] + aux_loss(comp, b)).backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert all(torch.isfinite(g).all() for g in grads.values())
    # the heads that only reach the loss through the machine get gradient too
    assert grads["computer.value_head.2.weight"].abs().sum() > 0
    assert grads["computer.program_head.weight"].abs().sum() > 0
    assert grads["computer.embed_r0.weight"].abs().sum() > 0
    assert not any(n.startswith("computer.library") for n in grads)  # frozen by default


def test_labels_only_heads_get_no_gradient_from_the_answer():
    """answer_grad=False: the same forward values, but the answer's loss alone gives the heads that reach it only
    through hard values (the tape's write gates) no gradient, while the aux labels still train
    them; the default (True) gives them the answer's."""
    ex = tasks.get("sort").generate("train", 3)
    outs, grads = {}, {}
    for answer_grad in (True, False):
        torch.manual_seed(0)
        model = AugmentedLlama(_llama(), ComputerConfig(max_steps=12, answer_grad=answer_grad), split=1)
        b = encode(ex, tokenizer(), model.computer.program_names, cells=False)
        out = model(b["input_ids"], b["attention_mask"], b["read_mask"], labels=b["labels"])
        outs[answer_grad] = out["loss"].detach()
        out["loss"].backward(retain_graph=True)
        grads[answer_grad] = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        model.zero_grad()
        aux_loss(out["computer"], b).backward()
        assert model.computer.program_head.weight.grad.abs().sum() > 0
    assert torch.equal(outs[True], outs[False])
    name = "computer.gate_head.weight"
    assert grads[True][name].abs().sum() > 0
    assert name not in grads[False] or grads[False][name].abs().sum() == 0
    assert grads[False]["computer.embed_r0.weight"].abs().sum() > 0  # the readout still learns from the answer
    with pytest.raises(ValueError, match="aux=0, or labels=0 without discover, needs computer.answer_grad=True"):
        TrainConfig(aux=0, computer=replace(TrainConfig().computer, answer_grad=False)).validate()


def test_machine_is_exact_on_hard_inputs():
    """With the heads forced to the right program and tape, the run returns the VM's answer (sharpness 120)."""
    comp = NeuralComputer(16, ComputerConfig(max_steps=200))
    B, n, C = 2, 128, 32
    pi = torch.zeros(B, len(comp.program_names))
    pi[:, comp.program_names.index("insertion_sort")] = 1
    values = [[90, 5, 77, 3], [1, 127, 0, 9]]
    mem = torch.nn.functional.one_hot(torch.tensor([v + [0] * (C - 4) for v in values]), n).float()
    args = torch.nn.functional.one_hot(torch.tensor([[0, 4, 0]] * B), n).float()
    r0, mem_out, steps, unhalted, _ = comp.run_machine(pi, comp.initial_registers(args), mem)
    assert mem_out[:, :4].argmax(-1).tolist() == [sorted(v) for v in values]
    assert torch.all(mem_out.max(-1).values[:, :4] == 1.0)
    assert unhalted.max() < 1e-6


def test_mixture_prunes_and_mixes():
    comp = NeuralComputer(16, ComputerConfig(top_k=2, max_steps=30))
    B, n = 2, 128
    pi = torch.zeros(B, len(comp.program_names))
    pi[0, comp.program_names.index("add")] = 0.75
    pi[0, comp.program_names.index("sub")] = 0.25
    pi[1, comp.program_names.index("mul")] = 1.0
    args = torch.nn.functional.one_hot(torch.tensor([[5, 3, 0], [5, 3, 0]]), n).float()
    mem = torch.nn.functional.one_hot(torch.zeros(B, 32, dtype=torch.long), n).float()
    r0, *_ = comp.run_machine(pi, comp.initial_registers(args), mem)
    assert abs(r0[0, 8].item() - 0.75) < 1e-6 and abs(r0[0, 2].item() - 0.25) < 1e-6
    assert abs(r0[1, 15].item() - 1.0) < 1e-6


def test_plain_llama_interface():
    model = PlainLlama(_llama())
    tok = tokenizer()
    b = encode(tasks.get("long_add").generate("train", 2), tok)
    out = model(b["input_ids"], b["attention_mask"], b["read_mask"], labels=b["labels"])
    assert torch.isfinite(out["loss"])
    tokens, comp = model.generate(b["input_ids"][:, :-3], b["attention_mask"][:, :-3], 4, tok.eos_token_id)
    assert comp is None and tokens.shape[0] == 2


def test_plain_generation_with_the_cache_equals_recomputation():
    """PlainLlama.generate decodes with a KV cache; on left-padded prompts it writes the tokens that the full
    recomputation (the augmented model's decoding) writes."""
    from ncl.augmented import _greedy

    torch.manual_seed(0)
    model = PlainLlama(_llama()).eval()
    tok = tokenizer()
    ids, mask = tok.encode_batch(["sort 31 4 77 =", "sort 5 ="], add_bos=True, padding_side="left")
    cached, _ = model.generate(ids, mask, 12, tok.eos_token_id)
    full, _ = _greedy(model, ids, mask, 12, tok.eos_token_id, None)
    assert cached.shape == full.shape and torch.equal(cached, full)


@pytest.mark.parametrize("kind", ["cells", "digits", "embed"])
def test_readout_continues_from_the_carried_pointers(kind):
    """NeuralComputer.forward_incremental: the prompt and the first read position, then one position at a time
    from the run's state and the pointers the previous call returned, gives the readout (and the printed digits)
    of the whole sequence at once."""
    from ncl_kernels.testing import TOLERANCES

    torch.manual_seed(0)
    cfg = ComputerConfig(max_steps=16) if kind == "embed" else ComputerConfig(reader=kind, writer=kind, max_steps=16)
    comp = NeuralComputer(32, cfg)
    with torch.no_grad():  # gates that fire on about half the positions, so that both pointers move and reset
        for head in (comp.gate_head, comp.read_head, getattr(comp, "digit_gate_head", comp.gate_head)):
            head.bias.zero_()
            head.weight.normal_(std=1.0)
    B, T, first = 3, 24, 6
    hidden = torch.randn(B, T, 32)
    mask = torch.ones(B, T)
    mask[0, :2] = mask[1, :4] = 0  # left padding
    read = torch.zeros(B, T)
    read[:, first:] = 1
    with torch.no_grad():
        whole = comp(hidden, mask, read)
        out, pointers = comp.forward_incremental(hidden[:, :first + 1], mask[:, :first + 1], read[:, :first + 1])
        readouts, prints, places = [out.readout[:, -1]], [out.heads.print_cell], [pointers.place]
        for t in range(first + 1, T):
            out, pointers = comp.forward_incremental(hidden[:, t:t + 1], mask[:, t:t + 1], read[:, t:t + 1],
                                                     state=out.state, pointers=pointers)
            readouts.append(out.readout[:, 0])
            prints.append(out.heads.print_cell)
            places.append(pointers.place)
    rtol, atol = TOLERANCES[torch.float32]
    torch.testing.assert_close(torch.stack(readouts, 1), whole.readout[:, first:], rtol=rtol, atol=atol)
    if kind != "embed":
        torch.testing.assert_close(torch.cat([prints[0][:, -1:], *prints[1:]], 1), whole.heads.print_cell[:, first:],
                                   rtol=rtol, atol=atol)
    assert pointers.read.argmax(-1).ne(0).all()
    if kind == "digits":  # the digit pointer left the first place and came back to it
        place = torch.stack(places, 1).argmax(-1)
        assert place.ne(0).any() and place[:, 1:][place[:, :-1] != 0].eq(0).any()


def _decoding_model(kind):
    """A random tiny model whose readout weighs on its logits: ``kind`` "cells" (reader and writer, as trained
    by default) or "digits", both with digit tokens and the copy mixture, or "embed" (the computer's defaults:
    the MLP reader, no digit tokens)."""
    torch.manual_seed(0)
    if kind == "embed":
        model = AugmentedLlama(_llama(), ComputerConfig(max_steps=24), split=1)
    else:
        model = build_model(TrainConfig(task="long_add", layers=2, split=1,
                                        computer=ComputerConfig(reader=kind, writer=kind)))
        model.computer.config = replace(model.computer.config, max_steps=24)
    comp = model.computer
    with torch.no_grad():
        # gates half open (a random sign per token), so the tape holds cells and the pointers move, and readout
        # embeddings large enough that a wrong pointer changes the logits
        for head in (comp.gate_head, comp.read_head, getattr(comp, "digit_gate_head", comp.gate_head)):
            head.bias.zero_()
        comp.read_head.bias.fill_(0.5)  # leaning open: the pointer moves whichever tokens the random model writes
        for lin in (comp.embed_r0, comp.embed_cell):
            lin.weight.normal_(std=1.0)
    return model.eval()


@pytest.mark.parametrize("kind", ["cells", "digits", "embed"])
def test_augmented_generation_with_the_cache_equals_recomputation(kind):
    """generate's cached decoder (the layers against a KV cache, the readout continuing from the carried
    pointers) writes the tokens of the full recomputation on left-padded prompts of different lengths, and each
    step's logits are those of the whole answer run at once (what every recomputation step computes)."""
    from ncl.augmented import _CachedStep
    from ncl.llama.generation import greedy_decode
    from ncl_kernels.testing import TOLERANCES

    model = _decoding_model(kind)
    tok = tokenizer()
    ids, mask = tok.encode_batch(["add 31 4 77 =", "add 5 =", "add 123 45 6 ="], add_bos=True,
                                 padding_side="left")
    B, P = ids.shape
    V = model.llama.config.vocab_size
    cached, comp = model.generate(ids, mask, 12, tok.eos_token_id)
    full, comp_full = model.generate(ids, mask, 12, tok.eos_token_id, use_cache=False)
    assert cached.shape == full.shape and torch.equal(cached, full)
    rtol, atol = TOLERANCES[torch.float32]
    # the prompt's hidden states differ in the last bits (the recomputation runs the layers over more positions),
    # and a soft program mixture carries that into the expected steps
    torch.testing.assert_close(comp.steps, comp_full.steps, rtol=rtol, atol=atol)
    assert comp.readout.shape == (B, P, 64)

    # every step's logits, with an EOS that never wins so that all 16 steps run
    step, logits = _CachedStep(model, None), []
    tokens = greedy_decode(lambda *a: logits.append(step(*a)) or logits[-1], len(model.llama.model.layers), ids,
                           16, attention_mask=mask, eos_token_id=V)
    assert torch.equal(tokens[:, P:], model.generate(ids, mask, 16, V, use_cache=False)[0])
    assert step.pointers.read.argmax(-1).ne(0).any()  # the read pointer moved
    whole_mask = torch.cat([mask, torch.ones(B, 16, dtype=mask.dtype)], 1)
    read = torch.zeros_like(whole_mask)
    read[:, P - 1:] = 1
    with torch.no_grad():
        expected = model(tokens, whole_mask, read)["logits"][:, P - 1:-1]
    torch.testing.assert_close(torch.stack(logits, 1), expected, rtol=rtol, atol=atol)


def test_bad_inputs():
    comp = NeuralComputer(8)
    h = torch.randn(2, 5, 8)
    with pytest.raises(ValueError, match="read_mask"):
        comp(h, torch.ones(2, 5), torch.ones(2, 4))
    with pytest.raises(ValueError, match="mode"):
        ComputerConfig(mode="both")
    with pytest.raises(ValueError, match="cells"):  # the machine's sizes are checked against the heads' needs
        ComputerConfig(machine=MachineConfig(n=16, cells=32))
    with pytest.raises(TypeError, match="MachineConfig"):
        ComputerConfig(machine={"n": 16})


@pytest.mark.parametrize("name", tasks.names())
def test_few_steps_lower_the_loss(name):
    """A few optimizer steps on one batch lower the training loss (augmented model, tiny sizes)."""
    torch.manual_seed(0)
    cfg = TrainConfig(task=name, layers=2, split=1)
    model = build_model(cfg)
    # a short step limit keeps the test fast; the loss still reaches every head through the (cut) run
    model.computer.config = replace(model.computer.config, top_k=1, max_steps=24)
    b = encode(tasks.get(name).generate("train", 2, seed=1), tokenizer(), model.computer.program_names)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(3):
        out = model(b["input_ids"], b["attention_mask"], b["read_mask"], labels=b["labels"])
        loss = out["loss"] + aux_loss(out["computer"], b)
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    assert losses[-1] < losses[0], losses


def test_digit_reader_and_writer():
    comp = NeuralComputer(16, ComputerConfig(reader="digits", writer="digits"))
    text = "add 107 5 ="
    digits = torch.tensor([[int(c) if c.isdigit() else 10 for c in text]])
    values = comp.digit_values(torch.nn.functional.one_hot(digits, 11).float())
    ends = [i for i, c in enumerate(text) if c == " " and text[i - 1].isdigit()]
    assert values[0, ends].argmax(-1).tolist() == [107, 5]
    assert torch.all(values.max(-1).values == 1.0)  # exact on hard digits
    spell = comp.spell.view(128, -1, 11).argmax(-1)
    assert spell[107].tolist()[:4] == [1, 0, 7, 10] and spell[5].tolist()[:2] == [5, 10]
    tok = tokenizer()
    cfg = TrainConfig(task="sort", computer=ComputerConfig(reader="digits", writer="digits"), layers=2, split=1,
                      numbers="learned")
    model = build_model(cfg)
    b = encode(tasks.get("sort").generate("train", 2), tok, model.computer.program_names, cells=False)
    out = model(b["input_ids"], b["attention_mask"], b["read_mask"], labels=b["labels"])
    heads = out["computer"].heads
    assert heads.prompt.reader == "digits" and heads.prompt.value_logits is None
    assert heads.prompt.digit_logits.shape[-1] == 11
    assert heads.writer == "digits" and heads.print_cell.shape == (*b["input_ids"].shape, 11)
    (out["loss"] + aux_loss(out["computer"], b)).backward()
    assert model.computer.digit_head.weight.grad.abs().sum() > 0
    assert model.computer.print_cell.weight.grad.abs().sum() > 0


def test_numbers_from_tokens_on_the_digit_tape():
    """numbers='tokens' (the default): a token's digit comes from its id, each written token is one cell (its
    digit, or SEP), and a forced copy gate prints the digit under the readout; logits stay log-probabilities."""
    assert resolve_numbers(TrainConfig(task="long_add")) == "tokens"
    assert resolve_numbers(TrainConfig(task="long_add", numbers="auto")) == "learned"  # every digit occurs
    torch.manual_seed(0)
    tok = tokenizer()
    model = build_model(TrainConfig(task="long_add", layers=2, split=1))
    comp = model.computer
    assert comp.config.reader == comp.config.writer == "cells"
    assert [tok.id_to_token(i) for i in comp.config.digit_tokens] == list("0123456789")
    with torch.no_grad():
        comp.gate_head.bias.fill_(50.0)  # every prompt token appends its cell
        model.copy_head.weight.zero_()
        model.copy_head.bias.fill_(50.0)  # copy gate open, source r0
    e = Example("add 97 5 =", "102", "long_add", (97, 5), 2)
    b = encode([e], tok, comp.program_names, with_answer=False)
    out = model(b["input_ids"], b["attention_mask"], b["read_mask"])
    tape, *_ = comp.write_tape(comp.norm(torch.randn(1, b["input_ids"].shape[1], 64)),
                               b["attention_mask"].float(), b["input_ids"])
    cells = tape.mem.argmax(-1)[0].tolist()
    # <bos> add ' ' 9 7 ' ' 5 ' ' =: every token that is not a digit is SEP
    assert cells[:9] == [symbols.SEP] * 3 + [9, 7, symbols.SEP, 5, symbols.SEP, symbols.SEP]
    state = out["computer"].state._replace(r0=torch.nn.functional.one_hot(torch.tensor([7]), 128).float())
    out = model(b["input_ids"], b["attention_mask"], b["read_mask"], computer_state=state)
    assert torch.allclose(out["logits"].logsumexp(-1), torch.zeros(1, b["input_ids"].shape[1]), atol=1e-4)
    assert tok.id_to_token(int(out["logits"][0, -1].argmax())) == "7"
    with pytest.raises(ValueError, match="input_ids"):
        comp(torch.randn(1, 4, 64), torch.ones(1, 4), torch.tensor([[0, 0, 1, 1]]))


def test_the_copy_prints_tape_symbols_and_the_first_read_reads_cell_0():
    """With symbol_tokens (the default run's), a copied cell holding a symbol prints its token, END the
    end-of-sequence token; and the first read position reads cell 0 even where the read gate fires."""
    torch.manual_seed(0)
    tok = tokenizer()
    model = build_model(TrainConfig(task="long_compare", layers=2, split=1))
    comp = model.computer
    assert [tok.id_to_token(i) for i in comp.config.symbol_tokens] == [" ", tok.id_to_token(tok.eos_token_id),
                                                                      "-", "<", "=", ">"]
    with torch.no_grad():
        comp.read_head.bias.fill_(50.0)  # the read gate fires at every read position
        model.copy_head.weight.zero_()
        model.copy_head.bias.copy_(torch.tensor([50.0, -50.0]))  # copy gate open, source: the tape cell
    e = Example("cmp 12 12 =", "=", "long_compare", (12, 12), 2)
    b = encode([e], tok, comp.program_names)
    ids, mask, read = b["input_ids"], b["attention_mask"], b["read_mask"]
    state = model(ids, mask, read)["computer"].state
    tape = torch.full(state.mem.shape[:2], symbols.SEP)
    tape[:, :3] = torch.tensor([symbols.EQ, symbols.END, 7])
    mem = torch.nn.functional.one_hot(tape, state.mem.shape[-1]).float()
    out = model(ids, mask, read, computer_state=state._replace(mem=mem))
    first = int(read[0].nonzero()[0])
    spelled = [tok.id_to_token(int(t)) for t in out["logits"][0, first:first + 2].argmax(-1)]
    assert spelled == ["=", tok.id_to_token(tok.eos_token_id)]  # cells 0 and 1: the pointer held, then moved
    with pytest.raises(ValueError, match="symbol_tokens"):
        ComputerConfig(reader="cells", writer="digits", digit_tokens=tuple(range(10)), symbol_tokens=tuple(range(6)))


def test_digit_tape_labels():
    """encode's digit-tape labels: the gates fire on every digit and number end, the read pointer moves one cell
    per answer token, and no digit gate is asked for."""
    tok = tokenizer()
    e = Example("add 97 5 =", "102", "long_add", (97, 5), 2)
    b = encode([e], tok, ["long_add"])  # the program's index in this list of names
    P = len(tok.encode(e.prompt)) + 1
    written = [i for i, g in enumerate(b["gate"][0, :P].tolist()) if g == 1]
    toks = ["<bos>"] + [tok.id_to_token(t) for t in tok.encode(e.prompt)]
    assert "".join(toks[i] for i in written) == "97 5 "
    assert b["read_gate"][0, P - 1:P + 3].tolist() == [-100, 1, 1, 1]  # the first read holds by construction
    assert (b["digit_gate"][b["digit_gate"] >= 0] == 0).all()
    assert b["args"][0].tolist() == [0, 5] and b["program"].tolist() == [0]


@pytest.mark.parametrize("kind", ["cells", "digits"])
def test_pointer_gates_read_the_token_alone(kind):
    """AugmentedLlama's read and digit pointer gates read the token just written, not its context: the same
    answer after different prompts (other lengths, other numbers) gets the same gate logits. A gate read off
    the context drifted on answers longer than any trained on (the read pointer repeated cells)."""
    model = _decoding_model(kind)
    tok = tokenizer()
    answers = []
    for prompt in ("add 31 4 =", "add 123456 789 ="):
        e = Example(prompt, "4071 5", "long_add", (0, 0), 1)
        b = encode([e], tok, model.computer.program_names)
        with torch.no_grad():
            heads = model(b["input_ids"], b["attention_mask"], b["read_mask"])["computer"].heads
        read = b["read_mask"][0].bool()
        logits = [heads.read_logit[0, read]] + ([heads.digit_gate_logit[0, read]] if kind == "digits" else [])
        answers.append(torch.stack(logits))
    torch.testing.assert_close(answers[0], answers[1], rtol=0, atol=1e-5)
    # and the gates do tell tokens apart (here: a digit from the space), so the equality above is not trivial
    assert answers[0][0].std() > 1e-3
    with pytest.raises(ValueError, match="token_states"):
        model.computer(torch.randn(1, 4, 64), torch.ones(1, 4), torch.tensor([[0, 0, 1, 1]]),
                       token_states=torch.randn(1, 3, 64))


def test_write_gates_read_the_token_and_the_one_before():
    """With ``tape_gates="local"`` (the default) a prompt token's write gate is a function of that token and the
    one before it, wherever they stand: every digit looks alike (digit tokens), so the same pair of token kinds
    gets the same logit in a short and a long prompt. A gate read off the context drifted on prompts longer than
    any trained on (it wrote the space after a comma)."""
    model = _decoding_model("cells")
    tok = tokenizer()
    seen = {}
    for prompt in ("add 31 4 =", "Please add 123456, 789 and 5 ="):
        b = encode([Example(prompt, "0", "long_add", (0, 0), 1)], tok, model.computer.program_names)
        with torch.no_grad():
            logit = model(b["input_ids"], b["attention_mask"], b["read_mask"])["computer"].heads.prompt.gate_logit
        kinds = ["D" if t.isdigit() else t for t in ["<bos>"] + [tok.id_to_token(i) for i in tok.encode(prompt)]]
        for t in range(1, len(kinds) - 1):  # the last prompt token is the first read position, never written
            key = (kinds[t - 1], kinds[t])
            value = float(logit[0, t])  # one prompt, no padding: column t is token t
            assert abs(seen.setdefault(key, value) - value) < 1e-5, key
    assert len({round(v, 4) for v in seen.values()}) > 3  # and they tell pairs apart


def test_program_reads_the_words_alone():
    """With ``program_read="text"`` (the default) the program and argument heads pool the prompt's words: the
    hidden states of the tokens the tape holds (digits, the separator after each number) take no weight, so
    changing them changes neither, while changing a word does."""
    torch.manual_seed(0)
    model = build_model(TrainConfig(task="long_add", layers=2, split=1))
    comp = model.computer
    tok = tokenizer()
    b = encode([Example("add 31 4 =", "35", "long_add", (31, 4), 2)], tok, comp.program_names)
    ids, mask, read = b["input_ids"], b["attention_mask"], b["read_mask"]
    T = ids.shape[1]
    tokens = torch.randn(1, T, 64)
    hidden = torch.randn(1, T, 64)
    with torch.no_grad():
        comp.gate_head.bias.fill_(0.0)
        heads = comp(hidden, mask, read, input_ids=ids, token_states=tokens).heads.prompt
    written = (heads.gate_logit[0] > 0) & (b["attention_mask"][0, :heads.gate_logit.shape[1]] > 0)
    assert 0 < int(written.sum()) < int(mask.sum()) - 2
    changed = hidden.clone()
    changed[0, :written.shape[0]][written] += 5.0 * torch.randn(int(written.sum()), 64)
    word = int((~written).nonzero()[-1])
    moved = hidden.clone()
    moved[0, word] += 5.0 * torch.randn(64)  # random: the norm removes a constant shift
    with torch.no_grad():
        again = comp(changed, mask, read, input_ids=ids, token_states=tokens).heads.prompt
        other = comp(moved, mask, read, input_ids=ids, token_states=tokens).heads.prompt
    torch.testing.assert_close(again.pi, heads.pi, rtol=0, atol=1e-6)
    torch.testing.assert_close(again.source_weights, heads.source_weights, rtol=0, atol=1e-6)
    assert (other.pi - heads.pi).abs().max() > 1e-4
