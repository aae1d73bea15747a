"""``ncl bench machine --json``: one JSON object with the issue's keys, for forward and forward+backward."""

import json

import pytest

from ncl import cli
from ncl_kernels import dispatch

KEYS = {"ms_fused", "ms_eager", "ms_compiled", "speedup_eager", "speedup_compiled", "peak_mem_fused_mb",
        "peak_mem_eager_mb"}


@pytest.mark.skipif(dispatch.unavailable_reason("cpp") is not None, reason="needs the cpp backend")
def test_bench_machine_prints_one_json_object(capsys):
    cli.main(["bench", "machine", "--batch", "2", "--steps", "4", "--repeats", "1", "--no-compiled",
              "--threads", "1", "--json"])
    result = json.loads(capsys.readouterr().out)
    assert result["backend"] == "cpp" and result["sizes"]["steps"] == 4
    assert result["cpu_isa"] in ("avx2+fma", "baseline")
    for mode in ("fwd", "fwdbwd"):
        assert KEYS <= set(result[mode])
        assert result[mode]["ms_fused"] > 0 and result[mode]["ms_eager"] > 0
        assert result[mode]["speedup_eager"] == pytest.approx(result[mode]["ms_eager"] / result[mode]["ms_fused"],
                                                              rel=1e-2)
        assert result[mode]["ms_compiled"] is None  # --no-compiled
        assert result[mode]["peak_mem_fused_mb"] > 0 and result[mode]["peak_mem_eager_mb"] > 0


def test_plot_sweep_draws_the_sweep_groups_only(tmp_path):
    from ncl.machine.bench import plot_sweep

    rows = [{"group": f"machine sweep B={b} steps={t} {m}", "impl": "fused:cpp", "speedup_eager": 2.0 * b / t}
            for b in (1, 8, 32) for t in (16, 64) for m in ("fwd", "fwdbwd")]
    other = [{"group": "alu_mix 32,128 dense fwd", "impl": "fused:cpp", "speedup_eager": 7.0}]
    assert not plot_sweep(other, tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()
    assert plot_sweep(rows + other, tmp_path / "sweep.png")
    assert (tmp_path / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list(tmp_path.iterdir()) == [tmp_path / "sweep.png"]  # no temporary file left behind
