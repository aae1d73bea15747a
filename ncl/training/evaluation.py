"""Evaluation of a run directory: ``ncl eval DIR``.

Exact-match accuracy of greedy answers on every split (``test``, ``ood_2x``, ``ood_4x``), the machine's mean
expected steps and unhalted mass (augmented models), per-size accuracy (the task's axis), and PNG plots:
accuracy against size (one line per run, so ``--compare`` puts both models on one figure) and a histogram
of halting steps. The examples come from fixed seeds, so evaluating a checkpoint twice gives the same numbers.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path

import torch

from ncl import storage
from ncl import tasks as task_registry
from ncl.training.checkpoints import load_model
from ncl.training.data import encode, tokenizer
from ncl.training.factory import auto_max_steps

EVAL_SPLITS = ("test", "ood_2x", "ood_4x")
EVAL_SEED = 1234
EVAL_MAX_STEPS = 20000  #: the machine's default step limit in evaluation (raised per split where needed)


def _max_answer_tokens(examples, tok) -> int:
    # room for the longest answer of the split, plus EOS and a little slack: a model that runs on is wrong anyway
    return max(len(tok.encode(e.answer)) for e in examples) + 4


@torch.no_grad()
def evaluate_split(model, cfg, split: str, count: int, batch_size: int = 32, max_steps: int | None = None) -> dict:
    """Accuracy and machine diagnostics of ``model`` on ``count`` examples of ``split``.

    ``max_steps`` limits each machine run; by default :data:`EVAL_MAX_STEPS`, or more where the right program
    needs more on this split (:func:`ncl.training.auto_max_steps`: fib's recursion at 4x depth runs up to 33,523
    steps), so that a right program is never cut off.

    Returns ``{"accuracy", "mean_steps", "unhalted", "count", "by_size": {size: [correct, total]},
    "steps": [per-example expected steps]}`` (steps fields are None for the baseline).
    """
    task = task_registry.get(cfg.task)
    tok = tokenizer()
    if max_steps is None:
        max_steps = max(EVAL_MAX_STEPS, auto_max_steps(task, split=split, machine=model.computer.config.machine)) if model.has_computer else EVAL_MAX_STEPS
    examples = task.generate(split, count, seed=EVAL_SEED)
    correct, steps, unhalted = [], [], []
    by_size = defaultdict(lambda: [0, 0])
    for i in range(0, len(examples), batch_size):
        chunk = examples[i:i + batch_size]
        b = encode(chunk, tok, with_answer=False)
        tokens, comp = model.generate(b["input_ids"], b["attention_mask"], _max_answer_tokens(chunk, tok),
                                      tok.eos_token_id, max_steps=max_steps)
        for row, e in zip(tokens.tolist(), chunk):
            if tok.eos_token_id in row:
                row = row[:row.index(tok.eos_token_id)]
            # ids past the tokenizer (the model's vocabulary is padded to 128) are never right: read them as <unk>
            row = [t if t < tok.vocab_size else tok.unk_token_id for t in row]
            ok = tok.decode(row) == e.answer
            correct.append(ok)
            by_size[e.size][0] += int(ok)
            by_size[e.size][1] += 1
        if comp is not None:
            steps += comp.steps.tolist()
            unhalted += comp.unhalted.tolist()
    mean = (lambda xs: sum(xs) / len(xs)) if examples else (lambda xs: float("nan"))
    return {"accuracy": mean(correct), "mean_steps": mean(steps) if steps else None,
            "unhalted": mean(unhalted) if unhalted else None, "count": len(examples),
            "by_size": {int(k): v for k, v in sorted(by_size.items())}, "steps": steps or None}


def evaluate_run(run_dir, count: int = 200, ood_count: int | None = None, splits=EVAL_SPLITS,
                 threads: int = 0) -> dict:
    """Evaluate the checkpoint in ``run_dir``; the result is also written to ``run_dir/eval.json``.

    Returns ``{"task", "model", "train_steps", "train_time_s", "splits": {split: {...}}}``.
    """
    if threads:
        torch.set_num_threads(threads)
    model, cfg, ckpt = load_model(run_dir)
    result = {"task": cfg.task, "model": cfg.model, "train_steps": ckpt["step"],
              "train_time_s": round(ckpt["elapsed"], 1), "aux": cfg.aux, "splits": {}}
    for split in splits:
        t = time.time()
        n = count if split == "test" or ood_count is None else ood_count
        r = evaluate_split(model, cfg, split, n)
        r["eval_time_s"] = round(time.time() - t, 1)
        result["splits"][split] = r
    storage.write_text(Path(run_dir, "eval.json"), json.dumps(result))  # --reuse reads it
    return result


def summary(result: dict) -> dict:
    """The public JSON: task, model, and per split accuracy / mean_steps / unhalted."""
    return {"task": result["task"], "model": result["model"],
            "splits": {s: {k: r[k] for k in ("accuracy", "mean_steps", "unhalted")}
                       for s, r in result["splits"].items()}}


def plot(results: list[dict], path, axis_label: str) -> None:
    """Accuracy against size, one line per result (model), all splits pooled by size."""
    import matplotlib  # only for the plots: a slow import, and the Agg backend must be chosen before pyplot

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after the backend (line above)

    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=100)
    for r in results:
        pooled = defaultdict(lambda: [0, 0])
        for s in r["splits"].values():
            for size, (c, n) in s["by_size"].items():
                pooled[int(size)][0] += c
                pooled[int(size)][1] += n
        xs = sorted(pooled)
        ax.plot(xs, [pooled[x][0] / pooled[x][1] for x in xs], marker="o", ms=3,
                label=f"{r['model']}" + (" (aux)" if r.get("aux") and r["model"] == "augmented" else ""))
    task = results[0]["task"]
    ax.set(xlabel=axis_label, ylabel="exact match", title=f"{task}: accuracy by {axis_label}", ylim=(-0.03, 1.03))
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_steps(result: dict, path) -> bool:
    """Histogram of the machine's expected halting steps per split; False if the run has no machine."""
    import matplotlib  # only for the plots: a slow import, and the Agg backend must be chosen before pyplot

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after the backend (line above)

    series = {s: r["steps"] for s, r in result["splits"].items() if r.get("steps")}
    if not series:
        return False
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=100)
    for s, xs in series.items():
        ax.hist(xs, bins=30, alpha=0.6, label=s)
    ax.set(xlabel="expected halting step", ylabel="examples", title=f"{result['task']}: halting steps")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def read_eval_json(path: Path) -> dict:
    """An ``eval.json``; a damaged one raises ``ValueError`` naming the file."""
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}); delete it or run the evaluation again") from exc


