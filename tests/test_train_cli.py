"""The training CLI: checkpoints and bit-exact resume, deterministic eval, clear errors, DDP on 2 CPU processes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ncl import cli
from ncl.train import CHECKPOINT, METRICS

TINY = ["--layers", "2", "--split", "1", "--batch-size", "4", "--threads", "1", "--quiet", "--log-every", "1"]


def _train(out, *extra):
    return cli.main(["train", "--task", "add", "--out", str(out), *TINY, *extra])


def test_resume_is_bit_exact(tmp_path):
    assert _train(tmp_path / "a", "--steps", "4", "--checkpoint-every", "2") == 0
    assert _train(tmp_path / "b", "--steps", "2") == 0
    assert _train(tmp_path / "b", "--steps", "4", "--resume") == 0
    a = torch.load(tmp_path / "a" / CHECKPOINT, weights_only=False)
    b = torch.load(tmp_path / "b" / CHECKPOINT, weights_only=False)
    assert a["step"] == b["step"] == 4
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    lines = [json.loads(x) for x in (tmp_path / "a" / METRICS).read_text().splitlines()]
    assert [x["step"] for x in lines if "loss" in x] == [1, 2, 3, 4]
    assert not list((tmp_path / "a").glob("*.tmp*"))  # atomic writes leave no temporary file


def test_eval_is_deterministic_and_writes_plots(tmp_path, capsys):
    out = tmp_path / "run"
    assert _train(out, "--steps", "2") == 0
    base = tmp_path / "base"
    assert _train(base, "--steps", "2", "--model", "llama") == 0
    capsys.readouterr()
    results = []
    for _ in range(2):
        assert cli.main(["eval", str(out), "--json", "--count", "4", "--compare", str(base)]) == 0
        results.append(json.loads(capsys.readouterr().out))
    assert results[0] == results[1]
    r = results[0]
    assert r["task"] == "add" and r["model"] == "augmented"
    assert set(r["splits"]) == {"test", "ood_2x", "ood_4x"}
    assert set(r["splits"]["test"]) == {"accuracy", "mean_steps", "unhalted"}
    assert (out / "accuracy.png").stat().st_size > 0 and (out / "halting_steps.png").exists()


def test_clear_errors(tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--task", "nope", "--out", str(tmp_path)])
    assert "invalid choice: 'nope'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["train", "--task", "add", "--out", str(tmp_path), "--steps", "0"])
    assert "must be >= 1" in capsys.readouterr().err
    assert cli.main(["train", "--task", "add", "--out", str(tmp_path / "x"), "--resume", "--quiet"]) == 2
    assert "no checkpoint" in capsys.readouterr().err
    assert cli.main(["train", "--task", "add", "--out", str(tmp_path), "--preset", "huge", "--quiet"]) == 2
    assert "unknown preset" in capsys.readouterr().err
    assert cli.main(["eval", str(tmp_path / "missing")]) == 2
    assert "no checkpoint" in capsys.readouterr().err


def test_ddp_two_cpu_processes(tmp_path):
    out = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29513",
           "-m", "ncl.cli", "train", "--task", "add", "--out", str(out), "--steps", "2", *TINY]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=Path(__file__).parents[1])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert torch.load(out / CHECKPOINT, weights_only=False)["step"] == 2
