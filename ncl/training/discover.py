r"""The interface found from answers alone (``ncl train --discover N``): a search over what the computer's heads
could do, verified by running the library, whose result labels the examples it explains.

At F = 0 nothing says which prompt tokens go onto the tape, which program runs or where its arguments come from:
only the answer text. The answer's straight-through gradient does not find them (docs/labels.md: no single task
gets past its majority guess), and neither does sampling one decision at a time, since the write gates, the
program and the arguments must all be right at once before any answer matches. The search here enumerates the
joint decision in the heads' own terms and lets the library, run as plain Python on the tape, say which ones print
the answers:

- **a write rule** ``W``: the set of token pairs ``(class(t−1), class(t))`` whose token is written. That is what
  the local write gate sees (``tape_gates="local"``: the token and the one before it); a digit's class is ``D``
  (every digit enters the model as one embedding), any other token's is its text;
- **a program** ``p`` of the library;
- **its arguments' sources**: each of its parameters from one of the argument sources (the first ``arg_cells``
  tape cells, the tape length, the value 0: :func:`ncl.computer.arguments.sources`).

A hypothesis ``(W, p, sources)`` explains an example when the tape W writes from its prompt, with p run on the
sources' values, leaves the example's answer on the tape (:func:`ncl.library.symbols.text`). The search keeps
the hypotheses that explain every one of N training examples, taken in turn (the longest answers first, which
few wrong hypotheses print): the first example fixes W on its own pairs, and each later one extends the
survivors to the pairs it adds. Among the survivors it keeps the simplest: the fewest pairs written, then the
library's order of programs and sources. A hypothesis that explains one example by chance (many programs print
``1``) explains the next 31 with probability near zero.

A training example then gets the labels the hypothesis gives it (its write gates, program and argument values,
and the read gates of an answer read one cell per token, the way the search read it) when the hypothesis
explains it; the others keep none. The heads train on those labels alone, as at F = 0.01 (docs/labels.md).

It is a search with the library as an exact executor and the answers as the check, not a gradient through the
library; the tool-use baseline gets the same (:meth:`Discovered.call`: the call a hypothesis implies). Its
hypothesis space is the heads' own, so it assumes that one write rule and one call explain the task: true of a
single task, not of ``mix``, whose problems call different programs and chain several calls (refused).

Cost: with U pairs in the first example, ``2^U`` write rules times every program's choices of sources
(``S^arity``), about 1,900 for the built-in library; choices that give equal argument values run once. A
single task's first example has 7–9 pairs: 20,000–53,000 Python runs in all, 1–3 s.
"""

from __future__ import annotations

import inspect
import itertools
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import replace
from typing import NamedTuple

import torch

from ncl import library
from ncl.compiler import ExecutionError
from ncl.computer import DEFAULT_MACHINE, ComputerConfig
from ncl.machine import MachineConfig
from ncl.library.symbols import SEP, number_cells, text
from ncl.training.data import batch_for_step
from ncl.training.tooluse import TOOL_N

#: The class of every digit token: the write gate sees one shared embedding for all ten.
DIGIT = "D"
#: The class of the position before the first token.
START = "^"
#: At most this many undecided token pairs per example: the write rules number 2^pairs, each tried with about
#: 1,900 choices of program and sources (a single task has 7–9; 12 is minutes of Python).
MAX_PAIRS = 12
#: A library function running on a wrong tape may loop for long (``fib`` of a large cell): seconds allowed.
CALL_SECONDS = 0.05


class Hypothesis(NamedTuple):
    """One joint decision of the heads: ``written`` (the token pairs written), ``program`` (a library name) and
    ``sources`` (one argument source index per parameter: ``0..arg_cells−1`` a tape cell, ``arg_cells`` the tape
    length, ``arg_cells + 1`` the value 0)."""

    written: frozenset
    program: str
    sources: tuple[int, ...]

    def to_dict(self) -> dict:
        """Plain data (``discovered.json``)."""
        return {"written": sorted([list(p) for p in self.written]), "program": self.program,
                "sources": list(self.sources)}

    @classmethod
    def from_dict(cls, d: dict) -> "Hypothesis":
        """The inverse of :meth:`to_dict`."""
        return cls(frozenset(tuple(p) for p in d["written"]), d["program"], tuple(d["sources"]))


class Found(NamedTuple):
    """What :func:`discover` returns: the ``hypothesis`` kept (None: none explains every example), how many
    others explained every example too (``ties``), the ``examples`` searched and the Python ``runs`` made."""

    hypothesis: Hypothesis | None
    ties: int
    examples: int
    runs: int


