"""``ncl bench train``: one optimizer step of the augmented model and of the plain LLaMA, with a breakdown.

A step is :func:`~ncl.training.loop.train_step`, the training loop's own, on a training batch of the task at
the run's default settings. The augmented step's time is split into:

- ``machine_fwd``: the library run in the forward pass (:meth:`NeuralComputer.run_machine
  <ncl.computer.NeuralComputer.run_machine>`, timed around the call);
- ``machine_bwd``: the backward of the autograd nodes that run created;
- ``heads``: the rest of the computer, forward (its wall-clock less the run's) and backward (its nodes less the
  run's): the tape heads, the program and argument heads, the readout;
- ``optimizer``: gradient clipping and the AdamW update;
- ``llama``: everything else, i.e. the LLaMA's layers forward and backward, the losses and the copy mixture.

Backward times come from hooks on every autograd node of the step's graph, attributed by where the node was
created: a node belongs to a region (the run, the computer) when it lies on a path from the region's outputs
back to its inputs. On CPU the autograd engine runs one node at a time, so the parts add up to the step (up
to the hooks' own cost, a few microseconds a node).
"""

from __future__ import annotations

import contextlib
import dataclasses
import statistics
import time

import torch

from ncl import tasks as task_registry
from ncl.training.config import TrainConfig
from ncl.training.data import batch_for_step, encode, tokenizer
from ncl.training.factory import build_model
from ncl.training.loop import train_step

#: ``ncl bench train``'s default task: the one the issue's targets name (sort at its default settings).
DEFAULT_TASK = "sort"
PARTS = ("llama", "heads", "machine_fwd", "machine_bwd", "optimizer")


def _tensors(obj) -> list[torch.Tensor]:
    """The tensors inside nested tuples, NamedTuples, dataclasses and lists."""
    if isinstance(obj, torch.Tensor):
        return [obj]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = [getattr(obj, f.name) for f in dataclasses.fields(obj)]
    if isinstance(obj, (tuple, list)):
        return [t for x in obj for t in _tensors(x)]
    return []


def _region(outputs, inputs) -> set:
    """The autograd nodes on paths from ``outputs``' grad_fns back to (not including) ``inputs``' grad_fns."""
    stop = {t.grad_fn for t in _tensors(inputs) if t.grad_fn is not None}
    seen, todo = set(), [t.grad_fn for t in _tensors(outputs) if t.grad_fn is not None]
    while todo:
        node = todo.pop()
        if node is None or node in seen or node in stop:
            continue
        seen.add(node)
        todo.extend(n for n, _ in node.next_functions)
    return seen


class _StepTimer:
    """Wraps a model's computer to time its run and to find the autograd nodes of the run and of the computer;
    times every backward node of a loss. Used for one step at a time."""

    def __init__(self, model):
        self.computer = model.computer
        self.sections: dict[str, float] = {}
        self.regions = {"machine": set(), "computer": set()}
        self.fwd = {"machine": 0.0, "computer": 0.0}
        comp = self.computer
        run, forward = comp.run_machine, comp.forward_incremental

        def timed_run(pi, regs, mem, *args, **kwargs):
            t = time.perf_counter()
            out = run(pi, regs, mem, *args, **kwargs)
            self.fwd["machine"] += time.perf_counter() - t
            self.regions["machine"] |= _region(out, (pi, regs, mem))
            return out

        def timed_forward(hidden, *args, **kwargs):
            t = time.perf_counter()
            out = forward(hidden, *args, **kwargs)
            self.fwd["computer"] += time.perf_counter() - t
            self.regions["computer"] |= _region(out, hidden)
            return out

        comp.run_machine, comp.forward_incremental = timed_run, timed_forward

    @contextlib.contextmanager
    def section(self, name):
        t = time.perf_counter()
        if name == "backward":
            with self._node_hooks():
                yield
        else:
            yield
        self.sections[name] = time.perf_counter() - t

    @contextlib.contextmanager
    def _node_hooks(self):
        """Times each backward node of the computer's region (found in the forward pass) while the backward runs."""
        self.bwd = {"machine": 0.0, "computer": 0.0}
        handles, started = [], {}
        nodes = self.regions["computer"] | self.regions["machine"]
        for node in nodes:
            def pre(grad_outputs, node=node):
                started[node] = time.perf_counter()

            def post(grad_inputs, grad_outputs, node=node):
                dt = time.perf_counter() - started.pop(node)
                self.bwd["computer"] += dt
                if node in self.regions["machine"]:
                    self.bwd["machine"] += dt
            handles += [node.register_prehook(pre), node.register_hook(post)]
        try:
            yield
        finally:
            for h in handles:
                h.remove()

    def breakdown(self) -> dict:
        """Seconds per part of the step just timed (:data:`PARTS`)."""
        machine_fwd, machine_bwd = self.fwd["machine"], self.bwd["machine"]
        heads = (self.fwd["computer"] - machine_fwd) + (self.bwd["computer"] - machine_bwd)
        total = sum(self.sections.values())
        optimizer = self.sections["optimizer"]
        return {"llama": total - optimizer - heads - machine_fwd - machine_bwd, "heads": heads,
                "machine_fwd": machine_fwd, "machine_bwd": machine_bwd, "optimizer": optimizer}

    def reset(self):
        self.sections = {}
        self.regions = {"machine": set(), "computer": set()}
        self.fwd = {"machine": 0.0, "computer": 0.0}
        self.bwd = {"machine": 0.0, "computer": 0.0}


