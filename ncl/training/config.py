"""``TrainConfig``: everything a training run depends on, with the computer's configuration nested in it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace

from ncl import tasks as task_registry
from ncl.computer import ComputerConfig
from ncl.computer.config import LEGACY_HEADS
from ncl.llama import preset_names

MODELS = ("augmented", "llama", "tooluse")
NUMBERS = ("auto", "learned", "tokens")
SCHEDULES = ("steps", "time")

#: The keys of :class:`~ncl.computer.ComputerConfig` a flat (pre-nesting) training config held at its top level.
FLAT_COMPUTER_KEYS = ("mode", "top_k", "reader", "writer")


def default_computer() -> ComputerConfig:
    """The computer a run trains by default: the digit tape (reader and writer ``"cells"``: one cell per digit,
    numbers of any length), the heads trained by their labels alone (``answer_grad=False``: with every interface
    signal labelled, the answer's straight-through gradient only added failures, docs/results.md), otherwise
    :class:`ComputerConfig`'s defaults. The machine's value range, tape and
    step limit are set per task and input size when the model is built (:func:`~ncl.training.machine_budget`).
    """
    return ComputerConfig(reader="cells", writer="cells", answer_grad=False)


@dataclass
class TrainConfig:
    """Everything a run depends on (saved in the checkpoint; ``--resume`` keeps the saved one).

    ``preset`` names a :func:`ncl.llama.LlamaConfig.preset`; ``layers``/``hidden`` override its depth and
    width (0 keeps the preset's). ``aux`` weights the auxiliary supervision of the computer's heads (the
    program, arguments, tape gates and values, read gates: what the task knows the machine should receive);
    0 trains from the answer text alone. ``labels`` is the fraction F of the training examples that carry those
    labels (chosen once per prompt by the seed: :mod:`ncl.training.labels`); the others train from their answer
    alone: the LLaMA and the readout always, the heads with ``computer.answer_grad`` (needed at F = 0).
    The tool-use baseline's label is its call: with F < 1 the others train it by REINFORCE on the answer
    (:mod:`ncl.training.reinforce`). ``search`` = M > 0 (a chain of calls, F < 1): the programs whose call
    prints an unlabelled example's answer, found by running each call's M most likely other programs on the
    machine, train the program heads (:mod:`ncl.training.search`); ``search_steps``: for those whose chain is
    wrong, the step ends whose single change makes it print the answer train the step-end gate, and with
    ``search_pointers`` the single changes of an argument train the pointers. ``replay`` = R adds R of the
    labelled examples seen so far to each batch (:class:`ncl.training.labels.Replay`). ``discover`` = N > 0 (a
    single call, F < 1): a search on the first N training examples finds a write rule, program and arguments that
    print their answers, and labels every unlabelled example whose answer it prints
    (:mod:`ncl.training.discover`).

    ``schedule`` says what the learning rate's cosine decays over: ``"steps"`` (``steps`` optimizer steps; the
    time limit is a safety stop) or ``"time"`` (the ``time_limit`` seconds of training, which then end the run;
    ``steps`` is only a cap). ``"time"`` gives models whose steps cost differently the same wall-clock budget,
    each with a finished schedule: the benchmark's baselines train for the augmented model's time this way.

    ``model``: ``"augmented"`` (the LLaMA with the computer), ``"llama"`` (the plain LLaMA, trained on the
    answers) or ``"tooluse"`` (the plain LLaMA trained to write the library call, ``long_add(4071, 98)``, which
    the discrete VM runs and a fixed printer prints: :mod:`ncl.training.tooluse`).

    ``computer`` is the augmented model's :class:`~ncl.computer.ComputerConfig` (which holds the
    :class:`~ncl.machine.MachineConfig`): its ``mode``, ``top_k``, ``reader`` (``"digits"``: the heads classify
    digits and a fixed base-10 recurrence accumulates them; ``"mlp"``: one head per token maps the hidden state
    to a value), ``writer`` and machine sizes are used as they are. Two of its fields are the run's to decide,
    so :func:`~ncl.training.build_model` sets them: ``max_steps`` (from ``train_max_steps``: the machine's step
    limit in training, 0 = :func:`~ncl.training.machine_budget` of the longest training input) and
    ``digit_tokens`` (from ``numbers``, which needs the tokenizer; leave it empty here).

    ``numbers`` says how the augmented model maps digit tokens to and from machine values: ``"learned"`` (heads
    learn which token is which digit, the decoder learns to spell readouts), ``"tokens"`` (the token ids say
    which digit a token is, every digit enters the LLaMA alike, answers copy the readout's digits:
    :class:`~ncl.computer.ComputerConfig`'s ``digit_tokens``) or ``"auto"``: ``"tokens"`` exactly when the
    training data lacks some digit (no learned head can read or write a digit it never saw: fib's training
    examples, k <= 4, hold only the digits 0–4), else ``"learned"``. See :func:`~ncl.training.resolve_numbers`.
    """

    task: str = "long_add"
    model: str = "augmented"
    preset: str = "tiny"
    layers: int = 4
    hidden: int = 0
    split: int = 2
    steps: int = 1500
    batch_size: int = 16
    lr: float = 2e-3
    warmup: int = 20
    weight_decay: float = 0.0
    clip: float = 1.0
    aux: float = 1.0
    labels: float = 1.0
    search: int = 0
    search_steps: bool = False
    search_pointers: bool = False
    replay: int = 0
    discover: int = 0
    computer: ComputerConfig = field(default_factory=default_computer)
    numbers: str = "tokens"
    train_max_steps: int = 0
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 100
    time_limit: float = 840.0
    schedule: str = "steps"
    threads: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def chain(self) -> bool:
        """Whether the task is a chain of library calls (its task has ``calls``: ``mix``, ``compose``), where the
        program search applies and scarce labels get its defaults (``ncl train``)."""
        return bool(getattr(task_registry.get(self.task), "calls", 0))

    def validate(self) -> None:
        task_registry.get(self.task)
        if self.model not in MODELS:
            raise ValueError(f"unknown model {self.model!r}; choose one of: {', '.join(MODELS)}")
        if self.preset not in preset_names():
            raise ValueError(f"unknown preset {self.preset!r}; choose one of: {', '.join(preset_names())}")
        if not isinstance(self.computer, ComputerConfig):
            raise ValueError(f"computer must be a ComputerConfig, got {type(self.computer).__name__}")
        if self.computer.digit_tokens:
            raise ValueError("computer.digit_tokens is set from numbers (pass numbers='tokens'); leave it empty")
        if self.numbers not in NUMBERS:
            raise ValueError(f"unknown numbers {self.numbers!r}; choose one of: {', '.join(NUMBERS)}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; choose one of: {', '.join(SCHEDULES)}")
        if self.train_max_steps < 0:
            raise ValueError(f"train_max_steps must be >= 0 (0: automatic), got {self.train_max_steps}")
        for name in ("steps", "batch_size", "log_every", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0 or self.clip <= 0 or self.aux < 0 or self.time_limit <= 0:
            raise ValueError("lr, clip and time_limit must be > 0 and aux >= 0")
        if not 0.0 <= self.labels <= 1.0:
            raise ValueError(f"labels must be a fraction in [0, 1], got {self.labels}")
        if self.labels < 1 and self.model == "llama":
            raise ValueError("labels < 1: the plain LLaMA trains on answers alone, it has no interface labels")
        if self.search < 0:
            raise ValueError(f"search must be >= 0 (0: no search), got {self.search}")
        if self.replay < 0 or (self.replay and self.labels in (0.0, 1.0)):
            raise ValueError(f"replay: adds labelled examples to each batch: needs 0 < labels < 1, got "
                             f"replay={self.replay}, labels={self.labels}")
        for name, what in (("search", "programs"), ("search_steps", "step ends"), ("search_pointers", "arguments")):
            if getattr(self, name) and (self.model != "augmented" or self.labels == 1 or not self.chain):
                raise ValueError(f"{name}: searches the {what} of a chain of calls (an augmented model on a task with "
                                 f"calls, e.g. mix) for the examples without labels (labels < 1)")
        if self.discover < 0:
            raise ValueError(f"discover must be >= 0 (0: no search), got {self.discover}")
        if self.discover and (self.model == "llama" or self.labels == 1 or self.chain or (
                self.model == "augmented" and (self.aux == 0 or self.computer.reader != "cells"))):
            raise ValueError("discover: labels the examples without labels (labels < 1) of a single call (not a "
                             "chain such as mix), for the tool-use baseline or an augmented model with aux > 0 and "
                             "the digit tape (reader 'cells')")
        if not self.computer.answer_grad and (self.aux == 0 or (self.labels == 0 and not self.discover)):
            raise ValueError("aux=0, or labels=0 without discover, needs computer.answer_grad=True (ncl train --aux 0 "
                             "and --labels 0 --discover 0 set it): with answer_grad=False (the default) nothing else "
                             "trains the heads")

    def to_dict(self) -> dict:
        """Plain data (the nested form): what checkpoints and ``config.json`` store."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """The inverse of :meth:`to_dict`; also reads the flat form of runs saved before the computer's
        configuration was nested (``mode``, ``top_k``, ``reader``, ``writer`` at the top level), and runs saved
        before ``reader``, ``writer`` and ``numbers`` existed (they read with the MLP head, wrote embeddings,
        learned every digit and gave the heads the answer's gradient). Unknown keys are ignored."""
        d = dict(d)
        if "computer" in d:
            computer = d.pop("computer")
            computer = computer if isinstance(computer, ComputerConfig) else ComputerConfig.from_dict(computer)
        else:  # the flat form: the computer's options at the top level, its machine the default
            old = {"reader": "mlp", "writer": "embed", "answer_grad": True, **LEGACY_HEADS,  # all trained with these
                   **{k: d[k] for k in FLAT_COMPUTER_KEYS if k in d}}
            computer = replace(default_computer(), **old)
        d = {"numbers": "learned", **d}
        known = {f.name for f in fields(cls)} - {"computer"}
        return cls(computer=computer, **{k: v for k, v in d.items() if k in known})


__all__ = ["FLAT_COMPUTER_KEYS", "MODELS", "NUMBERS", "SCHEDULES", "TrainConfig", "default_computer"]
