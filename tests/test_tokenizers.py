"""ncl.tokenizers: the built-in character tokenizer and Hugging Face tokenizer.json files (built locally)."""

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ncl.llama import LlamaConfig
from ncl.tokenizers import (DIGITS, LETTERS, PUNCTUATION, SPECIAL_TOKENS, WORDS, CharTokenizer, HFTokenizer,
                            load_tokenizer)

VOCAB_CHARS = DIGITS + LETTERS + PUNCTUATION


def test_default_vocabulary_fits_tiny_preset():
    tok = CharTokenizer()
    assert tok.vocab_size == len(SPECIAL_TOKENS) + len(set(VOCAB_CHARS)) + len(WORDS)
    assert tok.vocab_size <= LlamaConfig.preset("tiny").vocab_size
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2, 3)
    assert [tok.id_to_token(i) for i in range(len(SPECIAL_TOKENS))] == list(SPECIAL_TOKENS)


def test_digits_are_single_tokens_and_words_whole():
    tok = CharTokenizer()
    pieces = lambda s: [tok.id_to_token(i) for i in tok.encode(s)]  # noqa: E731
    assert pieces("add 127 5") == ["add", " ", "1", "2", "7", " ", "5"]
    assert pieces("address") == list("address")  # a word inside a longer word is spelled out
    assert pieces("fib(12)<eos>") == ["fib", "(", "1", "2", ")", "<eos>"]
    assert pieces("xsum") == list("xsum") and pieces("sum3") == list("sum3")
    assert pieces("divmod div") == ["divmod", " ", "div"]
    assert pieces("é") == ["<unk>"]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(list(VOCAB_CHARS)), st.sampled_from(list(WORDS) + list(SPECIAL_TOKENS))),
                max_size=30))
def test_round_trip(parts):
    tok = CharTokenizer()
    text = "".join(parts)
    ids = tok.encode(text, add_bos=True, add_eos=True)
    assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id
    assert all(0 <= i < tok.vocab_size for i in ids)
    assert tok.decode(ids[1:-1]) == text
    assert tok.decode(tok.encode(tok.decode(ids))) == tok.decode(ids)


def test_encode_batch_padding():
    tok = CharTokenizer()
    ids, mask = tok.encode_batch(["12+3", "7"], add_eos=True)
    assert ids.dtype == mask.dtype == torch.int64 and ids.shape == (2, 5)
    assert mask.tolist() == [[1] * 5, [0, 0, 0, 1, 1]]
    assert ids[1, :3].tolist() == [tok.pad_token_id] * 3
    assert tok.decode_batch(ids) == ["12+3", "7"]
    right, rmask = tok.encode_batch(["12+3", "7"], padding_side="right")
    assert rmask.tolist() == [[1, 1, 1, 1], [1, 0, 0, 0]] and right[1, 0] == tok.token_to_id("7")


def test_save_and_load(tmp_path):
    tok = CharTokenizer(chars="0123456789+=", words=["add"], special_tokens=["<p>", "<b>", "<e>", "<u>"])
    tok.save(tmp_path / "tok.json")
    again = load_tokenizer(tmp_path / "tok.json")
    assert isinstance(again, CharTokenizer) and again.to_dict() == tok.to_dict()
    assert again.encode("add 1+2=3") == tok.encode("add 1+2=3")


@pytest.mark.parametrize("kwargs,match", [
    (dict(chars="ab", special_tokens=["<p>", "<b>"]), "special_tokens"),
    (dict(chars="ab", words=["a b"]), "words"),
    (dict(chars="aa" + "<"), None),
    (dict(chars="ab", words=["ab", "ab"]), "twice"),
])
def test_char_tokenizer_bad_arguments(kwargs, match):
    if match is None:
        assert CharTokenizer(**kwargs).chars == "a<"  # repeated characters collapse
        return
    with pytest.raises(ValueError, match=match):
        CharTokenizer(**kwargs)


def test_bad_calls():
    tok = CharTokenizer()
    with pytest.raises(ValueError, match="text"):
        tok.encode(12)
    with pytest.raises(ValueError, match="ids"):
        tok.decode([tok.vocab_size])
    with pytest.raises(ValueError, match="padding_side"):
        tok.encode_batch(["1"], padding_side="middle")
    with pytest.raises(ValueError, match="not in the vocabulary"):
        tok.token_to_id("zz")


# ---------------------------------------------------------------------------------------------- tokenizer.json


@pytest.fixture()
def hf_dir(tmp_path):
    """A small byte-level BPE tokenizer trained here, saved as a Hugging Face checkpoint would hold it."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|begin|>", "<|end|>", "<|pad|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    corpus = ["the sum of 12 and 30 is 42", "sort the list 3 1 2", "fib of 7 is 13"] * 20
    tok.train_from_iterator(corpus, trainer)
    tok.save(str(tmp_path / "tokenizer.json"))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(
        {"bos_token": "<|begin|>", "eos_token": {"content": "<|end|>"}, "pad_token": "<|pad|>"}))
    return tmp_path


def test_hf_tokenizer_json(hf_dir):
    from tokenizers import Tokenizer

    tok = load_tokenizer(hf_dir)
    assert isinstance(tok, HFTokenizer)
    raw = Tokenizer.from_file(str(hf_dir / "tokenizer.json"))
    text = "the sum of 99 and 1 is 100, sorted!"
    assert tok.encode(text) == raw.encode(text, add_special_tokens=False).ids
    assert tok.decode(tok.encode(text)) == text
    assert tok.bos_token_id == raw.token_to_id("<|begin|>") and tok.eos_token_id == raw.token_to_id("<|end|>")
    ids = tok.encode(text, add_bos=True, add_eos=True)
    assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id
    assert tok.decode(ids, skip_special_tokens=True) == text
    batch, mask = tok.encode_batch(["fib of 7", "the sum of 12 and 30"])
    assert batch[0, 0] == tok.pad_token_id and mask[0, 0] == 0 and mask[1].all()
    assert tok.vocab_size == raw.get_vocab_size()


def test_hf_tokenizer_matches_transformers(hf_dir):
    transformers = pytest.importorskip("transformers")
    fast = transformers.PreTrainedTokenizerFast(tokenizer_file=str(hf_dir / "tokenizer.json"))
    tok = load_tokenizer(hf_dir / "tokenizer.json")
    for text in ["sort the list 3 1 2", "12 and 30", "unseen wörds ✓"]:
        assert tok.encode(text) == fast(text, add_special_tokens=False)["input_ids"]


def test_hf_tokenizer_errors(hf_dir, tmp_path_factory):
    empty = tmp_path_factory.mktemp("empty")
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        load_tokenizer(empty)
    with pytest.raises(FileNotFoundError):
        load_tokenizer(empty / "missing.json")
    (hf_dir / "tokenizer_config.json").write_text(json.dumps({"bos_token": "<|nope|>"}))
    with pytest.raises(ValueError, match="bos_token"):
        load_tokenizer(hf_dir)