def run_eval(run_dir, compare=None, count: int = 200, ood_count: int | None = None, threads: int = 0,
             reuse: bool = False) -> tuple[dict, list[str]]:
    """Evaluate ``run_dir`` (and ``compare``, another run of the same task), write the plots into ``run_dir``.

    ``reuse``: take ``eval.json`` of a run instead of evaluating it again when it exists.
    Returns ``(result, [paths of the PNGs written])``.
    """
    def get(d):
        f = Path(d, "eval.json")
        if reuse and f.exists():
            return read_eval_json(f)
        return evaluate_run(d, count, ood_count, threads=threads)

    result = get(run_dir)
    results = [result]
    if compare is not None:
        other = get(compare)
        if other["task"] != result["task"]:
            raise ValueError(f"--compare: {compare} is task {other['task']!r}, {run_dir} is {result['task']!r}")
        results.append(other)
    axis = task_registry.get(result["task"]).axis
    written = []
    acc = Path(run_dir, "accuracy.png")
    plot(results, acc, {"operand": "larger operand", "depth": "recursion depth", "length": "list length"}[axis])
    written.append(str(acc))
    for r, d in zip(results, [run_dir] + ([compare] if compare else [])):
        hist = Path(d, "halting_steps.png")
        if plot_steps(r, hist):
            written.append(str(hist))
    return result, written


def markdown_table(pairs: list[tuple[str, str | None]]) -> str:
    """The results table (task, split, augmented, baseline, mean steps, train time) from the ``eval.json`` of
    ``(augmented_run, baseline_run)`` pairs (either may be None)."""
    lines = ["| task | split | augmented | baseline | mean steps | train time (aug / base) |",
             "| --- | --- | --- | --- | --- | --- |"]
    for aug_dir, base_dir in pairs:
        aug = read_eval_json(Path(aug_dir, "eval.json")) if aug_dir else None
        base = read_eval_json(Path(base_dir, "eval.json")) if base_dir else None
        ref = aug or base
        for split in ref["splits"]:
            a = aug["splits"][split] if aug else None
            b = base["splits"][split] if base else None
            fmt = (lambda r: f"{100 * r['accuracy']:.1f}%" if r else "–")
            steps = f"{a['mean_steps']:.1f}" if a and a["mean_steps"] is not None else "–"
            times = (f"{aug['train_time_s']:.0f} s ({aug['train_steps']} steps)" if aug else "–") + " / " + \
                (f"{base['train_time_s']:.0f} s ({base['train_steps']} steps)" if base else "–")
            lines.append(f"| {ref['task']} | {split} | {fmt(a)} | {fmt(b)} | {steps} | {times} |")
    return "\n".join(lines)


__all__ = ["EVAL_MAX_STEPS", "EVAL_SEED", "EVAL_SPLITS", "evaluate_run", "evaluate_split", "markdown_table", "plot",
           "plot_steps", "run_eval", "summary"]
