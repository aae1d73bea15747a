"""scripts/machine_ab.py, the interleaved A/B timing of two builds behind the "CPU kernels" passes of
benchmarks/RESULTS.md: here both sides are this checkout, on the sharp run, one round."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ncl_kernels import dispatch
from _script_support import load_script

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(dispatch.unavailable_reason("cpp") is not None, reason="needs the cpp backend")


def _script():
    return load_script("scripts/machine_ab.py")


def test_it_times_both_builds_in_fresh_processes_and_reports_the_ratio(capsys):
    assert _script().main(["--a", str(ROOT), "--b", str(ROOT), "--rounds", "1", "--calls", "1",
                           "--inputs", "sharp"]) == 0
    summary = json.loads(capsys.readouterr().out)
    (row,) = summary["rounds"]
    for side in ("a", "b"):
        assert 0 < row[side]["fwd"] and 0 < row[side]["fwdbwd"]
        assert Path(row[side]["package"]).resolve().is_relative_to(ROOT)  # the named build, not the working dir's
    assert summary["median_ratio_fwdbwd"] == pytest.approx(row["b"]["fwdbwd"] / row["a"]["fwdbwd"])


def test_ops_mode_times_each_kernel_op_in_both_builds(capsys):
    script = _script()
    assert script.main(["--a", str(ROOT), "--b", str(ROOT), "--rounds", "1", "--calls", "1", "--inputs", "sharp",
                        "--ops"]) == 0
    summary = json.loads(capsys.readouterr().out)
    (row,) = summary["rounds"]
    for op in script.OPS:
        assert summary["fastest_ms"]["a"][op] == row["a"][op] > 0
        assert summary["ratio_fastest"][op] == pytest.approx(row["b"][op] / row["a"][op])


def test_a_folder_without_the_package_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        _script().main(["--a", str(tmp_path), "--b", str(ROOT)])
    assert "holds no ncl_kernels folder" in capsys.readouterr().err