def token_pairs(tokens: list[str]) -> list[tuple[str, str]]:
    """Each token's pair ``(class of the token before, class of the token)`` (:data:`DIGIT` for a digit,
    :data:`START` before the first)."""
    classes = [DIGIT if t.isdigit() else t for t in tokens]
    return list(zip([START] + classes[:-1], classes))


def tape(tokens: list[str], written, cells: int) -> list[int]:
    """The tape a write rule gives: each written token's cell (its digit, or ``SEP``) in order; a tape longer
    than ``cells`` keeps writing its last cell, as the write pointer saturates (:func:`ncl.computer.tape.shift`)."""
    out = [int(t) if t.isdigit() else SEP for t, pair in zip(tokens, token_pairs(tokens)) if pair in written]
    if len(out) > cells:
        out = out[:cells - 1] + out[-1:]
    return out


def source_values(cells_written: list[int], arg_cells: int, cells: int) -> list[int]:
    """The argument sources' values on a tape: its first ``arg_cells`` cells (0 where unwritten), its length
    (the write pointer, at most ``cells − 1``) and 0."""
    head = (cells_written + [0] * arg_cells)[:arg_cells]
    return head + [min(len(cells_written), cells - 1), 0]


@contextmanager
def _time_limit(seconds: float):
    """Raise ``TimeoutError`` in the block after ``seconds`` (only in the main thread, where signals arrive, on
    systems with interval timers)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return

    def stop(signum, frame):
        raise TimeoutError

    old = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def prints(program: str, values: tuple[int, ...], cells_written: list[int], cells: int) -> str | None:
    """The answer ``program`` leaves on the tape when run as Python on ``cells_written`` (padded with 0 to
    ``cells``) with the arguments ``values``; None when it fails (an error, or longer than :data:`CALL_SECONDS`)."""
    mem = (cells_written + [0] * cells)[:cells]
    try:
        with _time_limit(CALL_SECONDS):
            _, after = library.call_python(program, *values, mem=mem)
    except Exception:  # a wrong tape makes wrong indices, deep recursions, huge loops: the hypothesis is out
        return None
    return text(after[:cells])


def vm_prints(program: str, values: tuple[int, ...], cells_written: list[int], machine: MachineConfig) -> str | None:
    """What :func:`prints` reads, from the compiled ``program`` on the discrete VM of ``machine`` (its tape padded
    with 0 to ``machine.cells``): the run the model's computer makes, not the Python one the search makes. None
    when the VM refuses it (an argument outside ``0..n-1``, no halt, a stack overflow)."""
    mem = (cells_written + [0] * machine.cells)[:machine.cells]
    try:
        result = library.get(program, machine).execute(*values, mem=mem, engine="vm")
    except (ExecutionError, OverflowError, ValueError):
        return None
    return text(list(result.mem)[:machine.cells])


def _arity(name: str) -> int:
    return len(inspect.signature(library.source(name)).parameters)


class _Search:
    """The state of one search: the examples' tokens and answers, and a cache of Python runs."""

    def __init__(self, programs, arg_cells, cells):
        self.programs = [(p, _arity(p)) for p in programs]
        self.arg_cells, self.cells, self.runs = arg_cells, cells, 0
        self.memo: dict = {}

    def answer(self, program, values, cells_written):
        key = (program, values, tuple(cells_written))
        if key not in self.memo:
            self.runs += 1
            self.memo[key] = prints(program, values, cells_written, self.cells)
        return self.memo[key]

    def calls(self, cells_written, answer, candidates=None):
        """The (program, sources) whose run on the tape prints ``answer``: every one, or those of ``candidates``."""
        vals = source_values(cells_written, self.arg_cells, self.cells)
        if candidates is None:
            S = len(vals)
            candidates = [(p, s) for p, k in self.programs for s in itertools.product(range(S), repeat=k)]
        return [(p, s) for p, s in candidates if self.answer(p, tuple(vals[i] for i in s), cells_written) == answer]


