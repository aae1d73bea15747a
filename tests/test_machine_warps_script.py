"""scripts/machine_warps.py, the timing of the Triton whole-run kernels at each warp count that
scripts/gpu_check.sh runs: here a tiny run (under the Triton interpreter without a GPU, where the warps change
nothing but the kernels still run) and the check that the settings agree."""

from __future__ import annotations

import json
import os

import pytest
import torch

from ncl_kernels import dispatch
from _script_support import load_script

DEVICE = "cuda" if torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET", "0") in ("", "0") else "cpu"
pytestmark = pytest.mark.skipif(dispatch.unavailable_reason("triton") is not None,
                                reason="needs the triton backend")


def _script():
    return load_script("scripts/machine_warps.py")


def test_it_times_each_warp_count_and_they_agree(tmp_path, monkeypatch):
    monkeypatch.delenv("NCL_TRITON_WARPS", raising=False)  # the script sets it; restored after the test
    out = tmp_path / "warps.json"
    assert _script().main(["--device", DEVICE, "--batch", "1", "--warps", "0", "16", "--steps", "4",
                           "--repeats", "1", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert [(r["batch"], r["warps"]) for r in rows] == [(1, "default"), (1, 16)]
    assert rows[0]["answer"] == pytest.approx(rows[1]["answer"]) and rows[0]["answer"] > 0
    assert rows[0]["grad"] == pytest.approx(rows[1]["grad"]) and rows[0]["grad"] > 1e-3  # a gradient that can differ
    assert all(0 < r[mode]["min"] <= r[mode]["median"] <= r[mode]["max"] for r in rows for mode in ("fwd", "fwdbwd"))


def test_settings_that_disagree_fail(monkeypatch, capsys):
    script = _script()
    answers = iter([1.0, 2.0])
    stats = {"min": 1.0, "median": 1.0, "max": 1.0}
    monkeypatch.setattr(script, "measure", lambda *a: {"fwd": stats, "fwdbwd": stats, "answer": next(answers),
                                                       "grad": 0.5})
    assert script.main(["--device", "cpu", "--batch", "4", "--warps", "0", "8"]) == 1
    assert "disagree on the run's answer" in capsys.readouterr().err
