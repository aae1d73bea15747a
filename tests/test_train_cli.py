"""The training CLI: checkpoints and bit-exact resume, deterministic eval, clear errors, DDP on 2 CPU processes;
the nested training config and the old flat form of saved configs."""

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from ncl import cli
from ncl.computer import DEFAULT_MACHINE, ComputerConfig
from ncl.computer.config import LEGACY_HEADS
from ncl.machine import MachineConfig
from ncl.training import (METRICS, TrainConfig, build_model, load_checkpoint, load_model, save_checkpoint,
                          write_checkpoint)

TINY = ["--layers", "2", "--split", "1", "--batch-size", "4", "--threads", "1", "--quiet", "--log-every", "1"]


def _train(out, *extra):
    return cli.main(["train", "--task", "sort", "--out", str(out), *TINY, *extra])


@pytest.mark.slow
def test_resume_is_bit_exact(tmp_path):
    assert _train(tmp_path / "a", "--steps", "4", "--checkpoint-every", "2") == 0
    assert _train(tmp_path / "b", "--steps", "2") == 0
    assert _train(tmp_path / "b", "--steps", "4", "--resume") == 0
    a = load_checkpoint(tmp_path / "a")
    b = load_checkpoint(tmp_path / "b")
    assert a["step"] == b["step"] == 4
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    lines = [json.loads(x) for x in (tmp_path / "a" / METRICS).read_text().splitlines()]
    assert [x["step"] for x in lines if "loss" in x] == [1, 2, 3, 4]
    assert not list((tmp_path / "a").glob("*.tmp*"))  # atomic writes leave no temporary file
    assert not list((tmp_path / "a").glob("*.trash*"))  # and the older checkpoints are gone


def test_weight_decay_reaches_the_optimizer(tmp_path):
    """``--weight-decay`` is saved in the run's config and shrinks the weights: the same two steps with and without
    it end with different weights."""
    assert _train(tmp_path / "plain", "--steps", "2") == 0
    assert _train(tmp_path / "decayed", "--steps", "2", "--weight-decay", "0.5") == 0
    plain, decayed = load_checkpoint(tmp_path / "plain"), load_checkpoint(tmp_path / "decayed")
    assert plain["config"]["weight_decay"] == 0.0 and decayed["config"]["weight_decay"] == 0.5
    assert any(not torch.equal(v, decayed["model"][k]) for k, v in plain["model"].items())


