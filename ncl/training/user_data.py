"""Training and evaluating an :class:`~ncl.hf.AugmentedModel` on the user's own data: JSON lines of
``{"prompt": ..., "answer": ...}``, with optional ``"program"`` (a library function's name) and ``"args"`` (its
arguments) used as auxiliary labels for the computer's heads.

The answer's digits are written one token each (the tokenizer's own single-digit tokens), since the readout
carries one tape cell per answer token; the rest of the answer is tokenised as the tokenizer does. The tape's
labels need no field: every digit cell of the prompt is written, and the cell after a number's last digit (its
``SEP``).
"""

from __future__ import annotations

import json
import random
import re
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ncl.hf.tokens import NOT_DIGIT, computer_view, encode_text
from ncl.hf.model import read_positions
from ncl.training.evaluation import read_jsonl

IGNORE = -100


def read_records(path, program_names: list[str] | None = None) -> list[dict]:
    """The records of a JSON-lines file: ``prompt`` and ``answer`` strings, optional ``program`` (one of
    ``program_names`` when given) and ``args`` (a list of non-negative ints). Blank lines are skipped.

    Raises:
        ValueError: naming the file and line of a malformed record.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"data: no file at {path}")

    def check(record, where):
        if "program" in record and (not isinstance(record["program"], str) or
                                    (program_names is not None and record["program"] not in program_names)):
            raise ValueError(f"{where}: 'program' must name a library function ({', '.join(program_names or [])}), "
                             f"got {record['program']!r}")
        args = record.get("args")
        if args is not None and (not isinstance(args, list) or not all(isinstance(a, int) and a >= 0 for a in args)):
            raise ValueError(f"{where}: 'args' must be a list of non-negative ints, got {args!r}")

    return read_jsonl(path, check)


def answer_ids(tokenizer, text: str) -> list[int]:
    """The answer's tokens: each digit its own token, the text between digits as the tokenizer cuts it."""
    ids = []
    for part in re.split(r"(\d)", text):
        if not part:
            continue
        piece = encode_text(tokenizer, part)
        if part.isdigit() and len(piece) != 1:
            raise ValueError(f"tokenizer: the digit {part!r} is not one token, so answers cannot be written digit by "
                             f"digit")
        ids += piece
    return ids


def _special(tokenizer, name: str, required: bool = True):
    value = getattr(tokenizer, f"{name}_token_id", None)
    if value is None and required:
        raise ValueError(f"tokenizer: needs a {name} token (its {name}_token_id is None)")
    return value


def encode_records(model, records: list[dict]) -> dict:
    """Training tensors (right padded): ``input_ids``, ``attention_mask``, ``labels`` (B,T) (answer and EOS
    labelled, −100 elsewhere), ``program (B,)`` and ``args (B,A)`` (−100 where a record has none)."""
    tok = model.tokenizer
    bos, eos = _special(tok, "bos", required=False), _special(tok, "eos")
    pad = _special(tok, "pad", required=False) or 0
    rows = []
    for r in records:
        prompt = ([bos] if bos is not None else []) + encode_text(tok, r["prompt"])
        rows.append((prompt, answer_ids(tok, r["answer"]) + [eos]))
    T = max(len(p) + len(a) for p, a in rows)
    B = len(rows)
    ids = torch.full((B, T), pad, dtype=torch.long)
    mask = torch.zeros(B, T, dtype=torch.long)
    labels = torch.full((B, T), IGNORE, dtype=torch.long)
    for i, (p, a) in enumerate(rows):
        ids[i, :len(p) + len(a)] = torch.tensor(p + a)
        mask[i, :len(p) + len(a)] = 1
        labels[i, len(p):len(p) + len(a)] = torch.tensor(a)
    names = model.computer.program_names
    program = torch.tensor([names.index(r["program"]) if r.get("program") in names else IGNORE for r in records])
    width = max([len(r.get("args") or []) for r in records] + [1])
    args = torch.tensor([(r.get("args") or []) + [IGNORE] * (width - len(r.get("args") or [])) for r in records])
    return {"input_ids": ids, "attention_mask": mask, "labels": labels, "program": program, "args": args}


