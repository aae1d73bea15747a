"""The digit reader with real tokenizers (ncl.hf.tokens): a byte-level BPE trained here with LLaMA3's
pre-tokenisation (numbers cut into chunks of 1-3 digits), nothing downloaded. Every number of 1 to 12 digits is read
exactly, onto the computer's tape included; a tokenizer that spells no digit is refused."""

import random

import pytest
import torch

tokenizers = pytest.importorskip("tokenizers")
transformers = pytest.importorskip("transformers")

from ncl.hf import augment  # noqa: E402
from ncl.hf.tokens import NOT_DIGIT, cells_of, computer_view, digit_table, number_on_tape  # noqa: E402
from ncl.library.symbols import SEP  # noqa: E402
from ncl.tokenizers import CharTokenizer, HFTokenizer  # noqa: E402

LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")


@pytest.fixture(scope="module")
def bpe():
    """A byte-level BPE with LLaMA3's pre-tokenizer, trained on numbers and a few words."""
    from tokenizers import Regex, decoders, models, pre_tokenizers, trainers
    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_SPLIT), "isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    rng = random.Random(0)
    text = [" ".join(str(rng.randrange(10 ** rng.randrange(1, 13))) for _ in range(30)) + " add sort max ="
            for _ in range(400)]
    trainer = tokenizers.trainers.BpeTrainer(vocab_size=1500, special_tokens=["<pad>", "<bos>", "<eos>"],
                                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(text, trainer)
    return HFTokenizer(tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>")


def numbers(count=60, seed=0):
    rng = random.Random(seed)
    out = [rng.randrange(10 ** (k - 1), 10 ** k) for k in range(1, 13) for _ in range(count // 12)]
    return out + [0, 4071, 10 ** 11, 999999999999]


def test_cells_of_token_texts():
    assert cells_of("407") == [4, 0, 7]
    assert cells_of(" 12") == [NOT_DIGIT, 1, 2]  # GPT-2 style: the space is a cell of its own
    assert cells_of("7 ") == [7, NOT_DIGIT]
    assert cells_of("a1") == cells_of("=") == cells_of("") == cells_of("\ufffd") == [NOT_DIGIT]
    assert cells_of("\u0663") == [NOT_DIGIT]  # other scripts' digits are not read as 0-9


def test_bpe_cuts_numbers_into_chunks_of_one_to_three_digits(bpe):
    chunks = {bpe.decode([i]) for n in numbers() for i in bpe.encode(str(n))}
    assert max(len(c) for c in chunks) == 3 and any(len(c) == 2 for c in chunks)
    assert all(c.isdigit() for c in chunks)


@pytest.mark.parametrize("left", [True, False])
def test_bpe_numbers_of_1_to_12_digits_are_read_exactly(bpe, left):
    table = digit_table(bpe, bpe.vocab_size)
    values = numbers()
    prompts = [f"add {a} {b} =" for a, b in zip(values, reversed(values))]
    if left:
        ids, mask = bpe.encode_batch(prompts, add_bos=True, padding_side="left")
    else:
        ids, mask = bpe.encode_batch([p + " 1" for p in prompts], add_bos=True, padding_side="right")
    read = torch.zeros_like(mask)
    if left:
        read[:, -1] = 1
    else:  # the answer starts after the prompt's "=" (right padding: a different column in each row)
        for i, p in enumerate(prompts):
            read[i, len(bpe.encode(p))] = 1
    view = computer_view(ids, mask, read, table)
    for i, (a, b) in enumerate(zip(values, reversed(values))):
        cells = view.ids[i][view.mask[i].bool() & ~view.read[i].bool()].tolist()
        assert number_on_tape(cells) == [a, b], prompts[i]


def test_numbers_reach_the_machines_tape(bpe):
    """End to end through a transformers LLaMA: with the write gates forced open, the tape holds every prompt
    cell, the digits of each number one per cell and SEP for every other token."""
    config = transformers.LlamaConfig(vocab_size=bpe.vocab_size, hidden_size=32, intermediate_size=64,
                                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
    model = augment(transformers.LlamaForCausalLM(config), bpe, split=1, cells=64, max_steps=8)
    with torch.no_grad():
        model.computer.gate_head.bias.fill_(50.0)
    prompts = ["add 4071 98 =", "max 123456789012 7 ="]
    ids, mask = bpe.encode_batch(prompts, add_bos=True, padding_side="left")
    out = model(ids, mask)
    written = out.computer.state.written
    for i, expected in enumerate(([4071, 98], [123456789012, 7])):
        tape = out.computer.state.mem[i].argmax(-1)[written[i] > 0.5].tolist()
        assert number_on_tape([NOT_DIGIT if c == SEP else c for c in tape]) == expected
    assert out.computer.state.mem.shape[1] == 64


def test_char_and_transformers_tokenizers_read_alike(bpe):
    """ncl's character tokenizer and a transformers tokenizer around the BPE give the same cells."""
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=bpe.tokenizer, bos_token="<bos>",
                                                eos_token="<eos>", pad_token="<pad>")
    char = CharTokenizer()
    for tok in (fast, char, bpe):
        table = digit_table(tok, len(fast) if tok is fast else tok.vocab_size)
        ids = torch.tensor([tok.encode("x 90210 5 =", add_special_tokens=False) if tok is fast
                            else tok.encode("x 90210 5 =")])
        read = torch.zeros_like(ids)
        read[0, -1] = 1
        view = computer_view(ids, torch.ones_like(ids), read, table)
        assert number_on_tape(view.ids[0][:view.prompt_width].tolist()) == [90210, 5]


def test_a_tokenizer_without_digits_is_refused():
    tok = CharTokenizer(chars="abc =")
    config = transformers.LlamaConfig(vocab_size=tok.vocab_size, hidden_size=32, intermediate_size=64,
                                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
    with pytest.raises(ValueError, match="no token's text is made of the digits"):
        augment(transformers.LlamaForCausalLM(config), tok)


@pytest.mark.parametrize("kind", ["transformers", "tokenizers", "ncl"])
def test_a_saved_model_keeps_its_bpe_tokenizer(bpe, kind, tmp_path):
    from ncl.hf import AugmentedModel
    tok = {"transformers": lambda: transformers.PreTrainedTokenizerFast(
        tokenizer_object=bpe.tokenizer, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>"),
        "tokenizers": lambda: bpe.tokenizer, "ncl": lambda: bpe}[kind]()
    config = transformers.LlamaConfig(vocab_size=bpe.vocab_size, hidden_size=32, intermediate_size=64,
                                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
    model = augment(transformers.LlamaForCausalLM(config).eval(), tok, split=1, max_steps=16)
    ids, mask = bpe.encode_batch(["add 4071 98 =", "max 12 7 ="], add_bos=True)
    model.save_pretrained(tmp_path / "m")
    again = AugmentedModel.from_pretrained(tmp_path / "m")
    assert type(again.tokenizer) is type(model.tokenizer)
    assert torch.equal(again.digit_table, model.digit_table)
    assert again.tokenizer.decode(ids[0].tolist()) == model.tokenizer.decode(ids[0].tolist())
    with torch.no_grad():
        assert torch.equal(again(ids, mask).logits, model(ids, mask).logits)
