"""``ncl bench machine --json``: one JSON object with the issue's keys, for forward and forward+backward, and the
fused run against the best eager PyTorch on sharp and soft inputs."""

import json

import pytest
import torch

from ncl import cli
from ncl.machine import bench, bench_eager
from ncl.machine.program import Program
from ncl_kernels import dispatch
from ncl_kernels.machine import MachineConfig

KEYS = {"ms_fused", "ms_eager", "ms_compiled", "speedup_eager", "speedup_compiled", "peak_mem_fused_mb",
        "peak_mem_eager_mb"}
BEST_EAGER_KEYS = {"ms_fused", "ms_best_eager", "ms_best_eager_compiled", "speedup_best_eager",
                   "speedup_best_eager_compiled", "spread_ms", "speedup_per_round"}
needs_cpp = pytest.mark.skipif(dispatch.unavailable_reason("cpp") is not None, reason="needs the cpp backend")


@needs_cpp
def test_bench_machine_prints_one_json_object(capsys):
    cli.main(["bench", "machine", "--batch", "2", "--steps", "4", "--repeats", "1", "--no-compiled",
              "--threads", "1", "--json"])
    result = json.loads(capsys.readouterr().out)
    assert result["backend"] == "cpp" and result["sizes"]["steps"] == 4
    # The chunk Program.run takes by default, named: the cpp kernel's for the 9-line loop.
    assert result["sizes"]["chunk"] == 64 and result["fused_grad_mode"] == "checkpoint (k=64)"
    assert result["cpu_isa"] in ("avx2+fma", "baseline")
    for mode in ("fwd", "fwdbwd"):
        assert KEYS <= set(result[mode])
        assert result[mode]["ms_fused"] > 0 and result[mode]["ms_eager"] > 0
        assert result[mode]["speedup_eager"] == pytest.approx(result[mode]["ms_eager"] / result[mode]["ms_fused"],
                                                              rel=1e-2)
        assert result[mode]["ms_compiled"] is None  # --no-compiled
        assert result[mode]["peak_mem_fused_mb"] > 0 and result[mode]["peak_mem_eager_mb"] > 0
    for inputs in ("sharp", "soft"):
        assert result[inputs]["inputs"]
        for mode in ("fwd", "fwdbwd"):
            figures = result[inputs][mode]
            assert BEST_EAGER_KEYS <= set(figures)
            assert figures["ms_fused"] > 0 and figures["ms_best_eager"] > 0
            assert figures["speedup_best_eager"] == pytest.approx(figures["ms_best_eager"] / figures["ms_fused"],
                                                                  rel=2e-2)
            for kind in ("fused", "best_eager"):
                spread = figures["spread_ms"][kind]
                assert 0 < spread["min"] <= spread["median"] <= spread["max"]
            rounds = figures["speedup_per_round"]["best_eager"]
            assert 0 < rounds["min"] <= rounds["median"] <= rounds["max"]
            # a round's ratio lies between the ratios of the extreme calls (each figure rounded to 3 decimals)
            best, fused, half = figures["spread_ms"]["best_eager"], figures["spread_ms"]["fused"], 5e-4
            assert (best["min"] - half) / (fused["max"] + half) - half <= rounds["min"]
            assert rounds["max"] <= (best["max"] + half) / (fused["min"] - half) + half
            assert figures["ms_best_eager_compiled"] is None and figures["speedup_best_eager_compiled"] is None
            assert figures["speedup_per_round"]["best_eager_compiled"] is None
    assert result["best_eager_compiled_error"] == bench_eager.NOT_ASKED
    assert result["baselines_subnormals"] == "kept"


@needs_cpp
def test_flush_denormal_makes_the_baselines_flush_too(capsys):
    """--flush-denormal turns torch's flush on for the whole run (the CPU kernels flush either way)."""
    try:
        cli.main(["bench", "machine", "--batch", "2", "--steps", "2", "--repeats", "1", "--no-compiled",
                  "--threads", "1", "--flush-denormal", "--json"])
        assert float(torch.tensor([1e-39]) * 1.0) == 0.0  # torch's own arithmetic now flushes
    finally:
        torch.set_flush_denormal(False)
    assert json.loads(capsys.readouterr().out)["baselines_subnormals"] == "flushed"
    assert float(torch.tensor([1e-39]) * 1.0) > 0.0


