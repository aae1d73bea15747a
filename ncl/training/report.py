"""``ncl report DIR``: the results tables and figure, generated from the committed ``eval.json`` files.

Every ``eval.json`` under DIR is one run (a task, a model, a seed). The table has one row per task and split and
one column per model: the mean exact match over the seeds and, in brackets, the minimum, with the number of
seeds. ``augmented`` is the model as ``ncl train`` trains it by default: its heads learn from the auxiliary labels
alone. Two variants have columns of their own: ``augmented (answer grad)``, whose heads the answer's
straight-through gradient reached too (``ncl train --answer-grad``), and ``augmented (no aux)``, trained without
auxiliary labels (``--aux 0``, where the answer's gradient is all the heads get). A run with labels on a fraction
F < 1 of its examples (``--labels F``) is ``augmented (F=0.01, answer grad)`` with the answer's gradient to the
heads, ``augmented (F=0.01, labels only)`` without, or ``augmented (F=0.01, answer grad but not to write)``
without it to the heads named (``answer grad to read`` when it reaches one); ``+ program search`` when the
programs that print an unlabelled example's answer trained the program heads (``--search-programs``;
docs/labels.md).
The README's results table is this output for ``results/`` verbatim between the markers :data:`BEGIN` and
:data:`END` (``tests/test_tooluse_and_report.py`` checks it), and docs/language.md's is the output for
``results-language/``; the README's table of accuracy against F is :func:`labels_table` for ``results-labels/``
between :data:`LABELS_BEGIN` and :data:`LABELS_END`. Splits beyond the benchmark's (``mix``'s ``paraphrase`` and
``TASK/SPLIT``, ``compose``'s ``compose_3``) follow the benchmark's, in the order the runs list them.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

from ncl import storage
from ncl.computer.config import ANSWER_GRAD_HEADS
from ncl.tasks import ALL_SPLITS
from ncl.tasks import names as task_names
from ncl.training.evaluation import DECODES, decode_label, eval_file_name

BEGIN = "<!-- ncl report: generated from eval.json files, do not edit -->"
END = "<!-- end of ncl report -->"
#: The markers around :func:`labels_table` in a document (the README's table of accuracy against F).
LABELS_BEGIN = "<!-- ncl report --labels-table: generated from eval.json files, do not edit -->"
LABELS_END = "<!-- end of ncl report --labels-table -->"
MODEL_ORDER = ("augmented", "augmented (answer grad)", "augmented (no aux)", "tooluse", "llama")


def model_label(result: dict) -> str:
    """The table column of a run: its model, with ``(no aux)`` for an augmented run without auxiliary labels and
    ``(answer grad)`` for one whose heads the answer's gradient reached as well as the labels (eval.json files
    that predate ``answer_grad`` had it); ``(F=…)`` for one trained with labels on a fraction F < 1 of its
    examples (``+ program search`` with ``--search-programs``); then ``, calls under the contracts`` for an
    evaluation that decoded the calls so (``ncl eval --decode contracts``: ``eval-contracts.json``)."""
    return _trained_label(result) + decode_label(result)


def _trained_label(result: dict) -> str:
    """:func:`model_label` without the decoding."""
    labels = result.get("labels", 1.0)
    if result["model"] == "augmented" and result.get("aux") and labels < 1:
        return f"augmented (F={labels:g}, {_heads_trained(result)[0]})"
    if result["model"] == "augmented" and not result.get("aux"):
        return "augmented (no aux)"
    if result["model"] == "augmented" and result.get("answer_grad", True):
        return "augmented (answer grad)"
    if result["model"] == "tooluse" and labels < 1:
        return f"tooluse (F={labels:g}{', interface search' if result.get('discover') else ''})"
    return result["model"]


def _heads_trained(result: dict) -> tuple[str, bool]:
    """How an augmented run with scarce labels trained its heads: ``labels only``, ``answer grad`` (to every
    decision), ``answer grad to H`` (one) or ``answer grad but not to H H`` (some), ``interface search`` in place
    of ``labels only`` (or ``+ interface search``) when a search labelled the others (``--discover``), then
    ``+ program search`` when it searched the programs (``+ program, step and pointer search`` with the step and
    pointer searches too),
    ``+ replay R`` when it replayed labelled examples, ``+ words without list separators`` for a chain whose
    heads did not pool them (``call_separators``), ``+ words read with the numbers collapsed`` for one whose
    heads read them so (``word_view``; ``+ words read by their neighbours alone`` with ``"local"``, ``+ words read by a
    pretrained encoder`` with ``"pretrained"``, ``+ program read by a pretrained encoder, pointers with the numbers
    collapsed`` with ``"hybrid"``); and whether
    the run is one of the ablations (the last kind)."""
    heads = tuple(result.get("answer_grad_heads", ANSWER_GRAD_HEADS))
    cut = [h for h in ANSWER_GRAD_HEADS if h not in heads]
    ablation = bool(result.get("answer_grad", True) and cut and len(heads) > 1)
    if not result.get("answer_grad", True):
        how = "labels only"
    else:
        how = "answer grad" if not cut else f"answer grad but not to {' '.join(cut)}" if ablation else \
            f"answer grad to {heads[0]}"
    if result.get("discover"):  # the interface searched on the library labelled the unlabelled examples
        how = "interface search" if how == "labels only" else f"{how} + interface search"
    searched = [name for name, key in (("program", "search"), ("step", "search_steps"), ("pointer", "search_pointers"))
                if result.get(key)]
    if searched:
        how += f" + {', '.join(searched[:-1])}{' and ' if len(searched) > 1 else ''}{searched[-1]} search"
    if result.get("replay"):
        how += f" + replay {result['replay']}"
    if result.get("call_separators") is False:  # recorded for chains since the option exists (before: pooled)
        how += " + words without list separators"
    if result.get("word_view") == "collapsed":  # recorded for chains since the option exists (before: as written)
        how += " + words read with the numbers collapsed"
    elif result.get("word_view") == "local":
        how += " + words read by their neighbours alone"
    elif result.get("word_view") == "pretrained":
        how += " + words read by a pretrained encoder"
    elif result.get("word_view") == "hybrid":
        how += " + program read by a pretrained encoder, pointers with the numbers collapsed"
    return how, ablation


def collect(root) -> list[dict]:
    """Every ``eval.json`` under ``root`` (and ``eval-contracts.json``: the same runs with their calls decoded under
    the library's contracts), sorted by path (a damaged one raises ``ValueError`` naming it)."""
    out = []
    names = {eval_file_name(d) for d in DECODES}
    for path in sorted(p for p in Path(root).rglob("eval*.json") if p.name in names):
        try:
            result = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} is not valid JSON ({exc})") from exc
        result["path"] = str(path)
        out.append(result)
    if not out:
        raise ValueError(f"no eval.json under {root}")
    return out


