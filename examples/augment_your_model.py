"""A worked example: your own functions, data, tokenizer and transformers LLaMA, with ncl's computer.

1. a function library of your own (``largest`` of three digits, ``clamp``), compiled with ``ncl.Library``;
2. a JSON-lines data set this script writes itself (``{"prompt", "answer", "program", "args"}``);
3. a byte-level BPE tokenizer trained here with the ``tokenizers`` package (LLaMA3's pre-tokenisation), nothing
   downloaded;
4. a small ``transformers`` ``LlamaForCausalLM``, augmented with ``ncl.augment``, trained for a few minutes
   (``--seconds``), evaluated (exact match), saved, reloaded, and checked to answer the same.

Run: ``python examples/augment_your_model.py [--seconds 120] [--out DIR]`` (CPU; the CI runs it with
``--seconds 30``).
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
from pathlib import Path

import torch
import transformers
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

import ncl
from ncl.tokenizers import HFTokenizer
from ncl.training.user_data import exact_match, fit, predict, read_records

LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")

# --- 1. your functions: the compiled subset of Python (docs/compiler.md) -------------------------------------
LIBRARY = '''
def largest(a, b, c):
    return max(max(a, b), c)


def clamp(x, lo, hi):
    if x < lo:
        return lo
    if x > hi:
        return hi
    return x
'''


def make_data(path: Path, count: int, seed: int) -> None:
    """``count`` records: "largest 4 9 2 =" -> "9", "clamp 7 1 5 =" -> "5" (digits, so every number is one
    tape cell and the arguments are the tape's cells 0, 2 and 4)."""
    rng = random.Random(seed)
    with open(path, "w") as f:
        for _ in range(count):
            a, b, c = (rng.randrange(10) for _ in range(3))
            if rng.random() < 0.5:
                record = {"prompt": f"largest {a} {b} {c} =", "answer": str(max(a, b, c)), "program": "largest"}
            else:
                lo, hi = min(b, c), max(b, c)
                record = {"prompt": f"clamp {a} {lo} {hi} =", "answer": str(min(max(a, lo), hi)), "program": "clamp"}
                b, c = lo, hi
            f.write(json.dumps({**record, "args": [a, b, c]}) + "\n")


def make_tokenizer(texts: list[str]) -> HFTokenizer:
    """A byte-level BPE with LLaMA3's pre-tokenizer (digits in chunks of 1-3), trained on ``texts``."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(LLAMA3_SPLIT), "isolated"),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=300, special_tokens=["<pad>", "<bos>", "<eos>"],
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return HFTokenizer(tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0, help="training time limit")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--out", default=None, help="where the data and the saved model go (default: a temp dir)")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    out = Path(args.out or tempfile.mkdtemp(prefix="ncl-example-"))
    out.mkdir(parents=True, exist_ok=True)

    library = ncl.Library.from_source(LIBRARY, builtins=False)
    make_data(out / "train.jsonl", 2000, seed=0)
    make_data(out / "test.jsonl", 200, seed=1)
    train = read_records(out / "train.jsonl", library.names())
    test = read_records(out / "test.jsonl", library.names())
    tokenizer = make_tokenizer([r["prompt"] + " " + r["answer"] for r in train])

    config = transformers.LlamaConfig(vocab_size=tokenizer.vocab_size, hidden_size=64, intermediate_size=128,
                                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                      max_position_embeddings=64, pad_token_id=tokenizer.pad_token_id,
                                      bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    llama = transformers.LlamaForCausalLM(config)
    # values are digits: a 16-value machine (the tape's symbols are 10..15), 8 cells, argument cells 0..5
    model = ncl.augment(llama, tokenizer, library=library, split=1, n=16, cells=8, arg_cells=6, max_steps=48)

    fit(model, train, steps=args.steps, batch_size=16, lr=3e-3, time_limit=args.seconds, log_every=25)
    accuracy = exact_match(model, test, max_new_tokens=4)
    model.save_pretrained(out / "model")
    again = ncl.AugmentedModel.from_pretrained(out / "model")
    prompts = [r["prompt"] for r in test[:32]]
    same = predict(again, prompts, 4) == predict(model, prompts, 4)
    result = {"accuracy": accuracy, "reloaded_answers_equal": same, "out": str(out),
              "examples": dict(zip(prompts[:4], predict(again, prompts[:4], 4)))}
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
