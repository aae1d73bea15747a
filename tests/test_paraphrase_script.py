"""scripts/paraphrase_by_template.py, the held-out wording of a mix model template by template."""

from __future__ import annotations

import json

import pytest

from ncl import cli
from ncl.tasks import compose
from ncl.tasks.phrasing import TEMPLATES, TRAINED
from _script_support import load_script

TINY = ["--steps", "1", "--layers", "1", "--split", "1", "--batch-size", "2", "--threads", "1", "--quiet"]


def _script():
    return load_script("scripts/paraphrase_by_template.py")


def test_every_template_gets_a_row_scored_against_its_answers(tmp_path, monkeypatch, capsys):
    run = tmp_path / "mix"
    assert cli.main(["train", "--task", "mix", "--out", str(run), *TINY]) == 0
    script = _script()
    out = tmp_path / "t.json"
    assert script.main([str(run), "--count", "1", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())[str(run)]
    wrappers = [w for ws in compose.WRAPPERS for w in ws]
    assert [r["template"] for r in rows] == [t for ts in TEMPLATES.values() for t in ts] + wrappers
    assert sum(r["held_out"] for r in rows) == len(TEMPLATES) * (8 - TRAINED) + len(compose.WRAPPERS[1])
    assert all(r["accuracy"] in (0.0, 1.0) and sum(r["programs"].values()) == 1 for r in rows)
    both, decodes = tmp_path / "both.json", []
    real = script.decoding
    monkeypatch.setattr(script, "decoding", lambda model, decode: decodes.append(decode) or real(model, decode))
    assert script.main([str(run), "--count", "1", "--json", str(both), "--decode", "both"]) == 0
    decoded = json.loads(both.read_text())
    assert list(decoded) == [str(run), f"{run} (contracts)"] and decoded[str(run)] == rows
    assert decodes == ["heads", "contracts"]
    # a model that answers every problem wrong scores 0 everywhere, its programs counted as the wrong ones'
    monkeypatch.setattr(script, "answers", lambda model, task, prompts: (["?"] * len(prompts), ["sum"] * len(prompts)))
    rows = script.by_template(str(run), 2)
    assert all(r["accuracy"] == 0 and r["programs_wrong"] == {"sum": 2} for r in rows)
    capsys.readouterr()
    assert script.main([str(run), "--count", "1", "--held-out"]) == 0
    table = capsys.readouterr().out
    assert "`Turn {list} around.` | yes |" in table and "`Reverse {list}.`" not in table
    assert script.main(["--from-json", str(out), "--held-out"]) == 0  # the saved rows, no model run
    saved = capsys.readouterr().out
    assert saved.splitlines()[0] == f"| part | template | held out | {run} |" and "`Turn {list} around.`" in saved


def test_a_single_task_run_is_refused(tmp_path):
    run = tmp_path / "add"
    assert cli.main(["train", "--task", "long_add", "--out", str(run), *TINY]) == 0
    with pytest.raises(ValueError, match="mix model"):
        _script().by_template(str(run), 1)