@needs_cpp
def test_baseline_threads_run_the_baselines_on_their_own_thread_count(monkeypatch, capsys):
    """--threads 2 --baseline-threads 1: every timed fused call on two threads, every timed baseline (the
    reference's eager run and the best eager) on one, and torch's count restored after. (The memory measurement
    is not timed and runs on --threads.)"""
    seen, measuring = [], []
    program_run, eager_run, peak_memory = Program.run, bench_eager.eager.run, bench._peak_memory

    def record_program_run(self, *args, backend=None, **kwargs):
        if not measuring:
            seen.append(("fused" if backend == "cpp" else backend, torch.get_num_threads()))
        return program_run(self, *args, backend=backend, **kwargs)

    def untimed_peak_memory(*args, **kwargs):
        measuring.append(True)
        try:
            return peak_memory(*args, **kwargs)
        finally:
            measuring.clear()

    def record_eager_run(*args, **kwargs):
        seen.append(("best_eager", torch.get_num_threads()))
        return eager_run(*args, **kwargs)

    monkeypatch.setattr(Program, "run", record_program_run)
    monkeypatch.setattr(bench_eager.eager, "run", record_eager_run)
    monkeypatch.setattr(bench, "_peak_memory", untimed_peak_memory)
    before = torch.get_num_threads()
    cli.main(["bench", "machine", "--batch", "2", "--steps", "2", "--repeats", "1", "--no-compiled",
              "--threads", "2", "--baseline-threads", "1", "--json"])
    result = json.loads(capsys.readouterr().out)
    assert (result["threads"], result["baseline_threads"]) == (2, 1)
    assert torch.get_num_threads() == before
    assert {kind for kind, _ in seen} == {"fused", "reference", "best_eager"}
    wrong = [(kind, threads) for kind, threads in seen if threads != (2 if kind == "fused" else 1)]
    assert not wrong, (wrong, len(seen))


def _sections(**kwargs) -> dict:
    config = MachineConfig(n=bench.N, cells=bench.CELLS, registers=bench.REGISTERS, stack=bench.STACK)
    return bench_eager.best_eager_sections(bench.LOOP, config, bench.machine_inputs(2, 3), 2, 3, 1,
                                           torch.device("cpu"), "cpp", **kwargs)


@needs_cpp
def test_a_failing_compiler_gives_null_figures_and_the_reason(monkeypatch):
    """As on a machine without a C++ compiler: torch.compile returns, and its first call raises."""
    def compile_without_compiler(fn, **kwargs):
        def compiled(*args, **kw):
            raise RuntimeError("InductorError: no working C++ compiler found\nmore detail")
        return compiled

    monkeypatch.setattr(torch, "compile", compile_without_compiler)
    result = _sections(compiled=True)
    assert result["best_eager_compiled_error"] == ("torch.compile failed: RuntimeError: InductorError: no working "
                                                   "C++ compiler found")
    for inputs in ("sharp", "soft"):
        for mode in ("fwd", "fwdbwd"):
            figures = result[inputs][mode]
            assert figures["ms_best_eager"] > 0 and figures["ms_best_eager_compiled"] is None
            assert figures["speedup_best_eager_compiled"] is None
            assert figures["spread_ms"]["best_eager_compiled"] is None
            assert figures["speedup_per_round"]["best_eager_compiled"] is None


@pytest.mark.slow
@needs_cpp
def test_compiled_best_eager_is_timed():
    """torch.compile of the best-eager step at a tiny size (its compilations take about a minute each)."""
    result = _sections(compiled=True)
    assert result["best_eager_compiled_error"] is None
    for inputs in ("sharp", "soft"):
        for mode in ("fwd", "fwdbwd"):
            figures = result[inputs][mode]
            assert figures["ms_best_eager_compiled"] > 0 and figures["speedup_best_eager_compiled"] > 0
            assert figures["speedup_per_round"]["best_eager_compiled"]["median"] > 0


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


def test_case_for_names_the_inputs_it_knows():
    """The benchmarks' one source of the sharp and soft cases refuses any other name."""
    config = MachineConfig(n=bench.N, cells=bench.CELLS, registers=bench.REGISTERS, stack=bench.STACK)
    program, regs, mem, what = bench_eager.case_for("soft", bench.LOOP, config, bench.machine_inputs(2, 3), 2)
    assert regs.shape == (2, bench.REGISTERS, bench.N) and bool((regs > 0).all()) and "softmax" in what
    with pytest.raises(ValueError, match="name must be one of"):
        bench_eager.case_for("dense", bench.LOOP, config, bench.machine_inputs(2, 3), 2)


@pytest.mark.parametrize("chunk", [0, -2, 1.5, True])
def test_a_bad_chunk_is_refused_before_anything_runs(chunk):
    """None is the default (Program.run's); anything but an int >= 1 is a ValueError naming it."""
    with pytest.raises(ValueError, match="chunk must be an int >= 1"):
        bench.machine_bench(chunk=chunk)