@pytest.mark.slow
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
    r, b = results[0]  # with --compare: one summary per run
    assert r["task"] == b["task"] == "sort" and r["model"] == "augmented" and b["model"] == "llama"
    assert set(r["splits"]) == {"test", "ood_2x", "ood_4x", "ood_8x"}
    assert set(r["splits"]["test"]) == {"accuracy", "count", "mean_steps", "unhalted"}
    assert (out / "accuracy.png").stat().st_size > 0 and (out / "halting_steps.png").exists()
    # any prompts, from a JSON-lines file: same task, whatever the sizes
    data = tmp_path / "mine.jsonl"
    data.write_text('{"prompt": "sort 31 4 77 =", "answer": "4 31 77 "}\n'
                    '{"prompt": "sort 9 8 7 6 5 4 3 2 1 0 =", "answer": "0 1 2 3 4 5 6 7 8 9 "}\n')
    assert cli.main(["eval", str(out), "--data", str(data), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["task"] == "sort" and r["splits"]["data"]["count"] == 2
    assert 0.0 <= r["splits"]["data"]["accuracy"] <= 1.0


def test_clear_errors(tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--task", "nope", "--out", str(tmp_path)])
    assert "invalid choice: 'nope'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["train", "--task", "sort", "--out", str(tmp_path), "--steps", "0"])
    assert "must be >= 1" in capsys.readouterr().err
    assert cli.main(["train", "--task", "sort", "--out", str(tmp_path / "x"), "--resume", "--quiet"]) == 2
    assert "no checkpoint" in capsys.readouterr().err
    assert cli.main(["train", "--task", "sort", "--out", str(tmp_path), "--preset", "huge", "--quiet"]) == 2
    assert "unknown preset" in capsys.readouterr().err
    assert cli.main(["eval", str(tmp_path / "missing")]) == 2
    assert "no checkpoint" in capsys.readouterr().err


@pytest.mark.slow
def test_ddp_two_cpu_processes(tmp_path):
    out = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29513",
           "-m", "ncl.cli", "train", "--task", "sort", "--out", str(out), "--steps", "2", *TINY]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=Path(__file__).parents[1])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert load_checkpoint(out)["step"] == 2


#: The ``config`` of a checkpoint written before the computer's configuration was nested (``ncl train --task sort
#: --steps 5 --seed 7 ...``): the computer's options at the top level, its machine implicit.
FLAT = {"task": "sort", "model": "augmented", "preset": "tiny", "layers": 2, "hidden": 0, "split": 1, "steps": 5,
        "batch_size": 4, "lr": 0.002, "warmup": 20, "weight_decay": 0.0, "clip": 1.0, "aux": 1.0, "mode": "mixture",
        "reader": "digits", "writer": "digits", "numbers": "learned", "top_k": 2, "train_max_steps": 0, "seed": 7,
        "log_every": 1, "checkpoint_every": 100, "time_limit": 840.0, "threads": 1, "extra": {}}


def test_config_nested_and_flat_forms():
    """TrainConfig nests ComputerConfig, which nests MachineConfig; from_dict reads the nested form (also after a
    JSON round trip) and the old flat forms."""
    cfg = TrainConfig(computer=ComputerConfig(machine=replace(DEFAULT_MACHINE, stack=16), mode="superposition",
                                              reader="digits", top_k=3), task="sort")
    assert isinstance(cfg.to_dict()["computer"]["machine"], dict)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    old = TrainConfig.from_dict(FLAT)
    assert old == TrainConfig(task="sort", layers=2, split=1, steps=5, batch_size=4, numbers="learned", seed=7,
                              log_every=1, threads=1, computer=ComputerConfig(reader="digits", writer="digits",
                                                                              **LEGACY_HEADS))
    assert old.computer == ComputerConfig(reader="digits", writer="digits", **LEGACY_HEADS)
    assert old.computer.machine == DEFAULT_MACHINE == MachineConfig(cells=32, stack=24, sharpness=120.0)
    flat = dict(FLAT, mode="superposition", top_k=1, reader="mlp", writer="embed")
    assert TrainConfig.from_dict(flat).computer == ComputerConfig(mode="superposition", top_k=1, **LEGACY_HEADS)
    # runs saved before reader, writer and numbers existed read with the MLP head, wrote embeddings, learned digits
    older = TrainConfig.from_dict({k: v for k, v in FLAT.items() if k not in ("reader", "writer", "numbers")})
    assert (older.computer.reader, older.computer.writer, older.numbers) == ("mlp", "embed", "learned")
    # ComputerConfig alone: nested, or flat with the machine's fields at the top level
    assert ComputerConfig.from_dict(cfg.computer.to_dict()) == cfg.computer
    assert ComputerConfig.from_dict({"n": 64, "cells": 16, "reader": "digits", "digit_tokens": list(range(10))}) == \
        ComputerConfig(machine=replace(DEFAULT_MACHINE, n=64, cells=16), reader="digits", digit_tokens=tuple(range(10)),
                       **LEGACY_HEADS)
    with pytest.raises(ValueError, match="digit_tokens"):
        replace(cfg, computer=replace(cfg.computer, digit_tokens=tuple(range(10)))).validate()


def test_flat_checkpoint_loads(tmp_path):
    """A run directory whose checkpoint holds the old flat config loads into the same model."""
    torch.manual_seed(0)
    cfg = TrainConfig.from_dict(dict(FLAT, train_max_steps=20))
    model = build_model(cfg)
    opt = torch.optim.AdamW(model.parameters())
    save_checkpoint(tmp_path, model, opt, 5, 1.0, cfg)
    ckpt = load_checkpoint(tmp_path)
    assert ckpt["config"]["computer"]["machine"]["cells"] == 32  # written nested
    ckpt["config"] = dict(FLAT, train_max_steps=20)
    write_checkpoint(tmp_path, ckpt)
    loaded, loaded_cfg, _ = load_model(tmp_path)
    assert loaded_cfg == cfg and loaded.computer.config == model.computer.config
    assert loaded.computer.config.max_steps == 20 and not loaded.training
    state = model.state_dict()
    assert all(torch.equal(v, state[k]) for k, v in loaded.state_dict().items())
