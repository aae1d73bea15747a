"""ncl.augment around a user's causal LM (transformers or ncl.llama): the computer off gives the base model's
logits, gradients reach the computer's heads, freezing and LoRA keep the base weights, cached generation equals
recomputation, and a saved model reloads to the same logits (tests/test_user_library.py: the user library)."""

import copy
import json

import pytest
import torch

transformers = pytest.importorskip("transformers")

import ncl  # noqa: E402
from ncl.hf import AugmentedModel, augment  # noqa: E402
from ncl.llama import LlamaConfig, LlamaForCausalLM  # noqa: E402
from ncl.tokenizers import CharTokenizer  # noqa: E402

SMALL = dict(max_steps=32)  # a short machine run: these tests check the plumbing, not what the machine computes
HF_BASE = dict(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
               num_key_value_heads=2, max_position_embeddings=256, pad_token_id=0, bos_token_id=1, eos_token_id=2)


def hf_model(seed=0, **over):
    torch.manual_seed(seed)
    return transformers.LlamaForCausalLM(transformers.LlamaConfig(**{**HF_BASE, **over})).eval()


def ncl_model(seed=0):
    torch.manual_seed(seed)
    return LlamaForCausalLM(LlamaConfig.preset("tiny", num_hidden_layers=3)).eval()


def batch(tok, right=False):
    prompts = ["add 4071 98 =", "sort 3 1 2 ="]
    answers = ["4169", "1 2 3"]
    if not right:
        ids, mask = tok.encode_batch(prompts, add_bos=True, padding_side="left")
        return ids, mask, None
    rows = [([tok.bos_token_id] + tok.encode(p), tok.encode(a) + [tok.eos_token_id]) for p, a in zip(prompts, answers)]
    T = max(len(p) + len(a) for p, a in rows)
    ids = torch.zeros(len(rows), T, dtype=torch.long)
    mask = torch.zeros_like(ids)
    labels = torch.full_like(ids, -100)
    for i, (p, a) in enumerate(rows):
        ids[i, :len(p) + len(a)] = torch.tensor(p + a)
        mask[i, :len(p) + len(a)] = 1
        labels[i, len(p):len(p) + len(a)] = torch.tensor(a)
    return ids, mask, labels


@pytest.mark.parametrize("kind", ["transformers", "ncl"])
def test_computer_off_gives_the_base_models_logits(kind):
    tok = CharTokenizer()
    base = hf_model() if kind == "transformers" else ncl_model()
    model = ncl.augment(base, tok, split=1, **SMALL)
    assert model.base is base  # the user's object, not a copy
    ids, mask, labels = batch(tok, right=True)
    with torch.no_grad():
        expected = base(input_ids=ids, attention_mask=mask).logits
        model.computer_enabled = False
        off = model(ids, mask, labels=labels)
        model.computer_enabled = True
        on = model(ids, mask, labels=labels)
    assert torch.equal(off.logits, expected)
    assert off.computer is None and on.computer is not None
    assert model.unhook() is base
    with torch.no_grad():
        assert torch.equal(base(input_ids=ids, attention_mask=mask).logits, expected)
    # the readout reaches the answer positions only: every position before a row's first read is the base's
    first = (labels != -100).long().argmax(1) - 1
    for i in range(ids.shape[0]):
        assert torch.equal(on.logits[i, :first[i]], expected[i, :first[i]])
        assert not torch.equal(on.logits[i, first[i]:], expected[i, first[i]:])


def test_output_follows_transformers_conventions():
    tok = CharTokenizer()
    model = ncl.augment(hf_model(), tok, split=2, **SMALL)
    ids, mask, labels = batch(tok, right=True)
    out = model(input_ids=ids, attention_mask=mask, labels=labels)
    assert out.logits.shape == (*ids.shape, 128)
    assert out[0] is out.loss and out["logits"] is out.logits and out.keys() == ["loss", "logits", "computer"]
    shifted = torch.nn.functional.cross_entropy(out.logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten())
    assert torch.allclose(out.loss, shifted)