def discover(examples: list[tuple[list[str], str]], programs: list[str], arg_cells: int, cells: int,
             progress: bool = False) -> Found:
    """Search for a hypothesis that explains every example (module docstring).

    Args:
        examples: ``(prompt tokens, answer text)`` pairs: the tokens as the model reads them (with the start
            token), the answer as the tape should spell it.
        programs: the library functions to try.
        arg_cells: the tape cells the argument heads may read (``ComputerConfig.arg_cells``).
        cells: the tape's cells (the machine's, for the longest of ``examples``).
        progress: a tqdm bar over the examples.

    Returns:
        :class:`Found`.
    """
    order = sorted(range(len(examples)), key=lambda i: (-len(examples[i][1]), -len(examples[i][0]), i))
    search = _Search(programs, arg_cells, cells)
    decided: set = set()
    survivors: list[Hypothesis] = []
    bar = None
    if progress:
        from tqdm import tqdm  # the progress bar only

        bar = tqdm(total=len(order), desc="discover", unit="example", dynamic_ncols=True)
    for n, i in enumerate(order):
        tokens, answer = examples[i]
        pairs = list(dict.fromkeys(token_pairs(tokens)))
        new = [p for p in pairs if p not in decided]
        if len(new) > MAX_PAIRS:
            raise ValueError(f"discover: an example has {len(new)} token pairs the write rule has not decided "
                             f"(at most {MAX_PAIRS}): {''.join(tokens)!r}")
        choices = [frozenset(c) for r in range(len(new) + 1) for c in itertools.combinations(new, r)]
        if n == 0:
            grouped = {w: None for w in choices}  # every call is a candidate
        else:
            grouped = {}
            for h in survivors:
                for extra in choices:
                    grouped.setdefault(h.written | extra, []).append((h.program, h.sources))
        survivors = [Hypothesis(w, p, s) for w, cands in grouped.items()
                     for p, s in search.calls(tape(tokens, w, cells), answer, cands)]
        decided.update(new)
        search.memo.clear()  # a later example's tapes differ
        if bar is not None:
            bar.update(1)
            bar.set_postfix(survivors=len(survivors), runs=search.runs)
        if not survivors:
            break
    if bar is not None:
        bar.close()
    rank = {p: k for k, p in enumerate(programs)}
    best = min(survivors, key=lambda h: (len(h.written), rank[h.program], h.sources), default=None)
    return Found(best, max(0, len(survivors) - 1), len(examples), search.runs)


