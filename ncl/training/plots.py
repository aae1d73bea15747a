"""The evaluation's figures (PNG, matplotlib's Agg backend): accuracy against size for one task, the halting
steps' histogram, the results grid of ``ncl report`` and its accuracy against the fraction of labelled examples.

Readable without explanation: plain tick labels (no offset or scientific axis), legends outside the data, titles
that name the task and the splits.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

AXIS_LABELS = {"digits": "digits of the longer operand", "length": "list length", "depth": "recursion depth",
               "nodes": "nodes in the graph", "calls": "library calls in the problem"}


def _pyplot():
    import matplotlib  # a slow import, only for figures; the Agg backend must be chosen before pyplot

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after the backend (line above)

    return plt


def pooled_by_size(result: dict, splits=None) -> dict[int, tuple[int, int]]:
    """``{size: (correct, total)}`` over a result's splits (``splits``: a subset)."""
    pooled = defaultdict(lambda: [0, 0])
    for name, s in result["splits"].items():
        if splits is None or name in splits:
            for size, (c, n) in s["by_size"].items():
                pooled[int(size)][0] += c
                pooled[int(size)][1] += n
    return {k: (c, n) for k, (c, n) in sorted(pooled.items())}


def _label(r: dict, name=None) -> str:
    return (r["model"] if name is None else name(r)) + (f" (seed {r['seed']})" if r.get("seed") is not None else "")


def _accuracy_axes(ax, results: list[dict], task: str, axis: str, splits=None, name=None) -> None:
    for r in results:
        pooled = pooled_by_size(r, splits)
        xs = list(pooled)
        ax.plot(xs, [c / n for c, n in pooled.values()], marker="o", ms=3, label=_label(r, name))
    ax.set(xlabel=AXIS_LABELS.get(axis, axis), ylabel="exact match", ylim=(-0.03, 1.03),
           title=f"{task}: accuracy by size\n({'all splits' if splits is None else ', '.join(splits)})")  # 2 lines
    ax.ticklabel_format(axis="y", useOffset=False, style="plain")
    ax.xaxis.get_major_locator().set_params(integer=True)  # sizes are counts
    ax.grid(alpha=0.3)


def _size_axis(task, splits) -> str:
    """What sizes measure on ``splits`` of ``task``: their common axis where the task tells each split's
    (``split_axis``: ``mix``'s composed splits count calls), else the task's."""
    per_split = getattr(task, "split_axis", None)
    axes = {per_split(s) for s in splits} if splits and per_split else {task.axis}
    return axes.pop() if len(axes) == 1 else task.axis