def _run_long_add(model):
    """Make a random model's heads write the prompt and call ``long_add`` on it (still softly): whether the read
    gate gets a gradient depends on the tape the run leaves, and random heads may leave one whose cells are all
    alike (nothing written, or a program that clears it)."""
    comp = model.computer
    with torch.no_grad():
        comp.program_head.bias.zero_()
        comp.program_head.bias[comp.program_names.index("long_add")] = 8.0
        S = comp.num_sources  # per register: the first tape cells, the tape's length, zero
        bias = comp.source_head.bias.view(-1, S)
        bias.zero_()
        bias[:, S - 1] = 8.0  # zero, but r2: the length
        bias[1, S - 1], bias[1, S - 2] = 0.0, 8.0
        comp.gate_head.weight.zero_()  # and every prompt token writes: the tape holds the prompt
        comp.gate_head.bias.fill_(8.0)
        comp.gate_prev_head.weight.zero_()


@pytest.mark.parametrize("freeze", [False, True])
def test_gradients_reach_the_computers_heads(freeze):
    tok = CharTokenizer()
    base = hf_model()
    model = augment(base, tok, split=1, freeze_base=freeze, **SMALL)
    ids, mask, labels = batch(tok, right=True)
    _run_long_add(model)
    model(ids, mask, labels=labels).loss.backward()
    for head in (model.computer.program_head, model.computer.gate_head, model.computer.read_head,
                 model.computer.embed_r0, model.computer.print_cell):
        assert head.weight.grad is not None and head.weight.grad.abs().sum() > 0
    q = base.model.layers[0].self_attn.q_proj.weight
    assert (q.grad is None) == freeze
    assert all(not p.requires_grad for p in base.parameters()) == freeze


def test_the_read_gate_reads_the_token_alone():
    """The read pointer's gate reads the token embeddings (as in ncl.AugmentedLlama): the same answer after two
    different prompts gets the same gate logits at its read positions; the prompts' own positions differ."""
    tok = CharTokenizer()
    model = augment(hf_model(), tok, split=1, **SMALL)
    answer = tok.encode("4169 3") + [tok.eos_token_id]
    rows = [[tok.bos_token_id] + tok.encode(p) + answer for p in ("add 4071 98 =", "sort 3 1 2 8 =")]
    T = max(len(r) for r in rows)
    ids = torch.tensor([r + [0] * (T - len(r)) for r in rows])
    mask = torch.tensor([[1] * len(r) + [0] * (T - len(r)) for r in rows])
    labels = torch.where(torch.arange(T) >= torch.tensor([[len(r) - len(answer)] for r in rows]), ids, -100)
    with torch.no_grad():
        logits = model(ids, mask, labels=labels).computer.heads.read_logit  # (B, W): the view's columns
    k = len(answer) + 1  # the read positions: the prompt's last token, then the answer's
    torch.testing.assert_close(logits[0, -k:], logits[1, -k:], rtol=0, atol=1e-5)
    assert not torch.allclose(logits[0, :-k], logits[1, :-k])


@pytest.mark.parametrize("kind", ["transformers", "ncl"])
def test_cached_generation_equals_recomputation(kind):
    tok = CharTokenizer()
    model = augment(hf_model(seed=1) if kind == "transformers" else ncl_model(seed=1), tok, split=1, **SMALL)
    ids, mask, _ = batch(tok)
    # an end token that no token is: every row writes all 6 (a random model may well write the tokenizer's EOS)
    cached = model.generate(ids, mask, max_new_tokens=6, eos_token_id=-1)
    full = model.generate(ids, mask, max_new_tokens=6, eos_token_id=-1, use_cache=False)
    assert cached.shape == (2, ids.shape[1] + 6) and torch.equal(cached[:, :ids.shape[1]], ids)
    assert torch.equal(cached, full)
    # the first new token is the argmax of forward's logits at the last prompt token
    assert torch.equal(cached[:, ids.shape[1]], model(ids, mask).logits[:, -1].argmax(-1))


