"""The model of a :class:`~ncl.training.TrainConfig`, and what the task and the input size decide about it: how
numbers are read and written (:func:`resolve_numbers`), and the machine's value range, tape and step limit
(:func:`machine_budget`)."""

from __future__ import annotations

import re
from dataclasses import replace

import ncl.library
from ncl import tasks as task_registry
from ncl.augmented import AugmentedLlama, PlainLlama
from ncl.llama import LlamaConfig
from ncl.library.symbols import END, SYMBOL_TEXT, TAPE_SYMBOLS, number_cells
from ncl.training.config import TrainConfig
from ncl.training.data import tokenizer


def segment_length(prompt: str) -> int:
    """The digit tape a prompt's numbers fill: each number's digits and its ``SEP``, read off the text."""
    return len(number_cells(int(x) for x in re.findall(r"\d+", prompt)))


def machine_budget(length: int, n: int) -> tuple[int, int]:
    """``(cells, max_steps)`` for an input whose digit tape is ``length`` cells long: the most that ANY library
    function with a stated bound (:func:`ncl.library.resources`) may need on it, so the budget depends on the
    input's size alone, never on which program is right; cells at most n (an address is a value)."""
    bounds = [ncl.library.resources(name, length) for name in ncl.library.bounded_names()]
    cells = max(c for c, _ in bounds)
    return min(n, -(-cells // 8) * 8), max(s for _, s in bounds)


def budget_length(task, length: int) -> int:
    """The input length a machine budget is sized for: ``length`` tape cells, or the longest tape any call of a
    chain can get (``task.call_tape``), if longer: a chain's results outgrow the prompt's numbers."""
    return max(length, getattr(task, "call_tape", 0))


def resolve_numbers(cfg: TrainConfig, samples: int = 512) -> str:
    """``cfg.numbers``, with ``"auto"`` decided from the data: ``"tokens"`` when ``samples`` training examples
    (prompts and answers) do not hold all ten digits, else ``"learned"``."""
    if cfg.numbers != "auto":
        return cfg.numbers
    seen = set()
    for e in task_registry.get(cfg.task).generate("train", samples, seed=cfg.seed):
        seen.update(c for c in e.prompt + e.answer if c.isdigit())
    return "learned" if len(seen) == 10 else "tokens"


def trainable_parameters(model) -> int:
    """The number of parameters the optimizer trains."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _matched(lcfg: LlamaConfig, cfg: TrainConfig) -> LlamaConfig:
    """A baseline's LLaMA, its MLPs widened so that it trains as many parameters as the augmented model of the
    same config (within one MLP unit per layer): the comparison is not won by the computer's extra weights."""
    target = trainable_parameters(build_model(replace(cfg, model="augmented")))
    plain = trainable_parameters(PlainLlama(lcfg))
    per_unit = 3 * lcfg.hidden_size * lcfg.num_hidden_layers  # gate, up and down projections
    return replace(lcfg, intermediate_size=lcfg.intermediate_size + round((target - plain) / per_unit))


def build_model(cfg: TrainConfig, length: int | None = None):
    """The model of ``cfg``: :class:`~ncl.augmented.AugmentedLlama`, or :class:`~ncl.augmented.PlainLlama` (the
    ``llama`` baseline and the ``tooluse`` one): the same LLaMA, the baselines' MLPs widened to as many trainable
    parameters as the augmented model has.

    The computer is ``cfg.computer`` with ``digit_tokens`` from ``cfg.numbers``, its machine's value range the
    task's (``Task.n``), and its tape and step limit from :func:`machine_budget` for inputs of ``length`` tape
    cells (default: the longest training input); ``cfg.train_max_steps`` overrides the step limit. The tape's
    size changes no parameter, so a model trained on short inputs loads into a machine sized for long ones.
    """
    over = {"vocab_size": max(128, tokenizer().vocab_size)}
    if cfg.layers:
        over["num_hidden_layers"] = cfg.layers
    if cfg.hidden:
        base = LlamaConfig.preset(cfg.preset)
        over.update(hidden_size=cfg.hidden, intermediate_size=2 * cfg.hidden,
                    head_dim=cfg.hidden // base.num_attention_heads)
    lcfg = LlamaConfig.preset(cfg.preset, **over)
    if cfg.model != "augmented":
        return PlainLlama(_matched(lcfg, cfg))
    ccfg = cfg.computer
    digit_tokens = symbol_tokens = ()
    if resolve_numbers(cfg) == "tokens":
        if ccfg.reader not in ("digits", "cells") or ccfg.writer not in ("digits", "cells"):
            raise ValueError("numbers='tokens' needs reader and writer 'digits' or 'cells' (pass --numbers learned "
                             "to use other readers or writers)")
        tok = tokenizer()
        digit_tokens = tuple(tok.token_to_id(str(i)) for i in range(10))
        if ccfg.writer == "cells":  # the copy prints the tape's symbols too; END is the end of the answer
            symbol_tokens = tuple(tok.eos_token_id if s == END else tok.token_to_id(SYMBOL_TEXT[s])
                                  for s in TAPE_SYMBOLS)
    task = task_registry.get(cfg.task)
    if length is None:
        length = task.max_segment("train")
    cells, max_steps = machine_budget(budget_length(task, length), task.n)
    machine = replace(ccfg.machine, n=task.n, cells=cells)
    ccfg = replace(ccfg, machine=machine, digit_tokens=digit_tokens, symbol_tokens=symbol_tokens,
                   max_steps=cfg.train_max_steps or max_steps, calls=getattr(task, "calls", 0),
                   slots=getattr(task, "slots", ccfg.slots), nesting=getattr(task, "nested", False))
    return AugmentedLlama(lcfg, ccfg, split=min(cfg.split, lcfg.num_hidden_layers))


__all__ = ["budget_length", "build_model", "machine_budget", "resolve_numbers", "segment_length",
           "trainable_parameters"]
