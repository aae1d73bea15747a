"""``ncl train --data FILE.jsonl [--library mylib.py] --out D`` and ``ncl eval D --data FILE.jsonl``: an augmented
model trained on the user's own JSON lines (:mod:`ncl.training.user_data`) with the user's own library.

The run directory ``D`` is the saved model (:meth:`ncl.hf.AugmentedModel.save_pretrained`: it reloads with
``ncl.AugmentedModel.from_pretrained(D)``), plus ``metrics.jsonl`` and, with ``--eval-data``, ``eval.json``.
The base model is ncl's ``tiny`` LLaMA with the character tokenizer, or a local Hugging Face checkpoint
(``--base DIR``: its ``config.json``, weights and ``tokenizer.json``; nothing is downloaded).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ncl import storage
from ncl.hf import AugmentedModel, augment
from ncl.hf.files import CONFIG, FORMAT
from ncl.library.user import Library
from ncl.llama import LlamaConfig, LlamaForCausalLM
from ncl.tokenizers import CharTokenizer, load_tokenizer
from ncl.training.user_data import exact_match, fit, read_records

METRICS, EVAL = "metrics.jsonl", "eval.json"


def is_saved_model(path) -> bool:
    """Whether ``path`` is a directory :meth:`~ncl.hf.AugmentedModel.save_pretrained` wrote."""
    file = Path(path) / CONFIG
    try:
        return file.is_file() and json.loads(file.read_text()).get("format") == FORMAT
    except (json.JSONDecodeError, OSError):
        return False


def _base(base):
    if base is None:
        tok = CharTokenizer()
        return LlamaForCausalLM(LlamaConfig.preset("tiny", vocab_size=max(128, tok.vocab_size))), tok
    return LlamaForCausalLM.from_pretrained(base), load_tokenizer(base)


def train_on_data(data, out, library=None, eval_data=None, base=None, steps: int = 1500, batch_size: int = 16,
                  lr: float = 2e-3, aux: float = 1.0, seed: int = 0, time_limit: float | None = 840.0,
                  split: int | None = None, cells: int | None = None, max_steps: int = 256,
                  with_builtins: bool = True, log=print) -> dict:
    """Train an augmented model on the records of ``data`` and save it to ``out``.

    Args:
        data, eval_data: JSON-lines files (:func:`~ncl.training.user_data.read_records`).
        out: the run directory (the saved model, ``metrics.jsonl``, ``eval.json``).
        library: a Python file of the user's functions (:meth:`ncl.Library.from_module`), or None: the built-in
            library alone. ``with_builtins``: the built-in functions beside the user's.
        base: a local Hugging Face LLaMA checkpoint directory, or None (ncl's ``tiny`` preset).
        cells: the tape's cells (default: the longest training prompt's characters, at least 16, at most n).
        max_steps: the machine's step limit.
        Others: :func:`~ncl.training.user_data.fit`'s.

    Returns:
        ``{"steps", "loss", "elapsed", "accuracy" (with eval_data)}``.
    """
    out = Path(out)
    lib = Library.from_module(library, builtins=with_builtins) if library is not None else None
    names = lib.names() if lib is not None else None
    records = read_records(data, names)
    evals = read_records(eval_data, names) if eval_data is not None else None
    torch.manual_seed(seed)
    llama, tok = _base(base)
    longest = max(len(r["prompt"]) for r in records + (evals or []))
    n = 128
    cells = cells or min(n, max(16, -(-(longest + 1) // 8) * 8))
    model = augment(llama, tok, library=lib, split=split, n=n, cells=cells, arg_cells=min(cells, 8),
                    max_steps=max_steps)
    logged = fit(model, records, steps=steps, batch_size=batch_size, lr=lr, aux=aux, seed=seed,
                 time_limit=time_limit, log=log)
    model.save_pretrained(out)
    storage.write_text(out / METRICS, "".join(json.dumps(m) + "\n" for m in logged))
    result = {"steps": logged[-1]["step"] + 1, "loss": logged[-1]["loss"], "elapsed": logged[-1]["elapsed"]}
    if evals is not None:
        result.update(evaluate_saved(out, eval_data, model=model))
        storage.write_json(out / EVAL, result, indent=1)
    return result


def evaluate_saved(run, data, model=None) -> dict:
    """Exact match of the model saved in ``run`` on the records of ``data``: ``{"data", "accuracy",
    "count"}``."""
    if model is None:
        if not is_saved_model(run):
            raise ValueError(f"{run}: not a model saved by ncl train --data (no {CONFIG} of an AugmentedModel)")
        model = AugmentedModel.from_pretrained(run).eval()
    records = read_records(data, model.computer.program_names)
    # read off the prompts, never the answers: the gold answer is only compared with
    budget = 2 * max(len(r["prompt"]) for r in records) + 16
    return {"data": str(data), "accuracy": exact_match(model, records, max_new_tokens=budget),
            "count": len(records)}


__all__ = ["evaluate_saved", "is_saved_model", "train_on_data"]