def plot_accuracy(results: list[dict], path, splits=None, name=None) -> Path:
    """Accuracy against size, one line per run (all of one task), every split (or those in ``splits``) pooled by
    size; ``name(result)`` names a run's line (default its model), then its seed."""
    from ncl import tasks as task_registry  # the axis' name

    plt = _pyplot()
    task = results[0]["task"]
    fig, ax = plt.subplots(figsize=(6.4, 3.4), dpi=100)
    _accuracy_axes(ax, results, task, _size_axis(task_registry.get(task), splits), splits, name)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def plot_steps(result: dict, path) -> Path | None:
    """Histogram of the machine's expected halting steps per split; None if the run has no machine."""
    series = {s: r["steps"] for s, r in result["splits"].items() if r.get("steps")}
    if not series:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.4), dpi=100)
    for s, xs in series.items():
        ax.hist(xs, bins=30, alpha=0.6, label=s)
    ax.set(xlabel="expected halting step", ylabel="examples",
           title=f"{result['task']}: halting steps ({', '.join(series)})")
    ax.ticklabel_format(axis="x", useOffset=False, style="plain")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def plot_grid(rows: dict[str, dict[str, dict[str, tuple[float, float]]]], splits: list[str], path) -> Path:
    """The results figure: one panel per task, accuracy per split (x) for each model (line: the mean over seeds,
    band: min to max). ``rows[task][model][split] = (mean, min)`` plus ``(…, max)`` when known."""
    plt = _pyplot()
    tasks = list(rows)
    cols = 4
    nrows = -(-len(tasks) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(3.2 * cols, 2.5 * nrows), dpi=100, squeeze=False)
    models = list(dict.fromkeys(m for task in tasks for m in rows[task]))
    colors = {m: f"C{i}" for i, m in enumerate(models)}  # one colour per model in every panel
    for ax, task in zip(axes.flat, tasks):
        for model, cells in rows[task].items():
            xs = [s for s in splits if s in cells]
            mean = [cells[s][0] for s in xs]
            ax.plot(range(len(xs)), mean, marker="o", ms=3, color=colors[model], label=model)
            ax.fill_between(range(len(xs)), [cells[s][1] for s in xs], [cells[s][-1] for s in xs],
                            color=colors[model], alpha=0.2)
            ax.set_xticks(range(len(xs)), xs, fontsize=7)
        ax.set(ylim=(-0.03, 1.03), title=task)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(tasks):]:
        ax.axis("off")
    handles = [plt.Line2D([], [], color=colors[m], marker="o", ms=3) for m in models]
    fig.legend(handles, models, loc="lower right", fontsize=9, frameon=False)
    fig.suptitle("exact match per split: mean over seeds (band: min to max)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def plot_by_labels(points: dict, splits: list[str], path) -> Path:
    """Accuracy against the fraction F of labelled training examples: one panel per task and split, a line per
    model (the mean over seeds, bars from min to max); a model trained without labels (the plain LLaMA) is a
    dashed level. ``points[task][model][F][split] = [accuracy per seed]``; F = None for the level."""
    plt = _pyplot()
    tasks = list(points)
    fs = sorted({f for t in tasks for m in points[t].values() for f in m if f is not None}, reverse=True)
    fig, axes = plt.subplots(len(tasks), len(splits), figsize=(3.6 * len(splits), 2.6 * len(tasks)), dpi=100,
                             squeeze=False)
    models = list(dict.fromkeys(m for t in tasks for m in points[t]))
    # the ten default colours repeat past ten models; tab20's twenty keep that many lines apart
    palette = plt.get_cmap("tab20").colors
    colors = {m: palette[i % len(palette)] for i, m in enumerate(models)}
    for row, task in enumerate(tasks):
        for col, split in enumerate(splits):
            ax = axes[row, col]
            for model, by_f in points[task].items():
                if None in by_f:  # no labels: the same model at every F
                    accs = by_f[None].get(split)
                    if accs:
                        ax.axhline(sum(accs) / len(accs), color=colors[model], ls="--", lw=1)
                    continue
                xs = [i for i, f in enumerate(fs) if split in by_f.get(f, {})]
                accs = [by_f[fs[i]][split] for i in xs]
                mean = [sum(a) / len(a) for a in accs]
                err = [[m - min(a) for m, a in zip(mean, accs)], [max(a) - m for m, a in zip(mean, accs)]]
                ax.errorbar(xs, mean, yerr=err, marker="o", ms=3, capsize=2, color=colors[model])
            ax.set_xticks(range(len(fs)), [f"{f:g}" for f in fs])
            ax.set(ylim=(-0.03, 1.03), title=f"{task}: {split}", xlabel="F, fraction of examples labelled")
            ax.grid(alpha=0.3)
    handles = [plt.Line2D([], [], color=colors[m], marker="o", ms=3) for m in models]
    longest = max(map(len, models))  # the models' names side by side as wide as the figure allows
    ncol = min(len(models), 3 if longest <= 30 else 2 if longest <= 48 else 1)
    fig.legend(handles, models, loc="lower center", ncol=ncol, fontsize=9, frameon=False)
    fig.suptitle("exact match against the fraction of labelled examples\nmean over seeds (bars: min to max)",
                 fontsize=10)
    legend_rows = -(-len(models) // ncol)
    fig.tight_layout(rect=(0, min(0.4, (0.25 + 0.2 * legend_rows) / fig.get_figheight()), 1, 1))
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def plot_trace(result: dict, path) -> Path:
    """A PNG of an ``ncl trace`` result (:func:`ncl.training.trace.trace`): one bar per call, its machine steps,
    labelled with the call and its result."""
    plt = _pyplot()
    calls = result["calls"]
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.6 * len(calls)))
    steps = [c["steps"] for c in calls]
    ax.barh(range(len(calls)), steps, color="#4c72b0")
    for k, c in enumerate(calls):
        args = ", ".join(a["value"] or a["source"] for a in c["args"])
        ax.text(0, k, f"  {c['program']}({args}) → {c['result']}", va="center", color="black", fontsize=9)
    ax.set_yticks(range(len(calls)), [f"call {k + 1}" for k in range(len(calls))])
    ax.invert_yaxis()
    ax.set_xlabel("machine steps (expected)")
    ax.set_title(f"{result['prompt']}\n→ {result['answer']}", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


__all__ = ["AXIS_LABELS", "plot_accuracy", "plot_grid", "plot_steps", "plot_trace", "pooled_by_size"]
