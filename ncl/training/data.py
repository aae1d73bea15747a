"""Training data: the tokenizer, the batches of a step, and their encoding as tensors (inputs, labels and the
auxiliary targets of the computer's heads).

Batches are drawn from a generator seeded by ``(seed, rank, step)``, not from a running RNG, so a resumed run
sees the same batches as an uninterrupted one and resumes bit-exactly.
"""

from __future__ import annotations

import random

import torch

from ncl.tokenizers import CharTokenizer
from ncl.training.config import TrainConfig

#: The auxiliary targets :func:`encode` gives: the interface labels, which ``--labels F`` keeps on a fraction F of
#: the examples (:mod:`ncl.training.labels`). The inputs and the answer's ``labels`` are not among them.
AUX_TARGETS = ("program", "args", "gate", "value", "read_gate", "digit", "digit_gate", "call_program", "call_args",
               "call_halt", "operand_end", "call_focus", "step_end", "step_nest", "step_join")


def tokenizer() -> CharTokenizer:
    """The tokenizer of every run (characters; digits are single tokens)."""
    return CharTokenizer()


def _numbers_end(tokens: list[str]) -> list[int]:
    """Indices of prompt tokens that end a number: the first token that is not a digit after one (a space in
    the benchmark's prompts; a comma or a question mark too in natural language)."""
    return [i for i in range(1, len(tokens)) if not tokens[i].isdigit() and tokens[i - 1].isdigit()]


def _written(tokens: list[str], cells: bool) -> list[int]:
    """The prompt tokens the tape writer should write: every digit and every number's end on the digit tape
    (``cells``), only the number's end (where its value is complete) otherwise."""
    ends = set(_numbers_end(tokens))
    return [i for i, t in enumerate(tokens) if i in ends or (cells and t.isdigit())]


def _chain_targets(e, toks: list[str], names: list[str], K: int, A: int,
                   cue_focus: bool) -> tuple[list, list, list, list[int], list]:
    """A composed problem's chain labels (:mod:`ncl.computer.calls` indices: segment 0 empty, operands from 1,
    call k's result at 1 + (K + 1) + k): per call its program, its A slots' segments (the empty one for an
    unused slot) and whether it halts (−100 past the last call); the prompt tokens that end an operand; and per
    call where its heads read (−100 past the last call or without ``e.spans``): the first token after its step
    phrase (a comma, a full stop; with ``cue_focus`` the answer cue for the call whose phrase is last in the
    text: the last call's, or a nested problem's first), whose state has read the whole step."""
    program, args, halt = [-100] * K, [[-100] * A for _ in range(K)], [-100] * K
    focus = [-100] * K
    spans = getattr(e, "spans", ())
    if spans:
        sizes = [0] + [len(t) for t in toks[1:]]  # <bos> holds no character
        after = [sum(sizes[:i + 1]) for i in range(len(toks))]  # the character after each token
        at = (lambda char: next(i for i in range(1, len(toks)) if after[i] > char))
        for k, (_, end) in enumerate(spans[:K]):
            focus[k] = at(end)
        if cue_focus:  # the last step ends at the answer cue, the last token the heads read
            last = max(range(min(len(spans), K)), key=lambda k: spans[k][1])
            focus[last] = len(toks) - 2
    O = len(e.operands)
    for k, call in enumerate(e.calls[:K]):
        program[k] = names.index(call.program)
        slots = [1 + s if s < O else 1 + (K + 1) + s - O for s in call.args]
        if len(slots) > A:
            raise ValueError(f"composed prompt {e.prompt!r}: call {k + 1} takes {len(slots)} operands, the chain "
                             f"has {A} slots")
        args[k] = slots + [0] * (A - len(slots))
        halt[k] = int(k == len(e.calls) - 1)
    ends = _numbers_end(toks)
    counts = [len(op) if isinstance(op, tuple) else 1 for op in e.operands]
    if len(ends) != sum(counts):
        raise ValueError(f"composed prompt {e.prompt!r}: its text has {len(ends)} numbers, its operands "
                         f"{sum(counts)}")
    return program, args, halt, [ends[sum(counts[:j + 1]) - 1] for j in range(O)], focus


