"""Evaluation of a run directory: ``ncl eval DIR``.

Exact-match accuracy of greedy answers on every evaluation split of the run's task (``test`` and the
out-of-distribution ones), or on any JSON-lines file of ``{"prompt": ..., "answer": ...}``, with the machine's
mean expected steps and unhalted mass (augmented models) and per-size accuracy (the task's axis).

**The gold answer is only compared with, never used to run the model.** Decoding stops at ``<eos>`` or after
:func:`answer_budget` tokens, a number read off the prompt's length; the machine's tape and step limit come from
the prompt's numbers alone (:func:`~ncl.training.machine_budget`: the most any library function may need on an
input that long), not from running the right program. The examples come from fixed seeds, so evaluating a
checkpoint twice gives the same numbers.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path

import torch

from ncl import storage
from ncl import tasks as task_registry
from ncl.tasks import SPLIT_SIZE
from ncl.tasks.base import as_asked
from ncl.training.checkpoints import load_checkpoint, load_model
from ncl.training.config import TrainConfig
from ncl.training.data import tokenizer
from ncl.training.factory import budget_length, machine_budget, segment_length
from ncl.training.tooluse import run_calls

EVAL_SEED = 1234
BATCH = 32
#: How a chain's calls are chosen: each head's argmax (``heads``, as trained), or each call's program and
#: arguments together under the library's input contracts (``contracts``: :mod:`ncl.computer.contracts`).
DECODES = ("heads", "contracts")


def eval_file_name(decode: str = "heads") -> str:
    """Where :func:`evaluate_run` writes a run's results: ``eval.json``, or ``eval-contracts.json`` under the
    contracts' decoding (so that the two sit side by side)."""
    if decode not in DECODES:
        raise ValueError(f"decode must be one of {DECODES}, got {decode!r}")
    return "eval.json" if decode == "heads" else f"eval-{decode}.json"


def decode_label(result: dict) -> str:
    """What a run's name gains in tables and plots from how its calls were chosen: ``""`` for the heads' own
    choices, ``", calls under the contracts"`` for an ``eval-contracts.json``."""
    return ", calls under the contracts" if result.get("decode", "heads") == "contracts" else ""


def decoding(model, decode: str):
    """``model`` set to choose its calls as ``decode`` says (:data:`DECODES`); ``contracts`` needs an augmented
    model with a chain of calls (``ncl train --task mix``)."""
    eval_file_name(decode)  # an unknown decode fails here
    if decode == "contracts":
        computer = getattr(model, "computer", None)
        if computer is None or not computer.config.calls:
            raise ValueError("decode 'contracts' needs an augmented model with a chain of calls (e.g. ncl train "
                             "--task mix)")
        computer.decode_under_contracts()
    return model


def answer_budget(prompt_tokens: int) -> int:
    """The most tokens a model may write for a prompt of this many tokens: room for any answer or call the tasks
    ask for (a product has at most as many digits as its operands; a call repeats the prompt's numbers) and
    ``<eos>``, fixed before the model runs."""
    return 2 * prompt_tokens + 16


def decode_answers(tok, tokens: torch.Tensor) -> list[str]:
    """The text of each row of generated ``tokens (B, L)`` up to its first ``<eos>``."""
    texts = []
    for row in tokens.tolist():
        if tok.eos_token_id in row:
            row = row[:row.index(tok.eos_token_id)]
        # ids past the tokenizer (the model's vocabulary is padded to 128) are never right: read them as <unk>
        texts.append(tok.decode([t if t < tok.vocab_size else tok.unk_token_id for t in row]))
    return texts


@torch.no_grad()
def predict(model, cfg, prompts: list[str], n: int, batch_size: int = BATCH):
    """Greedy answers to ``prompts``: ``(texts, steps, unhalted)`` (the last two empty for models without a
    computer). A ``tooluse`` model's text is the call (or chain of calls) it wrote; its answer is what the tool
    printed (None for a malformed call)."""
    tok = tokenizer()
    task = task_registry.get(cfg.task)
    texts, steps, unhalted = [], [], []
    for i in range(0, len(prompts), batch_size):
        chunk = prompts[i:i + batch_size]
        ids, mask = tok.encode_batch(chunk, add_bos=True, padding_side="left")
        limit = machine_budget(budget_length(task, max(segment_length(p) for p in chunk)), n)[1]
        tokens, comp = model.generate(ids, mask, answer_budget(ids.shape[1]), tok.eos_token_id, max_steps=limit)
        texts += decode_answers(tok, tokens)
        if comp is not None:
            steps += comp.steps.tolist()
            unhalted += comp.unhalted.tolist()
    if cfg.model == "tooluse":
        texts = [run_calls(t) for t in texts]  # one call, or a chain (composed problems)
    return texts, steps, unhalted