def _setup(cfg: TrainConfig):
    torch.manual_seed(cfg.seed)
    model = build_model(cfg)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr)
    names = model.computer.program_names if model.has_computer else None
    target = "call" if cfg.model == "tooluse" else "answer"
    chain = model.computer.config if model.has_computer else None
    batch = encode(batch_for_step(task_registry.get(cfg.task), cfg, 0, 0), tokenizer(), names,
                   cells=cfg.computer.reader == "cells", target=target, calls=chain.calls if chain else 0,
                   slots=chain.slots if chain else 0, cue_focus=bool(chain) and chain.call_read == "text")
    return model, optimizer, batch


def _spread(xs: list[float]) -> dict:
    ms = [1e3 * x for x in xs]
    return {"median": statistics.median(ms), "min": min(ms), "max": max(ms)}


def bench_train(task: str = DEFAULT_TASK, repeats: int = 5, warmup: int = 2, progress: bool = False) -> dict:
    """Time ``repeats`` optimizer steps (after ``warmup``) of the augmented model as ``ncl train`` trains it (its
    heads learn from the labels alone: the machine runs without a backward), of the augmented model whose heads
    the answer's gradient reaches too (``ncl train --answer-grad``: the machine's backward runs) and of the plain
    LLaMA on a training batch of ``task`` at :class:`TrainConfig`'s defaults.

    Returns ``{"task", "batch_size", "repeats", "augmented": {"ms_step", "spread", "breakdown": {part: ms}},
    "augmented_answer_grad": {...the same}, "plain": {"ms_step", "spread"}, "machine_share", "step_ratio",
    "machine_share_answer_grad", "step_ratio_answer_grad"}``: medians over the repeats (``spread``: median, min
    and max of the step), the breakdown's parts (:data:`PARTS`) each a median, ``machine_share`` the run's
    forward and backward as a fraction of the augmented step, ``step_ratio`` augmented / plain.
    """
    bar = None
    if progress:
        from tqdm import tqdm  # the progress bar only

        bar = tqdm(total=3 * (repeats + warmup), desc="bench train", dynamic_ncols=True)
    result = {"task": task, "batch_size": TrainConfig().batch_size, "repeats": repeats}
    for name in ("augmented", "augmented_answer_grad", "plain"):
        cfg = TrainConfig(task=task, model="llama" if name == "plain" else "augmented")
        cfg.computer = dataclasses.replace(cfg.computer, answer_grad=name == "augmented_answer_grad")
        model, optimizer, batch = _setup(cfg)
        timer = _StepTimer(model) if name != "plain" else None
        steps, parts = [], {p: [] for p in PARTS}
        for i in range(warmup + repeats):
            clock = None
            if timer is not None:
                timer.reset()
                clock = timer.section
            t = time.perf_counter()
            train_step(model, model, optimizer, batch, cfg, clock=clock)
            dt = time.perf_counter() - t
            if i >= warmup:
                steps.append(dt)
                if timer is not None:
                    for part, seconds in timer.breakdown().items():
                        parts[part].append(seconds)
            if bar is not None:
                bar.update(1)
        entry = {"ms_step": 1e3 * statistics.median(steps), "spread": _spread(steps)}
        if timer is not None:
            entry["breakdown"] = {p: 1e3 * statistics.median(v) for p, v in parts.items()}
        result[name] = entry
    if bar is not None:
        bar.close()
    for name, suffix in (("augmented", ""), ("augmented_answer_grad", "_answer_grad")):
        aug, parts = result[name], result[name]["breakdown"]
        result["machine_share" + suffix] = (parts["machine_fwd"] + parts["machine_bwd"]) / aug["ms_step"]
        result["step_ratio" + suffix] = aug["ms_step"] / result["plain"]["ms_step"]
    return result


def format_train_bench(result: dict) -> str:
    """``bench_train``'s result as a few lines of text."""
    plain = result["plain"]
    lines = [f"one optimizer step, task {result['task']}, batch {result['batch_size']}, median of "
             f"{result['repeats']}:"]
    for name, label, suffix in (("augmented", "augmented", ""),
                                ("augmented_answer_grad", "augmented, answer grad", "_answer_grad")):
        aug = result[name]
        lines.append(f"  {label:<23}{aug['ms_step']:9.1f} ms  (min {aug['spread']['min']:.1f}, max "
                     f"{aug['spread']['max']:.1f})")
        for part, ms in aug["breakdown"].items():
            lines.append(f"    {part:<21}{ms:9.1f} ms  {100 * ms / aug['ms_step']:5.1f} %")
        lines.append(f"    the machine's share: {100 * result['machine_share' + suffix]:.1f} %; / plain: "
                     f"{result['step_ratio' + suffix]:.1f}x")
    lines.append(f"  {'plain':<23}{plain['ms_step']:9.1f} ms  (min {plain['spread']['min']:.1f}, max "
                 f"{plain['spread']['max']:.1f})")
    return "\n".join(lines)


__all__ = ["DEFAULT_TASK", "PARTS", "bench_train", "format_train_bench"]
