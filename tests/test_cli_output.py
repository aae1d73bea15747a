"""What the ``ncl`` command says when nothing is wrong: ``ncl --help`` describes the tool, every option's help
shows its default, a run stopped by its time limit says so, and ``ncl bench`` shows progress, the spread of its
timings (with a warning when the spread says the machine was loaded) and has a ``--quick`` preset."""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ncl import cli, cli_train
from ncl.tasks import names as task_names
from ncl_kernels import dispatch
from ncl_kernels.benchmarking import LOADED_SPREAD, format_table, interleaved_samples, spread_warning, stats_of

ROOT = Path(__file__).parents[1]
needs_cpp = pytest.mark.skipif(dispatch.unavailable_reason("cpp") is not None, reason="needs the cpp backend")


def parsers() -> dict[str, argparse.ArgumentParser]:
    root = cli.build_parser()
    (commands,) = [a for a in root._actions if isinstance(a, argparse._SubParsersAction)]
    return {"ncl": root, **{f"ncl {name}": p for name, p in commands.choices.items()}}


def test_ncl_help_describes_the_tool():
    proc = subprocess.run([sys.executable, "-m", "ncl.cli", "--help"], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "differentiable computer" in proc.stdout and "The ``ncl`` command" not in proc.stdout
    for command in ("ncl info", "ncl demo", "ncl bench", "ncl train", "ncl eval"):
        assert command in proc.stdout


@pytest.mark.parametrize("name", list(parsers()))
def test_every_option_shows_its_default(name):
    parser = parsers()[name]
    formatter = parser._get_formatter()
    for action in parser._actions:
        if not action.option_strings or action.nargs == 0 or action.required:
            continue  # positionals, flags (off unless given), --help, and options that must be given
        text = formatter._expand_help(action)
        assert "default" in text, f"{name} {action.option_strings[0]}: {text!r}"


def test_help_shows_the_values():
    train = parsers()["ncl train"].format_help()
    for default in ("(default: 840.0)", "(default: 16)", "(default: 1500)", "(default: 0.002)"):
        assert default in re.sub(r"\s+", " ", train), default
    bench = re.sub(r"\s+", " ", parsers()["ncl bench"].format_help())
    assert "(default: 32; --quick: 8)" in bench and "(default: table)" in bench


def test_train_defaults_are_the_configs():
    from ncl.training import TrainConfig

    cfg = TrainConfig()
    for name, value in cli_train.TRAIN_DEFAULTS.items():
        actual = getattr(cfg, name) if hasattr(cfg, name) else getattr(cfg.computer, name)
        assert actual == value, (name, actual, value)


def test_a_time_limit_stop_says_so(tmp_path, capsys):
    argv = ["train", "--task", task_names()[0], "--out", str(tmp_path / "run"), "--layers", "1", "--split", "1",
            "--batch-size", "2", "--threads", "1", "--quiet", "--steps", "50", "--time-limit", "0.001"]
    assert cli.main(argv) == 0
    err = capsys.readouterr().err
    assert re.search(r"^stopped by the time limit at step \d+ of 50 ", err, re.M), err


def test_a_task_may_train_longer_by_default(tmp_path, capsys):
    """mix_nested's own default steps, as --help says; --steps still wins."""
    from ncl.tasks import mix

    assert f"optimizer steps, {mix.NESTED_TRAIN_STEPS} for --task mix_nested" in re.sub(
        r"\s+", " ", parsers()["ncl train"].format_help())
    for given, steps in (([], mix.NESTED_TRAIN_STEPS), (["--steps", "40"], 40)):
        argv = ["train", "--task", "mix_nested", "--out", str(tmp_path / f"run{steps}"), "--layers", "1",
                "--split", "1", "--batch-size", "2", "--threads", "1", "--quiet", "--time-limit", "0.001", *given]
        assert cli.main(argv) == 0
        assert re.search(rf"^stopped by the time limit at step \d+ of {steps} ", capsys.readouterr().err, re.M)


def test_a_resumed_run_keeps_its_steps_unless_given(tmp_path):
    """--resume without --steps or --time-limit keeps the run's own (it once went on to the default 1500)."""
    out = tmp_path / "run"
    argv = ["train", "--task", task_names()[0], "--out", str(out), "--layers", "1", "--split", "1",
            "--batch-size", "2", "--threads", "1", "--quiet"]
    assert cli.main(argv + ["--steps", "2", "--time-limit", "120"]) == 0
    assert cli.main(argv + ["--resume"]) == 0
    assert json.loads((out / "latest.json").read_text())["step"] == 2
    assert cli.main(argv + ["--resume", "--steps", "3"]) == 0
    assert json.loads((out / "latest.json").read_text())["step"] == 3


def test_a_time_schedule_ends_at_its_budget_with_the_rate_decayed(tmp_path, capsys):
    """--schedule time: the run ends at the time limit (not a warning: the plan), its cosine finished."""
    from ncl.training import TrainConfig
    from ncl.training.loop import learning_rate

    cfg = TrainConfig(schedule="time", time_limit=100.0, steps=10**6, warmup=2)
    assert learning_rate(cfg, 1) == cfg.lr  # the warm-up still counts steps
    assert learning_rate(cfg, 50, elapsed=0.0) == cfg.lr
    assert abs(learning_rate(cfg, 50, elapsed=50.0) - cfg.lr * 0.55) < 1e-12  # half way down to 10 %
    assert abs(learning_rate(cfg, 3, elapsed=100.0) - cfg.lr * 0.1) < 1e-12  # the step count plays no part
    run = tmp_path / "run"
    argv = ["train", "--task", task_names()[0], "--out", str(run), "--layers", "1", "--split", "1", "--model",
            "llama", "--batch-size", "2", "--threads", "1", "--quiet", "--steps", "1000000", "--schedule", "time",
            "--time-limit", "2", "--log-every", "1"]
    assert cli.main(argv) == 0
    assert "stopped by the time limit" not in capsys.readouterr().err
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["event"] == "end" and 2.0 <= lines[-1]["elapsed"] < 10.0
    rates = [x["lr"] for x in lines if "lr" in x]
    assert len(rates) > 3 and rates[-1] < 0.2 * TrainConfig().lr  # it decayed by the clock, to near 10 %


def test_spread_warning():
    assert spread_warning("x", {"min": 1.0, "median": 1.1, "max": 1.2}) is None
    warning = spread_warning("fused fwd", {"min": 1.0, "median": 2.0, "max": LOADED_SPREAD + 1.0})
    assert warning.startswith("fused fwd: ") and "loaded" in warning


def test_interleaved_samples_time_each_run_once_a_round_in_its_context():
    """Round by round, every run once and in order, inside its own context (entered and left around each call),
    so that a drift of the machine between rounds reaches every run of a round alike."""
    order, inside = [], []

    @contextlib.contextmanager
    def context(name):
        inside.append(name)
        yield
        inside.remove(name)

    def run(name):
        assert inside == [name]
        order.append(name)

    samples = interleaved_samples({"a": lambda: run("a"), "b": lambda: run("b")}, "cpu", 3, context)
    assert order == ["a", "b"] * 3 and inside == []
    assert set(samples) == {"a", "b"} and all(len(ms) == 3 and min(ms) >= 0 for ms in samples.values())
    assert stats_of([3.0, 1.0, 2.0]) == {"min": 1.0, "median": 2.0, "max": 3.0}


@needs_cpp
def test_bench_machine_quick_shows_progress_and_spread(capsys):
    assert cli.main(["bench", "machine", "--quick", "--steps", "4", "--threads", "1", "--json"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert result["sizes"]["B"] == cli.BENCH_QUICK["batch"] and result["sizes"]["steps"] == 4  # an option wins
    assert "bench machine" in captured.err  # the progress bar
    for mode in ("fwd", "fwdbwd"):
        assert result[mode]["ms_compiled"] is None  # --quick skips torch.compile
        for kind, s in result[mode]["spread_ms"].items():
            assert 0 < s["min"] <= s["median"] <= s["max"], (mode, kind, s)
        assert result[mode]["spread_ms"]["fused"]["median"] == result[mode]["ms_fused"]
    assert isinstance(result["warnings"], list)


@needs_cpp
def test_bench_machine_warns_when_the_timings_say_the_machine_is_loaded(monkeypatch, capsys):
    from ncl.machine import bench

    calls = []

    def fake_stats(run, device, repeats, warmup, tick):
        run()
        calls.append(1)
        slow = 10.0 if len(calls) <= 2 else 1.0  # the forward figures (fused, eager) slower than fwd+bwd
        return {"min": slow, "median": slow, "max": slow * (LOADED_SPREAD + 1 if len(calls) == 1 else 1)}

    monkeypatch.setattr(bench, "time_stats", fake_stats)
    assert cli.main(["bench", "machine", "--quick", "--steps", "2", "--threads", "1"]) == 0
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if line.startswith("ncl bench machine: warning: ")]
    assert any("fwd fused: the slowest call" in w for w in warnings), err
    assert any("eager: the forward alone" in w for w in warnings), err


@needs_cpp
def test_bench_memory_reports_min_median_max(capsys):
    assert cli.main(["bench", "memory", "--size", "2,8,4,1", "--repeats", "2", "--no-compiled", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 6  # three ops, fwd and fwdbwd
    for row in rows:
        assert row["ms_fused_min"] <= row["ms_fused"] <= row["ms_fused_max"]
        assert row["ms_compiled"] is None and row["speedup_compiled"] is None
    assert "n/a" in format_table(rows)
