"""Scarce labels (``ncl train --labels F``): which training examples carry the interface labels.

A fraction F of the training examples keeps its auxiliary targets (the program, the arguments' sources, the
tape, read and step gates: :data:`~ncl.training.data.AUX_TARGETS`); the others keep only their answer text. An
example is labelled when a hash of the run's seed and its prompt falls below F, so the choice is made once per
prompt: the same prompt is labelled at every step it is drawn, the same examples are labelled in every run of a
seed, and a resumed run chooses as the uninterrupted one did. Python's own ``hash`` is salted per process, so
the hash is SHA-256.
"""

from __future__ import annotations

import hashlib
import random

import torch

from ncl.training.data import AUX_TARGETS, batch_for_step


def label_draw(prompt: str, seed: int) -> float:
    """A number in [0, 1) fixed by ``(seed, prompt)``: the prompt is labelled in runs with F above it."""
    digest = hashlib.sha256(f"labels/{seed}/{prompt}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2 ** 64


def labelled(examples, seed: int, fraction: float) -> torch.Tensor:
    """Which of ``examples`` carry labels in a run of ``seed`` with ``--labels fraction``: a bool (B,)."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"labels must be in [0, 1], got {fraction}")
    return torch.tensor([label_draw(e.prompt, seed) < fraction for e in examples], dtype=torch.bool)


def replay_draw(seen: list, seed: int, rank: int, step: int, count: int) -> list:
    """``count`` of the labelled examples ``seen`` before ``step`` (:class:`Replay`), drawn with replacement by
    ``(seed, rank, step)``: a resumed run draws what the uninterrupted one did. Empty while none is seen."""
    if not seen or count <= 0:
        return []
    rng = random.Random(f"replay/{seed}/{rank}/{step}")
    return [seen[rng.randrange(len(seen))] for _ in range(count)]


class Replay:
    """The labelled examples of a run's stream so far, which ``--replay R`` adds R of to every batch.

    With labels on a fraction F of a stream that never repeats much, a decision that only some problems exercise
    gets few labelled examples, each seen once: at F = 0.01 on ``mix``, 37–42 in 1,500 steps (seeds 0–2) say
    where the second step of a two-call problem begins (docs/labels.md). Replaying them adds no label: the
    labelled examples are the same ones, chosen by the seed; they are seen more often.

    Args:
        task, cfg: the run's task and :class:`~ncl.training.TrainConfig` (its ``seed``, ``labels``, ``replay``).
        rank: the process's rank (each rank replays its own stream's examples).
        step: the step the run starts at: the examples of the steps before it are collected again, as the
            uninterrupted run had them.
    """

    def __init__(self, task, cfg, rank: int, step: int = 0):
        self.cfg, self.rank, self.seen = cfg, rank, []
        for s in range(step):
            self.add(batch_for_step(task, cfg, s, rank))

    def add(self, examples) -> None:
        """Keep the labelled ones of a step's ``examples``."""
        keep = labelled(examples, self.cfg.seed, self.cfg.labels).tolist()
        self.seen += [e for e, k in zip(examples, keep) if k]

    def batch(self, examples, step: int) -> list:
        """``examples`` (the stream's batch of ``step``) and ``cfg.replay`` labelled examples seen before it; the
        batch's own labelled examples are kept for later steps."""
        out = list(examples) + replay_draw(self.seen, self.cfg.seed, self.rank, step, self.cfg.replay)
        self.add(examples)
        return out


def drop_labels(batch: dict, keep: torch.Tensor, keys: tuple[str, ...] = AUX_TARGETS) -> dict:
    """``batch`` (:func:`~ncl.training.encode`) with the targets ``keys`` of the rows not in ``keep (B,)`` set
    to −100 (no target), which the losses skip. By default every auxiliary target: the inputs and the answer's
    labels are unchanged. The tool-use baseline's label is its call text, ``keys=("labels",)``. Returns a new
    dict; the tensors changed are copies."""
    if keep.dtype != torch.bool or keep.dim() != 1 or keep.shape[0] != batch["input_ids"].shape[0]:
        raise ValueError(f"keep must be a bool tensor (B,) with B = {batch['input_ids'].shape[0]}, "
                         f"got {tuple(keep.shape)} {keep.dtype}")
    out = dict(batch)
    for key in keys:
        if key in out:
            target = out[key].clone()
            target[~keep] = -100
            out[key] = target
    return out


__all__ = ["Replay", "drop_labels", "label_draw", "labelled", "replay_draw"]