def aggregate(results: list[dict]) -> dict:
    """``{task: {model: {split: [accuracy per seed]}}}``, tasks in :func:`ncl.tasks.names` order (others after)."""
    table = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for r in sorted(results, key=lambda r: r.get("seed") or 0):
        for split, s in r["splits"].items():
            table[r["task"]][model_label(r)][split].append(s["accuracy"])
    order = [t for t in task_names() if t in table] + sorted(set(table) - set(task_names()))
    return {t: table[t] for t in order}


def _models(table) -> list[str]:
    """The columns present, :data:`MODEL_ORDER`'s models each followed by its variants (``(F=…)``, F falling)."""
    present = {m for models in table.values() for m in models}
    bases = list(dict.fromkeys(m.split(" (")[0] for m in MODEL_ORDER))

    def key(label: str):
        base = label.split(" (")[0]
        f = re.search(r"F=([0-9.]+)", label)
        # the variants of one F by name, a name before its longer forms ("answer grad" before "answer grad but ...")
        return (bases.index(base) if base in bases else len(bases), base,
                -float(f.group(1)) if f else -1.0, MODEL_ORDER.index(label) if label in MODEL_ORDER else 0,
                label.rstrip(")"))

    return sorted(present, key=key)


def markdown(results: list[dict]) -> str:
    """The results table (markdown): per task and split, each model's mean (min) exact match over its seeds."""
    table = aggregate(results)
    models = _models(table)
    lines = ["| task | split | " + " | ".join(models) + " |", "| --- | --- |" + " --- |" * len(models)]
    for task in table:
        present = [s for m in table[task] for s in table[task][m]]
        splits = [s for s in ALL_SPLITS if s in present] + [s for s in dict.fromkeys(present) if s not in ALL_SPLITS]
        for split in splits:
            cells = []
            for m in models:
                accs = table[task].get(m, {}).get(split)
                cells.append("–" if not accs else
                             f"{100 * sum(accs) / len(accs):.1f} ({100 * min(accs):.1f}) ×{len(accs)}")
            lines.append(f"| {task} | {split} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def budget_lines(results: list[dict]) -> str:
    """What each model had: parameters, optimizer steps and training time (mean over its runs)."""
    by = defaultdict(list)
    for r in results:
        by[model_label(r)].append(r)
    lines = ["| model | runs | parameters | optimizer steps (mean) | training time (mean) |",
             "| --- | --- | --- | --- | --- |"]
    for m in _models({"": by}):
        rs = by[m]
        params = sorted({r.get("params") for r in rs if r.get("params")})
        shown = ", ".join(f"{p:,}" for p in params) if params else "–"
        lines.append(f"| {m} | {len(rs)} | {shown} | {sum(r['train_steps'] for r in rs) / len(rs):.0f} | "
                     f"{sum(r['train_time_s'] for r in rs) / len(rs):.0f} s |")
    return "\n".join(lines)


def report(root) -> str:
    """The text ``ncl report`` prints: the results table, then the budgets table."""
    results = collect(root)
    return markdown(results) + "\n\n" + budget_lines(results)


def plot(root, path) -> Path:
    """The results figure (:func:`ncl.training.plots.plot_grid`)."""
    from ncl.training.plots import plot_grid  # matplotlib: only when a figure is drawn

    table = aggregate(collect(root))
    order = _models(table)
    rows = {task: {m: {s: (sum(a) / len(a), min(a), max(a)) for s, a in models[m].items()}
                   for m in order if m in models} for task, models in table.items()}
    return plot_grid(rows, [s for s in ALL_SPLITS if s != "train"], path)


def plot_by_size(root, task: str, path, splits=None) -> Path:
    """Accuracy against ``task``'s size (the number of calls for ``compose``), one line per run under ``root``,
    its splits (or those in ``splits``) pooled by size (:func:`ncl.training.plots.plot_accuracy`)."""
    from ncl.training.plots import plot_accuracy  # matplotlib: only when a figure is drawn

    runs = [r for r in collect(root) if r["task"] == task]
    if not runs:
        raise ValueError(f"no eval.json of task {task!r} under {root}")
    order = _models({task: {model_label(r): None for r in runs}})
    return plot_accuracy(sorted(runs, key=lambda r: (order.index(model_label(r)), r.get("seed") or 0)), path, splits,
                         name=lambda r: r["model"] + decode_label(r))


def labels_family(result: dict) -> tuple[str, float | None] | None:
    """Where a run stands in :func:`plot_by_labels`: ``(model, F)`` (the tool-use baseline given the interface
    search is a model of its own), F None for a model without interface labels (the plain LLaMA), None for a run
    the figure leaves out (answers only, or the ablations that cut the answer's gradient from some heads)."""
    F = result.get("labels", 1.0)
    if result["model"] == "llama":
        return "llama", None
    if result["model"] == "tooluse":
        return ("tooluse, interface search" if result.get("discover") else "tooluse"), F
    if not result.get("aux"):
        return None
    how, ablation = _heads_trained(result)
    return None if ablation else (f"augmented, {how}", F)


def by_labels(results: list[dict], splits=("test", "ood_4x")) -> dict:
    """``{task: {model: {F: {split: [accuracy per run]}}}}`` (:func:`labels_family`; F None for the plain
    LLaMA), tasks in :func:`ncl.tasks.names` order. A split a run lacks is the mean of its ``TASK/split`` ones
    (the ``mix`` task's ``ood_4x``: the mean over its tasks). ``ValueError`` if no run has a place."""
    points = defaultdict(lambda: defaultdict(lambda: defaultdict(lambda: defaultdict(list))))
    for r in sorted(results, key=lambda r: r.get("seed") or 0):
        where = labels_family(r)
        if where is not None:
            for split in splits:
                # a mix run has no split "ood_4x" of its own: the mean of its tasks' "TASK/ood_4x"
                accs = [s["accuracy"] for name, s in r["splits"].items() if name == split or
                        (split not in r["splits"] and name.endswith("/" + split))]
                if accs:
                    points[r["task"]][where[0]][where[1]][split].append(sum(accs) / len(accs))
    if not points:
        raise ValueError("no run to place against F")
    order = [t for t in task_names() if t in points] + sorted(set(points) - set(task_names()))
    return {t: points[t] for t in order}


def plot_by_labels(root, path, splits=("test", "ood_4x")) -> Path:
    """Accuracy against the fraction F of labelled examples (``ncl train --labels F``), a panel per task and split
    (:func:`ncl.training.plots.plot_by_labels`), from the runs under ``root`` (:func:`by_labels`)."""
    from ncl.training.plots import plot_by_labels as draw  # matplotlib: only when a figure is drawn

    return draw(by_labels(collect(root), splits), list(splits), path)


def labels_table(results: list[dict], splits=("test", "ood_4x")) -> str:
    """Accuracy against F as a table (markdown): a row per task and model (:func:`by_labels`), a column per F
    (falling) and one for the models without labels; each cell the means over seeds of ``splits`` joined by
    `` / `` (``–`` for a split the runs lack), then ``×`` the number of seeds."""
    points = by_labels(results, splits)
    fractions = sorted({F for models in points.values() for by_f in models.values() for F in by_f
                        if F is not None}, reverse=True)
    columns = fractions + [None]

    def cell(accs) -> str:
        if not accs:
            return "–"
        means = [f"{100 * sum(accs[s]) / len(accs[s]):.1f}" if accs.get(s) else "–" for s in splits]
        return " / ".join(means) + f" ×{max(len(a) for a in accs.values())}"

    head = ["task", "model"] + [f"F = {F:g}" for F in fractions] + ["no labels"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for task, models in points.items():
        # the augmented variants by name, then the baselines
        for model in sorted(models, key=lambda m: (m in ("tooluse", "llama"), m == "llama", m)):
            lines.append(f"| {task} | {model} | " + " | ".join(cell(models[model].get(F)) for F in columns) + " |")
    return "\n".join(lines)


def write_into(path, root, labels: bool = False) -> str:
    """Replace the part of the document at ``path`` between :data:`BEGIN` and :data:`END` with the report of
    ``root`` (with ``labels``: between :data:`LABELS_BEGIN` and :data:`LABELS_END`, with its
    :func:`labels_table`); an atomic write: an interrupted one leaves the old file. Returns what it put there."""
    begin, end = _markers(labels)
    text = Path(path).read_text()
    readout_of(text, labels)  # the markers must be there
    head, rest = text.split(begin, 1)
    tail = rest.split(end, 1)[1]
    table = labels_table(collect(root)) if labels else report(root)
    storage.write_text(Path(path), f"{head}{begin}\n{table}\n{end}{tail}")
    return table


def _markers(labels: bool) -> tuple[str, str]:
    return (LABELS_BEGIN, LABELS_END) if labels else (BEGIN, END)


def readout_of(text: str, labels: bool = False) -> str:
    """The part of a document between :data:`BEGIN` and :data:`END` (with ``labels``: :data:`LABELS_BEGIN` and
    :data:`LABELS_END`), stripped; ``ValueError`` without them."""
    begin, end = _markers(labels)
    if begin not in text or end not in text:
        raise ValueError(f"the markers {begin!r} and {end!r} are missing")
    return text.split(begin, 1)[1].split(end, 1)[0].strip()


__all__ = ["BEGIN", "END", "LABELS_BEGIN", "LABELS_END", "MODEL_ORDER", "aggregate", "budget_lines", "by_labels",
           "collect", "labels_table", "labels_family", "markdown", "model_label", "plot", "plot_by_labels",
           "plot_by_size", "readout_of", "report", "write_into"]
