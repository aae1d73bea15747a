"""The ``ncl`` command's error contract: a bad argument, a bad ``NCL_BACKEND``, a missing or damaged run directory
give exactly one non-empty line on stderr, ``ncl <command>: error: ...`` naming the argument (and the accepted
values), exit status 2, and no traceback. Every case fails before any training or timing starts.

Argument errors run the CLI as a subprocess (0.2 s each: nothing heavy is imported). A command that reads a run
directory imports the training stack (seconds), so each kind of damaged directory runs once as a subprocess and
the other cases in this process (``cli.main`` with stderr captured: an exception other than the expected ones
would propagate and fail the test).
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ncl import cli
from ncl.tasks import names as task_names

ROOT = Path(__file__).parents[1]
TASK = task_names()[0]


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "NCL_BACKEND"}
    environ.update(env or {})
    return subprocess.run([sys.executable, "-m", "ncl.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          env=environ, timeout=300)


def run_in_process(*args: str) -> subprocess.CompletedProcess:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            code = cli.main(list(args))
        except SystemExit as exc:
            code = exc.code
    return subprocess.CompletedProcess(["ncl", *args], code, "", err.getvalue())


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr and len(lines) == 1, proc.stderr[-2000:]
    assert lines[0].startswith("ncl") and ": error: " in lines[0], lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


TRAIN = ["train", "--task", TASK, "--out"]

# (argv with {tmp} for a fresh directory, what the line must contain)
BAD_ARGUMENTS = [
    (["bench", "machine", "--threads", "-1"], ["argument --threads", ">= 1 (an integer)", "'-1'"]),
    (["bench", "machine", "--threads", "0"], ["argument --threads", ">= 1 (an integer)"]),
    (["bench", "machine", "--threads", "two"], ["argument --threads", "'two'"]),
    ([*TRAIN, "{tmp}", "--threads", "0"], ["ncl train: error: argument --threads", ">= 1 (an integer)"]),
    ([*TRAIN, "{tmp}", "--threads", "-3"], ["argument --threads", ">= 1 (an integer)"]),
    (["eval", "{tmp}", "--threads", "x"], ["ncl eval: error: argument --threads", ">= 1 (an integer)"]),
    ([*TRAIN, "{tmp}", "--lr", "-1"], ["argument --lr", "> 0 (a finite number)", "'-1'"]),
    ([*TRAIN, "{tmp}", "--lr", "nan"], ["argument --lr", "> 0 (a finite number)"]),
    ([*TRAIN, "{tmp}", "--lr", "fast"], ["argument --lr", "'fast'"]),
    ([*TRAIN, "{tmp}", "--aux", "-0.5"], ["argument --aux", ">= 0 (a finite number)"]),
    ([*TRAIN, "{tmp}", "--weight-decay", "-0.1"], ["argument --weight-decay", ">= 0 (a finite number)"]),
    ([*TRAIN, "{tmp}", "--time-limit", "0"], ["argument --time-limit", "> 0"]),
    ([*TRAIN, "{tmp}", "--steps", "0"], ["argument --steps", ">= 1 (an integer)"]),
    ([*TRAIN, "{tmp}", "--split", "-1"], ["argument --split", ">= 0 (an integer)"]),
    (["bench", "memory", "--size", "1,2"], ["argument --size", "B,N,D,H", "'1,2'"]),
    (["bench", "memory", "--size", "a,b,c,d"], ["argument --size", "four integers >= 1", "'a,b,c,d'"]),
    (["bench", "memory", "--size", "4,0,8,1"], ["argument --size", "four integers >= 1"]),
    (["bench", "memory", "--repeats", "0"], ["argument --repeats", ">= 1 (an integer)"]),
    (["bench", "machine", "--batch", "-2"], ["argument --batch", ">= 1 (an integer)"]),
    (["bench", "machine", "--backend", "bogus"], ["argument --backend", "reference, cpp, triton, cuda", "'bogus'"]),
    (["bench", "gpu"], ["argument suite", "invalid choice: 'gpu'", "'memory', 'machine'"]),
    (["train", "--task", "nope", "--out", "{tmp}"], ["argument --task", "invalid choice: 'nope'", f"'{TASK}'"]),
    (["train", "--task", TASK], ["required: --out"]),
    ([*TRAIN, "{tmp}", "--model", "gpt"], ["argument --model", "'augmented', 'llama'"]),
    (["frobnicate"], ["ncl: error: argument command", "'train'"]),
    ([], ["ncl: error:", "command"]),
]


@pytest.mark.parametrize("argv, needles", BAD_ARGUMENTS, ids=[" ".join(argv) or "(none)" for argv, _ in BAD_ARGUMENTS])
def test_bad_arguments(tmp_path, argv, needles):
    proc = run_cli(*(a.format(tmp=tmp_path / "run") for a in argv))
    assert_one_line_error(proc, *needles)
    assert not (tmp_path / "run").exists()  # nothing ran


@pytest.mark.parametrize("argv", [["bench", "memory"], [*TRAIN, "{tmp}"], ["eval", "{tmp}"], ["demo"]])
def test_bad_backend_from_the_environment(tmp_path, argv):
    proc = run_cli(*(a.format(tmp=tmp_path / "run") for a in argv), env={"NCL_BACKEND": "bogus"})
    assert_one_line_error(proc, "NCL_BACKEND='bogus' in the environment", "reference, cpp, triton, cuda")


def test_info_runs_whatever_ncl_backend_says(monkeypatch, capsys):
    monkeypatch.setenv("NCL_BACKEND", "bogus")
    assert cli.main(["info", "--json"]) == 0
    assert '"backends"' in capsys.readouterr().out


def test_the_backend_names_are_the_dispatchers():
    from ncl_kernels import dispatch

    assert cli.BACKENDS == dispatch.BACKENDS


# --- run directories ----------------------------------------------------------------------------------------

def _checkpoint(run_dir: Path) -> Path:
    """A small valid checkpoint (not of a real model: the errors below come before the model is built)."""
    import torch

    from ncl.training import TrainConfig
    from ncl.training.checkpoints import write_checkpoint

    return write_checkpoint(run_dir, {"model": {"w": torch.zeros(64)}, "optimizer": {"state": {}, "param_groups": []},
                                      "step": 1, "elapsed": 0.0, "config": TrainConfig(task=TASK).to_dict()})


def damaged(tmp_path: Path, how: str) -> Path:
    run = tmp_path / "run"
    if how == "missing":
        return run
    run.mkdir()
    if how == "empty":
        return run
    if how == "text checkpoint.pt":
        (run / "checkpoint.pt").write_text("this is not a checkpoint\n")
        return run
    if how == "truncated checkpoint.pt":  # an old pickle checkpoint cut short (a zip archive without its end)
        import torch

        torch.save({"model": {"w": torch.zeros(1000)}, "step": 3}, run / "checkpoint.pt")
        data = (run / "checkpoint.pt").read_bytes()
        (run / "checkpoint.pt").write_bytes(data[: len(data) // 2])
        return run
    if how == "not a directory":
        run.rmdir()
        run.write_text("a file\n")
        return run
    ckpt = _checkpoint(run)
    if how == "truncated tensors":
        data = (ckpt / "model.safetensors").read_bytes()
        (ckpt / "model.safetensors").write_bytes(data[: len(data) // 2])
    elif how == "text pointer":
        (run / "latest.json").write_text("checkpoint-1\n")
    elif how == "pointer to nothing":
        (run / "latest.json").write_text('{"format": "ncl-checkpoint", "version": 1, "checkpoint": "gone"}\n')
    elif how == "garbage meta":
        (ckpt / "checkpoint.json").write_bytes(os.urandom(64))
    elif how == "text tensors":
        (ckpt / "model.safetensors").write_text("this is not a checkpoint\n")
    # "foreign weights": a sound checkpoint whose weights are not the model's (another version's)
    return run


RUNS = [("missing", ["no checkpoint in"]), ("empty", ["no checkpoint in"]), ("not a directory", ["Not a directory"]),
        ("text checkpoint.pt", ["old pickle format", "ncl convert"]),
        ("truncated checkpoint.pt", ["checkpoint.pt", "old pickle format", "ncl convert"]),
        ("truncated tensors", ["model.safetensors"]), ("text tensors", ["model.safetensors"]),
        ("foreign weights", ["do not fit the model", "1 unexpected", "another version"]),
        ("text pointer", ["latest.json"]), ("pointer to nothing", ["latest.json"]),
        ("garbage meta", ["checkpoint.json"])]


def runner(index: int):
    """The first case of a group as a subprocess, the others in this process."""
    return run_cli if index == 0 else run_in_process


@pytest.mark.parametrize("index, how, needles", [(i, *case) for i, case in enumerate(RUNS)], ids=[h for h, _ in RUNS])
def test_eval_of_a_bad_run_directory(tmp_path, index, how, needles):
    run = damaged(tmp_path, how)
    assert_one_line_error(runner(index)("eval", str(run), "--count", "1"), "ncl eval: error:", *needles)


RESUMES = [("truncated tensors", "model.safetensors"), ("text pointer", "latest.json"),
           ("text checkpoint.pt", "checkpoint.pt"), ("truncated checkpoint.pt", "checkpoint.pt"),
           ("text tensors", "model.safetensors"), ("foreign weights", "do not fit the model")]


@pytest.mark.parametrize("index, how, file", [(i, *case) for i, case in enumerate(RESUMES)],
                         ids=[h for h, _ in RESUMES])
def test_resume_from_a_bad_run_directory(tmp_path, index, how, file):
    run = damaged(tmp_path, how)
    proc = runner(index)(*TRAIN, str(run), "--resume", "--quiet", "--threads", "1")
    assert_one_line_error(proc, "ncl train: error:", file)


@pytest.mark.parametrize("index, how, needles", [(0, "text checkpoint.pt", ["checkpoint.pt"]),
                                                 (1, "missing", ["nothing to convert"]),
                                                 (2, "empty", ["nothing to convert"]),
                                                 (3, "truncated checkpoint.pt",
                                                  ["checkpoint.pt cannot be read", "damaged or truncated",
                                                   "failed reading zip archive"])])
def test_convert_of_a_bad_run_directory(tmp_path, index, how, needles):
    run = damaged(tmp_path, how)
    assert_one_line_error(runner(index)("convert", str(run)), "ncl convert: error:", *needles)


def test_eval_reuse_of_a_damaged_eval_json(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "eval.json").write_text('{"task": "add", "splits": ')
    assert_one_line_error(run_in_process("eval", str(run), "--reuse"), "ncl eval: error:", "eval.json")


def test_the_handler_reports_expected_errors_and_raises_the_rest(monkeypatch, capsys):
    def fails(exc):
        def command(args):
            raise exc
        return command

    for exc, text in [(ValueError("bad value\nsecond line"), "bad value; second line"),
                      (KeyError("mystery"), "unknown name 'mystery'"),
                      (FileNotFoundError("no such file"), "no such file")]:
        monkeypatch.setattr(cli, "_info", fails(exc))
        assert cli.main(["info"]) == 2
        err = capsys.readouterr().err
        assert err == f"ncl info: error: {text}\n", err
    monkeypatch.setattr(cli, "_info", fails(RuntimeError("a bug")))
    with pytest.raises(RuntimeError, match="a bug"):
        cli.main(["info"])
