"""The tool-use baseline's call parser and tool, the evaluation's label-free budgets, JSON-lines input, and
``ncl report``'s tables (and that the README's results table is what ``ncl report results/`` prints)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ncl import tasks
from ncl.training import answer_budget, machine_budget, read_jsonl, segment_length
from ncl.training import report
from ncl.training.tooluse import parse_call, run_call

ROOT = Path(__file__).resolve().parents[1]


def test_parse_call():
    assert parse_call("list_sort(31, 4, 77)") == ("list_sort", (31, 4, 77))
    assert parse_call(" reachable(1,2, 0, 1) ") == ("reachable", (1, 2, 0, 1))
    for bad in ("list_sort(31, 4", "nope(1, 2)", "list_sort 31 4", "list_sort(-1)", "gcd(4, 6)", ""):
        assert parse_call(bad) is None, bad


@pytest.mark.parametrize("name", ["sort", "sum", "merge_sort", "palindrome", "shortest_path", "reachable"])
def test_the_tool_runs_the_written_call_on_the_vm(name):
    for e in tasks.get(name).generate("test", 3, seed=2):
        assert run_call(e.call) == e.answer, e
    assert run_call("not a call") is None


def test_budgets_come_from_the_prompt_alone():
    e = tasks.get("sort").generate("ood_8x", 1)[0]
    assert segment_length(e.prompt) == len(e.tape)
    cells, steps = machine_budget(len(e.tape), 128)
    assert len(e.tape) < cells <= 128 and steps > 0
    assert answer_budget(40) == 96


def test_read_jsonl_names_the_bad_line(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text('{"prompt": "sum 1 2 =", "answer": "3"}\n\n{"prompt": "sum 1 ="}\n')
    with pytest.raises(ValueError, match=r"d.jsonl:3: missing or non-string field 'answer'"):
        read_jsonl(f)
    f.write_text('{"prompt": "sum 1 2 =", "answer": "3"}\nnot json\n')
    with pytest.raises(ValueError, match=r"d.jsonl:2: not JSON"):
        read_jsonl(f)
    f.write_text('{"prompt": "sum 1 2 =", "answer": "3"}\n')
    assert read_jsonl(f) == [{"prompt": "sum 1 2 =", "answer": "3"}]


def _eval_json(root: Path, task: str, model: str, seed: int, accs: dict, aux: float = 1.0,
               answer_grad: bool = True, name: str | None = None) -> None:
    d = root / task / (name or model) / f"seed{seed}"
    d.mkdir(parents=True)
    splits = {s: {"accuracy": a, "count": 500, "mean_steps": None, "unhalted": None, "by_size": {}}
              for s, a in accs.items()}
    (d / "eval.json").write_text(json.dumps({"task": task, "model": model, "seed": seed, "aux": aux,
                                             "answer_grad": answer_grad, "train_steps": 100, "train_time_s": 60.0,
                                             "params": 1000,
                                             "splits": splits}))


def test_report_lists_the_language_tasks_splits_after_the_benchmarks(tmp_path):
    _eval_json(tmp_path, "mix", "augmented", 0, {"test": 0.5, "paraphrase": 0.25, "long_add/ood_4x": 1.0},
               answer_grad=False)
    lines = report.markdown(report.collect(tmp_path)).splitlines()
    assert [line.split(" | ")[1] for line in lines[2:]] == ["test", "paraphrase", "long_add/ood_4x"]


def test_report_puts_the_contracts_decoding_beside_the_heads(tmp_path):
    """A run evaluated both ways (eval.json, eval-contracts.json) is two columns; other JSON files are not read."""
    _eval_json(tmp_path, "mix", "augmented", 0, {"test": 1.0, "paraphrase": 0.5}, answer_grad=False)
    run = tmp_path / "mix" / "augmented" / "seed0"
    decoded = {**json.loads((run / "eval.json").read_text()), "decode": "contracts"}
    decoded["splits"]["paraphrase"]["accuracy"] = 0.75
    (run / "eval-contracts.json").write_text(json.dumps(decoded))
    (run / "eval-other.json").write_text("not read")
    text = report.markdown(report.collect(tmp_path))
    assert "| task | split | augmented | augmented, calls under the contracts |" in text
    assert "| mix | paraphrase | 50.0 (50.0) ×1 | 75.0 (75.0) ×1 |" in text


def test_report_plots_accuracy_by_size(tmp_path):
    for seed, model in enumerate(("augmented", "tooluse")):
        d = tmp_path / "compose" / model / f"seed{seed}"
        d.mkdir(parents=True)
        splits = {"test": {"accuracy": 0.5, "count": 4, "by_size": {"1": [2, 2], "2": [0, 2]}},
                  "compose_3": {"accuracy": 0.5, "count": 2, "by_size": {"3": [1, 2]}}}
        (d / "eval.json").write_text(json.dumps({"task": "compose", "model": model, "seed": seed, "aux": 1.0,
                                                 "answer_grad": False, "train_steps": 1, "train_time_s": 1.0,
                                                 "splits": splits}))
    png = report.plot_by_size(tmp_path, "compose", tmp_path / "calls.png", ["test", "compose_3"])
    assert png.stat().st_size > 1000
    with pytest.raises(ValueError, match="no eval.json of task 'sort'"):
        report.plot_by_size(tmp_path, "sort", tmp_path / "x.png")


def test_report_means_and_minima(tmp_path):
    _eval_json(tmp_path, "sort", "augmented", 0, {"test": 1.0, "ood_2x": 0.5}, answer_grad=False)
    _eval_json(tmp_path, "sort", "augmented", 1, {"test": 0.9, "ood_2x": 0.25}, answer_grad=False)
    _eval_json(tmp_path, "sort", "augmented", 2, {"test": 0.8, "ood_2x": 0.0}, aux=0.0)
    _eval_json(tmp_path, "sort", "augmented", 0, {"test": 0.7, "ood_2x": 0.6}, name="augmented-answergrad")
    _eval_json(tmp_path, "sort", "llama", 0, {"test": 0.3, "ood_2x": 0.0})
    text = report.markdown(report.collect(tmp_path))
    assert "| task | split | augmented | augmented (answer grad) | augmented (no aux) | llama |" in text
    assert "| sort | test | 95.0 (90.0) ×2 | 70.0 (70.0) ×1 | 80.0 (80.0) ×1 | 30.0 (30.0) ×1 |" in text
    assert "| sort | ood_2x | 37.5 (25.0) ×2 | 60.0 (60.0) ×1 | 0.0 (0.0) ×1 | 0.0 (0.0) ×1 |" in text
    assert report.plot(tmp_path, tmp_path / "grid.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="no eval.json"):
        report.collect(tmp_path / "sort" / "missing")
    doc = tmp_path / "doc.md"
    doc.write_text(f"intro\n{report.BEGIN}\nold\n{report.END}\noutro\n")
    report.write_into(doc, tmp_path)
    text = doc.read_text()
    assert report.readout_of(text) == report.report(tmp_path)
    assert text.startswith("intro\n") and text.endswith("outro\n")
    doc.write_text("no markers")
    with pytest.raises(ValueError, match="markers"):
        report.write_into(doc, tmp_path)


@pytest.mark.parametrize("doc, results, labels", [("README.md", "results", False),
                                                  ("docs/language.md", "results-language", False),
                                                  ("docs/labels.md", "results-labels", False),
                                                  ("README.md", "results-labels", True)])  # the table against F
def test_the_docs_tables_are_what_ncl_report_prints(doc, results, labels):
    results = ROOT / results
    if not any(results.rglob("eval.json")):
        pytest.skip(f"no committed {results.name}/")
    expected = report.labels_table(report.collect(results)) if labels else report.report(results)
    assert report.readout_of((ROOT / doc).read_text(), labels) == expected