class Discovered:
    """A run's search (``TrainConfig.discover`` = N): run on the first N examples of its training stream (rank 0's,
    so every rank and every resume finds the same), and the labels it gives a batch's examples.

    Args:
        task, cfg: the run's task and :class:`~ncl.training.TrainConfig`.
        tok: the tokenizer.
        programs, arg_cells, machine: the library functions to try, the tape cells the argument heads read, the
            machine they run on (its ``cells``: the tape's; :meth:`for_model` takes them from a model).
        progress: a tqdm bar over the search.

    The search runs the library as Python; the hypothesis it keeps is then run on the discrete VM, compiled for
    ``machine``, on each of the N examples, and must print the same there (else ``ValueError``): the labels
    train heads whose calls the VM's semantics run, not Python's.
    """

    def __init__(self, task, cfg, tok, programs: list[str], arg_cells: int, machine: MachineConfig,
                 progress: bool = False):
        self.tok, self.names, self.arg_cells, self.cells = tok, list(programs), arg_cells, machine.cells
        examples, step = [], 0
        while len(examples) < cfg.discover:
            examples += batch_for_step(task, cfg, step, 0)
            step += 1
        start = time.time()
        self.found = discover([(self.tokens(e.prompt), e.answer) for e in examples[:cfg.discover]], self.names,
                              self.arg_cells, self.cells, progress=progress)
        self.seconds = time.time() - start
        self.vm_checked = self._check_on_vm(examples[:cfg.discover], machine)

    def _check_on_vm(self, examples, machine: MachineConfig) -> int:
        """The examples whose answer the hypothesis prints, run again on the VM (class docstring): how many."""
        h = self.found.hypothesis
        if h is None:
            return 0
        checked = 0
        for e in examples:
            cells_written = tape(self.tokens(e.prompt), h.written, self.cells)
            values = source_values(cells_written, self.arg_cells, self.cells)
            args = tuple(values[s] for s in h.sources)
            python = prints(h.program, args, cells_written, self.cells)
            if python != e.answer:
                continue
            on_vm = vm_prints(h.program, args, cells_written, machine)
            if on_vm != python:
                raise ValueError(f"discover: {h.program}{args} prints {python!r} as Python and {on_vm!r} on the VM "
                                 f"for {e.prompt!r}: the library's Python and compiled semantics disagree")
            checked += 1
        return checked

    @classmethod
    def for_model(cls, task, cfg, tok, module, progress: bool = False) -> "Discovered":
        """The search in ``module``'s terms: an augmented model's programs, argument cells and tape
        (its :class:`~ncl.computer.NeuralComputer`'s); the tool-use baseline's, the functions its VM runs on the
        digit tape (:func:`ncl.library.bounded_names`) on a tape as long as its VM's."""
        if module.has_computer:
            c = module.computer
            return cls(task, cfg, tok, c.program_names, c.config.arg_cells, c.config.machine, progress)
        return cls(task, cfg, tok, library.bounded_names(), ComputerConfig().arg_cells,
                   replace(DEFAULT_MACHINE, n=TOOL_N, cells=TOOL_N), progress)

    def tokens(self, prompt: str) -> list[str]:
        """The prompt's tokens as the model reads them, the start token first."""
        return [self.tok.id_to_token(t) for t in [self.tok.bos_token_id] + self.tok.encode(prompt)]

    def record(self) -> dict:
        """Plain data for ``discovered.json``."""
        h = self.found.hypothesis
        return {"hypothesis": h.to_dict() if h is not None else None, "ties": self.found.ties,
                "examples": self.found.examples, "runs": self.found.runs, "seconds": round(self.seconds, 2),
                "vm_checked": self.vm_checked}

    def explains(self, e) -> bool:
        """Whether the hypothesis prints ``e``'s answer (an :class:`~ncl.tasks.Example`)."""
        h = self.found.hypothesis
        if h is None:
            return False
        cells_written = tape(self.tokens(e.prompt), h.written, self.cells)
        values = source_values(cells_written, self.arg_cells, self.cells)
        return prints(h.program, tuple(values[s] for s in h.sources), cells_written, self.cells) == e.answer

    def relabel(self, full: dict, dropped: dict, examples, rows: torch.Tensor) -> tuple[dict, torch.Tensor]:
        """The batch ``dropped`` (:func:`~ncl.training.labels.drop_labels` of ``full``) with the labels the
        hypothesis gives each of ``rows (B,)`` that it explains: the write gates of its rule, its program, its
        arguments' values, and from ``full`` the read gates (one cell per answer token, as the search read the
        answer) and the prompt tokens' digits (their ids'). Returns the new batch and the rows explained (B,)."""
        h = self.found.hypothesis
        explained = torch.tensor([bool(r) and self.explains(e) for e, r in zip(examples, rows.tolist())],
                                 dtype=torch.bool)
        out = dict(dropped)
        if not bool(explained.any()):
            return out, explained
        gate, program = out["gate"].clone(), out["program"].clone()
        args = torch.full((len(examples), max(out["args"].shape[1], len(h.sources))), -100, dtype=torch.long)
        args[:, :out["args"].shape[1]] = out["args"]
        last = int(full["read_mask"].nonzero()[:, 1].min())  # every prompt ends in this column (left padded)
        for i in explained.nonzero()[:, 0].tolist():
            tokens = self.tokens(examples[i].prompt)
            cells_written = tape(tokens, h.written, self.cells)
            values = source_values(cells_written, self.arg_cells, self.cells)
            off = last + 1 - len(tokens)
            gate[i, off:last + 1] = torch.tensor([int(p in h.written) for p in token_pairs(tokens)])
            program[i] = self.names.index(h.program)
            args[i] = -100
            args[i, :len(h.sources)] = torch.tensor([values[s] for s in h.sources])
        out.update(gate=gate, program=program, args=args)
        for key in ("read_gate", "digit", "digit_gate"):
            target = out[key].clone()
            target[explained] = full[key][explained]
            out[key] = target
        return out, explained

    def call(self, e) -> str | None:
        """The tool-use baseline's call for ``e`` under the hypothesis, ``long_add(42, 5)``, when the hypothesis
        prints ``e``'s answer and a call can say it: the tool runs its program on the whole tape of the call's
        numbers (:func:`ncl.training.tooluse.run_call`), so the hypothesis must read the whole tape, and its tape
        must be numbers, each ended by ``SEP``. Else None."""
        h = self.found.hypothesis
        if h is None or not self.explains(e):
            return None
        cells_written = tape(self.tokens(e.prompt), h.written, self.cells)
        values = source_values(cells_written, self.arg_cells, self.cells)
        numbers = "".join(str(c) if c < 10 else " " for c in cells_written).split()
        if (tuple(values[s] for s in h.sources) != (0, len(cells_written))
                or number_cells(int(x) for x in numbers) != cells_written):
            return None
        return f"{h.program}({', '.join(numbers)})"

    def relabel_calls(self, examples, rows: torch.Tensor) -> tuple[list, torch.Tensor]:
        """``examples`` with the call of each of ``rows (B,)`` that the hypothesis explains (:meth:`call`) as its
        label (its ``program`` and ``numbers``), and the rows explained (B,)."""
        out, explained = list(examples), []
        for i, (e, r) in enumerate(zip(examples, rows.tolist())):
            call = self.call(e) if r else None
            explained.append(call is not None)
            if call is not None:
                name, numbers = call[:call.index("(")], call[call.index("(") + 1:-1]
                out[i] = replace(e, program=name, numbers=tuple(int(x) for x in numbers.split(", ") if x))
        return out, torch.tensor(explained, dtype=torch.bool)


__all__ = ["CALL_SECONDS", "DIGIT", "Discovered", "Found", "Hypothesis", "MAX_PAIRS", "START", "discover", "prints",
           "source_values", "tape", "token_pairs", "vm_prints"]