def aux_loss(model, batch: dict, comp) -> torch.Tensor:
    """Cross-entropies of the computer's heads (``comp``, the forward's :class:`~ncl.computer.ComputerOutput`)
    against what the records say: the program and the arguments' sources (where given), the tape's write gates
    (every digit cell and the cell after a number) and the read gates (one cell per answer token)."""
    prompt, heads = comp.heads.prompt, comp.heads
    view = computer_view(batch["input_ids"], batch["attention_mask"],
                         read_positions(batch["input_ids"], batch["attention_mask"], batch["labels"], None),
                         model.digit_table)
    loss = prompt.gate_logit.new_zeros(())
    if bool((batch["program"] >= 0).any()):
        loss = loss + F.nll_loss(torch.log(prompt.pi.clamp_min(1e-9)), batch["program"], ignore_index=IGNORE)
    args = batch["args"]
    A = min(args.shape[1], prompt.source_weights.shape[1])
    match = prompt.source_values[:, None, :] == args[:, :A, None]
    sel = match.any(-1) & (args[:, :A] >= 0)
    if bool(sel.any()):
        p = (prompt.source_weights[:, :A] * match).sum(-1)
        loss = loss - torch.log(p[sel].clamp_min(1e-9)).mean()
    P = prompt.gate_logit.shape[1]
    cells, real = view.ids[:, :P], view.mask[:, :P].bool() & ~view.read[:, :P].bool()
    digit = cells < NOT_DIGIT
    after = F.pad(digit[:, :-1], (1, 0), value=False) & ~digit
    loss = loss + F.binary_cross_entropy_with_logits(prompt.gate_logit[real], (digit | after)[real].float())
    Wp = view.prompt_width
    advance = view.read.bool().clone()
    advance[:, :Wp + 1] = False  # the first read position reads cell 0 by construction
    if bool(advance.any()):
        loss = loss + F.binary_cross_entropy_with_logits(heads.read_logit[advance], torch.ones_like(
            heads.read_logit[advance]))
    return loss


def fit(model, records: list[dict], steps: int = 300, batch_size: int = 16, lr: float = 2e-3, aux: float = 1.0,
        seed: int = 0, time_limit: float | None = None, log_every: int = 50, log=print) -> list[dict]:
    """Train ``model`` on ``records`` with AdamW (every parameter that requires grad), global gradient clipping at
    1 and the auxiliary loss weighted by ``aux``; stops after ``steps`` or ``time_limit`` seconds. Returns the
    logged metrics (``step``, ``loss``, ``lm_loss``, ``aux_loss``, ``elapsed``)."""
    if not records:
        raise ValueError("records must not be empty")
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be >= 1, got {steps} and {batch_size}")
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    rng = random.Random(seed)
    model.train()
    start, logged = time.time(), []
    for step in range(steps):
        batch = encode_records(model, [rng.choice(records) for _ in range(batch_size)])
        out = model(batch["input_ids"], batch["attention_mask"], labels=batch["labels"])
        extra = aux_loss(model, batch, out.computer) if aux and out.computer is not None else out.loss.new_zeros(())
        loss = out.loss + aux * extra
        opt.zero_grad()
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(params, 1.0)
        if torch.isfinite(norm):  # one run that blew up must not poison the weights
            opt.step()
        elapsed = time.time() - start
        last = step + 1 == steps or (time_limit is not None and elapsed > time_limit)
        if step % log_every == 0 or last:
            logged.append({"step": step, "loss": loss.item(), "lm_loss": out.loss.item(), "aux_loss": extra.item(),
                           "elapsed": round(elapsed, 1)})
            if log is not None:
                log(json.dumps(logged[-1]))
        if last:
            break
    model.eval()
    return logged


@torch.no_grad()
def predict(model, prompts: list[str], max_new_tokens: int = 16, batch_size: int = 32) -> list[str]:
    """Greedy answers to ``prompts`` (text up to EOS)."""
    tok = model.tokenizer
    bos, eos = _special(tok, "bos", required=False), _special(tok, "eos")
    pad = _special(tok, "pad", required=False) or 0
    answers = []
    for i in range(0, len(prompts), batch_size):
        rows = [([bos] if bos is not None else []) + encode_text(tok, p) for p in prompts[i:i + batch_size]]
        width = max(len(r) for r in rows)
        ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows])
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
        out = model.generate(ids, mask, max_new_tokens=max_new_tokens, eos_token_id=eos)[:, width:].tolist()
        for row in out:
            row = row[:row.index(eos)] if eos in row else row
            answers.append(tok.decode(row))
    return answers


def exact_match(model, records: list[dict], max_new_tokens: int = 16) -> float:
    """The fraction of ``records`` whose greedy answer is exactly ``answer``."""
    predictions = predict(model, [r["prompt"] for r in records], max_new_tokens)
    return sum(p == r["answer"] for p, r in zip(predictions, records)) / len(records)


__all__ = ["aux_loss", "answer_ids", "encode_records", "encode_text", "exact_match", "fit", "predict",
           "read_records"]