def score(model, cfg, prompts: list[str], answers: list[str], sizes: list[int], n: int) -> dict:
    """Accuracy and machine diagnostics of ``model`` on these prompts: ``{"accuracy", "count", "mean_steps",
    "unhalted", "by_size": {size: [correct, total]}, "steps"}`` (steps fields None without a computer)."""
    predictions, steps, unhalted = predict(model, cfg, prompts, n)
    by_size = defaultdict(lambda: [0, 0])
    correct = 0
    for p, a, s in zip(predictions, answers, sizes):
        ok = p == a
        correct += ok
        by_size[s][0] += int(ok)
        by_size[s][1] += 1
    mean = (lambda xs: sum(xs) / len(xs) if xs else None)
    return {"accuracy": correct / len(prompts) if prompts else float("nan"), "count": len(prompts),
            "mean_steps": mean(steps), "unhalted": mean(unhalted),
            "by_size": {int(k): v for k, v in sorted(by_size.items())},
            "steps": [round(x, 1) for x in steps] or None}  # rounded: eval.json files are committed


def _header(cfg, ckpt, model, decode: str = "heads") -> dict:
    chain = cfg.computer if cfg.chain else None
    return {"task": cfg.task, "model": cfg.model, "seed": cfg.seed, "decode": decode, "aux": cfg.aux,
            "labels": cfg.labels, "search": cfg.search, "search_steps": cfg.search_steps,
            "search_pointers": cfg.search_pointers, "replay": cfg.replay, "discover": cfg.discover,
            "call_separators": chain and chain.call_separators, "word_view": chain and chain.word_view,
            "word_dropout": chain and chain.word_dropout, "step_reach": chain and chain.step_reach,
            "program_norm": chain and chain.program_norm, "answer_grad": cfg.computer.answer_grad,
            "answer_grad_heads": list(cfg.computer.answer_grad_heads), "train_steps": ckpt["step"],
            "train_time_s": round(ckpt["elapsed"], 1), "params": sum(p.numel() for p in model.parameters()
                                                                    if p.requires_grad)}


def evaluate_run(run_dir, count: int = SPLIT_SIZE, splits=None, threads: int = 0, decode: str = "heads") -> dict:
    """Evaluate the checkpoint in ``run_dir`` on ``count`` examples of each of its task's evaluation splits
    (``splits``: a subset), its calls chosen as ``decode`` says (:data:`DECODES`); the result is also written to
    ``run_dir/eval.json`` (:func:`eval_file_name`).

    Returns ``{"task", "model", "seed", "decode", "aux", "labels", "search", "search_steps", "search_pointers",
    "replay", "discover", "call_separators", "word_view", "word_dropout", "step_reach", "program_norm",
    "train_steps", "train_time_s", "params",
    "splits": {split: {...}}}``.
    """
    if threads:
        torch.set_num_threads(threads)
    out = Path(run_dir, eval_file_name(decode))
    cfg = TrainConfig.from_dict(load_checkpoint(run_dir)["config"])  # the task, before a model is built
    result = None
    task = task_registry.get(cfg.task)
    for split in splits or task.eval_splits:
        task.size_range(split)  # an unknown split fails before any work
    for split in splits or task.eval_splits:
        t = time.time()
        examples = task.generate(split, count, seed=EVAL_SEED)
        prompts = [e.prompt for e in examples]
        model, cfg, ckpt = load_model(run_dir, length=max(segment_length(p) for p in prompts))
        decoding(model, decode)
        if result is None:
            result = {**_header(cfg, ckpt, model, decode), "splits": {}}
        r = score(model, cfg, prompts, [e.answer for e in examples], [e.size for e in examples], task.n)
        r["eval_time_s"] = round(time.time() - t, 1)
        result["splits"][split] = r
    storage.write_text(out, json.dumps(result))  # --reuse and ncl report read it
    return result


def read_jsonl(path, check=None) -> list[dict]:
    """The ``{"prompt": str, "answer": str}`` records of a JSON-lines file (blank lines skipped); a malformed
    line raises ``ValueError`` naming the file and line. ``check(record, where)``: more checks of a record,
    raising ``ValueError`` with ``where`` (``"file:line"``)."""
    records = []
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{number}: not JSON ({exc.msg})") from exc
        if not isinstance(record, dict):
            raise ValueError(f"{path}:{number}: expected an object with 'prompt' and 'answer'")
        for key in ("prompt", "answer"):
            if not isinstance(record.get(key), str):
                raise ValueError(f"{path}:{number}: missing or non-string field {key!r}")
        if check is not None:
            check(record, f"{path}:{number}")
        records.append(record)
    if not records:
        raise ValueError(f"{path}: no records")
    return records