def encode(examples, tok: CharTokenizer, program_names: list[str] | None = None, with_answer: bool = True,
           cells: bool = True, target: str = "answer", calls: int = 0, slots: int = 2, cue_focus: bool = False):
    """Tensors for a batch: prompts left padded (so all end in column P), targets + EOS right padded.

    Args:
        examples: :class:`~ncl.tasks.Example` list.
        tok: the tokenizer.
        program_names: the library's program order (for the ``program`` target); None leaves it out.
        with_answer: append the targets (training); False gives the prompts alone (generation).
        cells: the digit tape's labels (every digit and number end written, one answer token per cell)
            instead of one value per number.
        target: ``"answer"`` (the answer text) or ``"call"`` (the tool-use baseline's call text).
        calls: K > 0 for a model with a chain of K calls: composed examples (:class:`~ncl.tasks.compose.Composed`)
            then also give ``call_program (B,K)``, ``call_args (B,K,slots)``, ``call_halt (B,K)`` and
            ``operand_end (B,T)`` (1 at a prompt token whose cell ends an operand, 0 at the other tokens
            written; −100 = none), ``call_focus (B,K)`` (the token where each call's heads should read: the
            first after its step phrase, or with ``cue_focus`` the answer cue for the call whose phrase ends the
            text, as ``call_read="text"`` heads read it; −100 = none), ``step_end (B,T)`` (1 at the
            ``call_focus`` tokens, 0 at the other prompt tokens, −100 = none) and ``step_nest (B,T)`` (at the
            ``call_focus`` tokens but the answer cue: 1 in a nested problem,
            :attr:`~ncl.tasks.compose.Composed.nested`, 0 in another; −100 elsewhere) and ``step_join (B,T)``
            (``step_end``, but 0 at a step end whose token holds no comma: the joins of ``, then``).

    Returns a dict: ``input_ids, attention_mask, read_mask, labels`` (B,T) (``labels[:, t]`` is the token
    predicted at t, −100 where nothing is), and the auxiliary targets ``program (B,)``, ``args (B,A)``,
    ``gate (B,T)`` (−100 = no target), ``value (B,T)`` (−100 = none), ``read_gate (B,T)`` (−100 = none),
    ``digit (B,T)`` (each prompt token's digit, 10 = not a digit; −100 = none) and ``digit_gate (B,T)``
    (−100 = none).
    """
    if target not in ("answer", "call"):
        raise ValueError(f"target must be 'answer' or 'call', got {target!r}")
    prompts = [[tok.bos_token_id] + tok.encode(e.prompt) for e in examples]
    texts = [e.answer if target == "answer" else e.call for e in examples]
    answers = [tok.encode(t) + [tok.eos_token_id] for t in texts] if with_answer else [[] for _ in examples]
    P = max(len(p) for p in prompts)
    A = max(len(a) for a in answers)
    B, T = len(examples), P + A
    ids = torch.full((B, T), tok.pad_token_id, dtype=torch.long)
    mask = torch.zeros(B, T, dtype=torch.long)
    labels = torch.full((B, T), -100, dtype=torch.long)
    gate, value, read_gate, digit, digit_gate = (torch.full((B, T), -100, dtype=torch.long) for _ in range(5))
    read = torch.zeros(B, T, dtype=torch.long)
    read[:, P - 1:] = 1
    for i, (e, p, a) in enumerate(zip(examples, prompts, answers)):
        off = P - len(p)
        ids[i, off:P] = torch.tensor(p)
        mask[i, off:P + len(a)] = 1
        if a:
            ids[i, P:P + len(a)] = torch.tensor(a)
            labels[i, P - 1:P - 1 + len(a)] = torch.tensor(a)
        toks = [tok.id_to_token(t) for t in p]
        gate[i, off:P] = 0
        digit[i, off:P] = torch.tensor([int(s) if s.isdigit() else 10 for s in toks])  # 10: not a digit
        for k in _written(toks, cells):
            gate[i, off + k] = 1
        if not cells:  # each number's value, at the token that ends it
            for j, k in enumerate(_numbers_end(toks)):
                value[i, off + k] = e.numbers[j]
        # the read pointer: on the digit tape it moves one cell per answer token; otherwise at each separator
        seq = [tok.id_to_token(t) for t in p[-1:] + a[:-1]]
        for j, s in enumerate(seq):
            # none at j = 0: the first read position reads cell 0 by construction (NeuralComputer.readout)
            read_gate[i, P - 1 + j] = int(cells or s == " ") if j > 0 else -100
            digit_gate[i, P - 1 + j] = int(j > 0 and s.isdigit() and not cells)
    out = {"input_ids": ids, "attention_mask": mask, "read_mask": read, "labels": labels, "gate": gate,
           "value": value, "read_gate": read_gate, "digit": digit, "digit_gate": digit_gate}
    if program_names is not None:
        out["program"] = torch.tensor([program_names.index(e.program) for e in examples])
    if calls and program_names is not None:
        chain = [_chain_targets(e, [tok.id_to_token(t) for t in p], program_names, calls, slots, cue_focus)
                 for e, p in zip(examples, prompts)]
        out["call_program"] = torch.tensor([c[0] for c in chain])
        out["call_args"] = torch.tensor([c[1] for c in chain])
        out["call_halt"] = torch.tensor([c[2] for c in chain])
        end = torch.where(gate == 1, 0, -100)
        for i, (c, p) in enumerate(zip(chain, prompts)):
            for k in c[3]:
                end[i, P - len(p) + k] = 1
        out["operand_end"] = end
        out["call_focus"] = torch.tensor([[t + P - len(p) if t >= 0 else -100 for t in c[4]]  # in the batch
                                          for c, p in zip(chain, prompts)])
        step = torch.where(mask[:, :P] > 0, 0, -100)
        step = torch.cat([step, torch.full((B, T - P), -100)], 1)
        nest = torch.full((B, T), -100, dtype=torch.long)
        join = step.clone()
        for i, (e, c) in enumerate(zip(examples, chain)):
            if c[4][0] < 0:  # no spans: no labels
                step[i] = join[i] = -100
            for t in c[4]:
                if t >= 0:
                    step[i, P - len(prompts[i]) + t] = 1
                    join[i, P - len(prompts[i]) + t] = int("," in tok.id_to_token(prompts[i][t]))
                    if t != len(prompts[i]) - 2:  # the answer cue ends every problem's last step
                        nest[i, P - len(prompts[i]) + t] = int(getattr(e, "nested", False))
        out["step_end"] = step
        out["step_nest"] = nest
        out["step_join"] = join
    width = max(len(e.args) for e in examples)
    out["args"] = torch.tensor([list(e.args) + [-100] * (width - len(e.args)) for e in examples])
    return out


def batch_for_step(task, cfg: TrainConfig, step: int, rank: int):
    """The training examples of ``step`` on ``rank`` (independent of any running RNG state)."""
    rng = random.Random(f"train/{cfg.task}/{cfg.seed}/{rank}/{step}")
    return [task.sample("train", rng) for _ in range(cfg.batch_size)]


__all__ = ["AUX_TARGETS", "batch_for_step", "encode", "tokenizer"]
