"""The model of a :class:`~ncl.training.TrainConfig`, and the two things about it that the task decides: how
numbers are read and written (:func:`resolve_numbers`) and the machine's step limit (:func:`auto_max_steps`)."""

from __future__ import annotations

import random
from dataclasses import replace

import ncl.library
from ncl import tasks as task_registry
from ncl.augmented import AugmentedLlama, PlainLlama
from ncl.computer import DEFAULT_MACHINE
from ncl.llama import LlamaConfig
from ncl.machine import MachineConfig
from ncl.training.config import TrainConfig
from ncl.training.data import tokenizer


def resolve_numbers(cfg: TrainConfig, samples: int = 512) -> str:
    """``cfg.numbers``, with ``"auto"`` decided from the data: ``"tokens"`` when ``samples`` training examples
    (prompts and answers) do not hold all ten digits, else ``"learned"``."""
    if cfg.numbers != "auto":
        return cfg.numbers
    seen = set()
    for e in task_registry.get(cfg.task).generate("train", samples, seed=cfg.seed):
        seen.update(c for c in e.prompt + e.answer if c.isdigit())
    return "learned" if len(seen) == 10 else "tokens"


def build_model(cfg: TrainConfig):
    """The model of ``cfg``: :class:`~ncl.augmented.AugmentedLlama` or the :class:`~ncl.augmented.PlainLlama`
    baseline, same LLaMA size. The computer is ``cfg.computer`` with ``digit_tokens`` from ``cfg.numbers`` and
    ``max_steps`` from ``cfg.train_max_steps`` (0: :func:`auto_max_steps`)."""
    over = {"vocab_size": max(128, tokenizer().vocab_size)}
    if cfg.layers:
        over["num_hidden_layers"] = cfg.layers
    if cfg.hidden:
        base = LlamaConfig.preset(cfg.preset)
        over.update(hidden_size=cfg.hidden, intermediate_size=2 * cfg.hidden,
                    head_dim=cfg.hidden // base.num_attention_heads)
    lcfg = LlamaConfig.preset(cfg.preset, **over)
    if cfg.model == "llama":
        return PlainLlama(lcfg)
    ccfg = cfg.computer
    digit_tokens = ()
    if resolve_numbers(cfg) == "tokens":
        if ccfg.reader != "digits" or ccfg.writer != "digits":
            raise ValueError("numbers='tokens' needs reader='digits' and writer='digits' (pass --numbers learned "
                             "to use other readers or writers)")
        digit_tokens = tuple(tokenizer().token_to_id(str(i)) for i in range(10))
    max_steps = cfg.train_max_steps or auto_max_steps(task_registry.get(cfg.task), machine=ccfg.machine)
    ccfg = replace(ccfg, digit_tokens=digit_tokens, max_steps=max_steps)
    return AugmentedLlama(lcfg, ccfg, split=min(cfg.split, lcfg.num_hidden_layers))


def auto_max_steps(task, samples: int = 64, split: str = "train", machine: MachineConfig | None = None) -> int:
    """The machine's step limit on ``split``: 1.25 times the most steps the right program takes on examples of
    the split (run on the VM of ``machine``, default the computer's, including the split's largest size), plus 10.

    In training (``split="train"``) it stops a wrong candidate early instead of letting it run for the eval
    limit (long runs cost time and can overflow fp32 gradients). :func:`ncl.training.evaluate_split` uses it
    for the OOD splits whose right runs are longer than its fixed limit (fib at 4x: 33,523 steps for k = 16).
    """
    mcfg = DEFAULT_MACHINE if machine is None else machine
    fn = ncl.library.get(task.program, mcfg)
    low, high = task.size_range(split)
    examples = task.generate(split, samples, seed=99) + [task.make(random.Random(0), high)]
    worst = 0
    for e in examples:
        tape = list(e.tape) + [0] * (mcfg.cells - len(e.tape))
        if task.axis == "length":  # the worst case of a sort: a descending list
            tape[:len(e.tape)] = sorted(e.tape, reverse=True)
        # the VM's own default limit (1000) is below the deeper splits' runs; library programs always halt
        worst = max(worst, fn.program.execute(*e.args, mem=tape, engine="vm", max_steps=10**6).steps)
    return int(1.25 * worst) + 10


__all__ = ["auto_max_steps", "build_model", "resolve_numbers"]