def asked(task, prompt: str) -> str:
    """``prompt`` as ``task``'s model reads it: a chain's task (``calls``) asks in sentences, each ended by the
    answer cue, added where it is missing (:func:`~ncl.tasks.base.as_asked`); any other task's as given."""
    return as_asked(prompt) if getattr(task, "calls", 0) else prompt


def evaluate_file(run_dir, path, threads: int = 0, decode: str = "heads") -> dict:
    """Evaluate ``run_dir`` on the prompts of a JSON-lines file (:func:`read_jsonl`), its calls chosen as
    ``decode`` says (:data:`DECODES`): ``{..., "splits": {"data": {...}}}``, sizes being each prompt's tape
    length. A chain's prompts get the answer cue where they lack it (:func:`~ncl.tasks.base.as_asked`). Nothing is
    written."""
    if threads:
        torch.set_num_threads(threads)
    records = read_jsonl(path)
    prompts = [r["prompt"] for r in records]
    model, cfg, ckpt = load_model(run_dir, length=max(segment_length(as_asked(p)) for p in prompts))
    decoding(model, decode)
    task = task_registry.get(cfg.task)
    prompts = [asked(task, p) for p in prompts]
    lengths = [segment_length(p) for p in prompts]
    r = score(model, cfg, prompts, [r["answer"] for r in records], lengths, task.n)
    return {**_header(cfg, ckpt, model, decode), "data": str(path), "splits": {"data": r}}


def summary(result: dict) -> dict:
    """The public JSON: task, model, seed and per split accuracy / count / mean_steps / unhalted."""
    return {"task": result["task"], "model": result["model"], "seed": result.get("seed"),
            "splits": {s: {k: r[k] for k in ("accuracy", "count", "mean_steps", "unhalted")}
                       for s, r in result["splits"].items()}}


def read_eval_json(path: Path) -> dict:
    """An ``eval.json``; a damaged one raises ``ValueError`` naming the file."""
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}); delete it or run the evaluation again") from exc


def run_eval(run_dir, compare=None, count: int = SPLIT_SIZE, threads: int = 0, reuse: bool = False,
             decode: str = "heads"):
    """Evaluate ``run_dir`` (and ``compare``, another run of the same task), write the plots into ``run_dir``.

    ``reuse``: take ``eval.json`` of a run instead of evaluating it again when it exists. ``decode``: how the
    calls are chosen (:data:`DECODES`); with ``contracts`` the results go to ``eval-contracts.json`` and the
    plots are not drawn (they would replace the runs' own).
    Returns ``(results, [paths of the PNGs written])``: one result per run.
    """
    from ncl.training.plots import plot_accuracy, plot_steps  # matplotlib: only when plots are drawn

    def get(d):
        f = Path(d, eval_file_name(decode))
        if reuse and f.exists():
            return read_eval_json(f)
        return evaluate_run(d, count, threads=threads, decode=decode)

    results = [get(run_dir)]
    if compare is not None:
        other = get(compare)
        if other["task"] != results[0]["task"]:
            raise ValueError(f"--compare: {compare} is task {other['task']!r}, {run_dir} is {results[0]['task']!r}")
        results.append(other)
    if decode != "heads":
        return results, []
    written = [str(plot_accuracy(results, Path(run_dir, "accuracy.png")))]
    for r, d in zip(results, [run_dir] + ([compare] if compare else [])):
        hist = plot_steps(r, Path(d, "halting_steps.png"))
        if hist is not None:
            written.append(str(hist))
    return results, written


def comparison_table(results: list[dict]) -> str:
    """Accuracy per split, one column per run: what ``ncl eval --compare`` prints."""
    splits = list(dict.fromkeys(s for r in results for s in r["splits"]))
    head = ["split"] + [f"{r['model']} (seed {r.get('seed')})" for r in results]
    rows = [head, ["---"] * len(head)]
    for s in splits:
        rows.append([s] + [f"{100 * r['splits'][s]['accuracy']:.1f}%" if s in r["splits"] else "–" for r in results])
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


__all__ = ["BATCH", "DECODES", "EVAL_SEED", "answer_budget", "asked", "comparison_table", "decode_answers",
           "decode_label", "decoding", "eval_file_name", "evaluate_file", "evaluate_run", "predict", "read_eval_json",
           "read_jsonl", "run_eval", "score", "summary"]