def test_lora_trains_adapters_and_leaves_the_base_unchanged():
    pytest.importorskip("peft")
    tok = CharTokenizer()
    base = hf_model()
    before = copy.deepcopy(base.state_dict())
    model = augment(base, tok, split=1, lora={"r": 4, "target_modules": ["q_proj", "v_proj"]}, **SMALL)
    lora = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_B" in n}
    assert lora and all(p.requires_grad for n, p in model.named_parameters() if "lora_" in n)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    ids, mask, labels = batch(tok, right=True)
    model.train()
    for _ in range(2):
        opt.zero_grad()
        model(ids, mask, labels=labels).loss.backward()
        opt.step()
    after = dict(model.named_parameters())
    assert any(not torch.equal(after[n], v) for n, v in lora.items())
    inner = model.base.get_base_model()
    for name, value in before.items():  # peft renames the wrapped weights ...base_layer.weight
        current = inner.state_dict().get(name, inner.state_dict().get(name.replace(".weight", ".base_layer.weight")))
        assert torch.equal(current, value), name


@pytest.mark.parametrize("kind", ["transformers", "ncl"])
def test_saved_model_reloads_to_identical_logits(kind, tmp_path):
    tok = CharTokenizer()
    base = hf_model(tie_word_embeddings=True) if kind == "transformers" else ncl_model()
    model = augment(base, tok, split=2, **SMALL)
    ids, mask, labels = batch(tok, right=True)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)  # weights that differ from any fresh init
    model(ids, mask, labels=labels).loss.backward()
    opt.step()
    model.eval()
    model.save_pretrained(tmp_path / "m")
    names = sorted(p.name for p in (tmp_path / "m").iterdir())
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(names)
    assert not any(n.endswith((".bin", ".pt", ".pkl")) for n in names)
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["base_kind"] == kind and config["split"] == 2
    again = AugmentedModel.from_pretrained(tmp_path / "m").eval()
    assert again.kind == kind and type(again.tokenizer) is CharTokenizer
    with torch.no_grad():
        assert torch.equal(again(ids, mask, labels=labels).logits, model(ids, mask, labels=labels).logits)
    # saving over an existing directory replaces it whole; nothing temporary is left beside it
    again.save_pretrained(tmp_path / "m")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_bad_inputs_get_clear_errors():
    tok = CharTokenizer()
    base = hf_model()
    with pytest.raises(ValueError, match="split must be"):
        augment(base, tok, split=9)
    with pytest.raises(ValueError, match="unknown"):
        augment(base, tok, bogus=1)
    with pytest.raises(ValueError, match="word_view must be 'context'"):  # no collapsed pass in the wrapper
        augment(base, tok, word_view="collapsed")
    with pytest.raises(ValueError, match="model must be"):
        augment(torch.nn.Linear(2, 2), tok)
    model = augment(base, tok, split=1, **SMALL)
    ids, mask, labels = batch(tok, right=True)
    with pytest.raises(ValueError, match="labels: every row needs an answer"):
        model(ids, mask, labels=torch.full_like(ids, -100))
    with pytest.raises(ValueError, match="input_ids must be"):
        model(ids.float(), mask)
    with pytest.raises(ValueError, match="left padded"):
        model.generate(ids, mask)


def test_lora_model_reloads_with_its_adapters(tmp_path):
    pytest.importorskip("peft")
    tok = CharTokenizer()
    model = augment(hf_model(), tok, split=1, lora={"r": 4, "target_modules": ["q_proj", "v_proj"]}, **SMALL)
    ids, mask, labels = batch(tok, right=True)
    model(ids, mask, labels=labels).loss.backward()
    with torch.no_grad():  # one step: adapters that are not their initial zeros
        for p in model.parameters():
            if p.grad is not None:
                p -= 0.5 * p.grad
    model.eval().save_pretrained(tmp_path / "m")
    assert json.loads((tmp_path / "m" / "config.json").read_text())["lora"]["r"] == 4
    again = AugmentedModel.from_pretrained(tmp_path / "m").eval()
    trainable = [n for n, p in again.named_parameters() if p.requires_grad]
    assert trainable == [n for n, p in model.named_parameters() if p.requires_grad]
    with torch.no_grad():
        assert torch.equal(again(ids, mask).logits, model(ids, mask).logits)


def test_a_transformers_trainer_trains_it_unchanged(tmp_path):
    pytest.importorskip("accelerate")
    tok = CharTokenizer()
    model = augment(hf_model(), tok, split=1, **SMALL)
    ids, mask, labels = batch(tok, right=True)
    rows = [{"input_ids": ids[i], "attention_mask": mask[i], "labels": labels[i]} for i in range(2)] * 2
    args = transformers.TrainingArguments(output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=2,
                                          learning_rate=1e-2, report_to=[], save_strategy="no", use_cpu=True,
                                          logging_steps=1)
    before = model.computer.program_head.weight.detach().clone()
    result = transformers.Trainer(model=model, args=args, train_dataset=rows).train()
    assert result.global_step == 2 and torch.isfinite(torch.tensor(result.training_loss))
    assert not torch.equal(model.computer.program_head.weight, before)


def test_gradient_checkpointing_gives_the_same_gradients():
    """transformers recomputes checkpointed layers in the backward pass; the readout the hook added must be in
    that recomputation too, or the base and the heads would get other gradients."""
    tok = CharTokenizer()
    ids, mask, labels = batch(tok, right=True)
    grads = []
    for checkpointing in (False, True):
        base = hf_model()
        if checkpointing:
            base.gradient_checkpointing_enable()
        model = augment(base, tok, split=1, **SMALL).train()
        model(ids, mask, labels=labels).loss.backward()
        grads.append([base.model.layers[0].self_attn.q_proj.weight.grad, model.computer.read_head.weight.grad])
    for a, b in zip(*grads):
        assert torch.allclose(a, b, atol=1e-6)


def test_a_bf16_base_runs_with_an_fp32_computer():
    tok = CharTokenizer()
    model = augment(hf_model().to(torch.bfloat16), tok, split=1, **SMALL)
    _run_long_add(model)
    assert model.computer.norm.weight.dtype == torch.float32
    ids, mask, labels = batch(tok, right=True)
    out = model(ids, mask, labels=labels)
    out.loss.backward()
    assert out.logits.dtype == torch.bfloat16 and torch.isfinite(out.loss)
    assert model.computer.read_head.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("kind", ["transformers", "ncl"])
def test_copy_output(kind, tmp_path):
    """copy=True: the read positions' output is the pointer-generator mixture (log-probabilities), off gives the
    base's logits, the cached decoder equals recomputation, gradients reach the copy's gates, a reload is equal."""
    tok = CharTokenizer()
    base = hf_model(seed=2) if kind == "transformers" else ncl_model(seed=2)
    model = augment(base, tok, split=1, copy=True, **SMALL)
    ids, mask, labels = batch(tok, right=True)
    with torch.no_grad():
        expected = base(input_ids=ids, attention_mask=mask).logits
        model.computer_enabled = False
        assert torch.equal(model(ids, mask, labels=labels).logits, expected)
        model.computer_enabled = True
    out = model(ids, mask, labels=labels)
    read = labels != -100
    assert torch.allclose(out.logits[read].logsumexp(-1), torch.zeros(int(read.sum())), atol=1e-4)
    out.loss.backward()
    assert model.copy_head.gates.weight.grad.abs().sum() > 0
    prompts, pmask, _ = batch(tok)
    cached = model.generate(prompts, pmask, max_new_tokens=5, eos_token_id=None)
    assert torch.equal(cached, model.generate(prompts, pmask, max_new_tokens=5, eos_token_id=None, use_cache=False))
    model.eval().save_pretrained(tmp_path / "m")
    again = AugmentedModel.from_pretrained(tmp_path / "m").eval()
    assert again.copy_head is not None
    with torch.no_grad():
        assert torch.equal(again(ids, mask, labels=labels).logits, model(ids, mask, labels=labels).logits)


def test_copy_needs_one_token_digits():
    class Chunky(CharTokenizer):
        def encode_raw(self, text):
            return super().encode_raw(text) * 2  # every text two tokens

    with pytest.raises(ValueError, match="the digit '0' is not one token"):
        augment(hf_model(), Chunky(), copy=True)
