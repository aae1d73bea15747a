"""Training survives being killed: ``ncl train`` is killed with SIGKILL at random moments (a seeded RNG picks
them), half of them inside a checkpoint write, and resumed with ``--resume`` each time. After every kill every
checkpoint on disk must load; at the end the weights, the optimizer state and the logged losses must equal an
uninterrupted run's bit for bit.

``NCL_TEST_SLOW_WRITE`` (the test hook of ncl.training.checkpoints) makes each step of a checkpoint write take a
few milliseconds, so that a kill can land between the files of a checkpoint, between its rename and the pointer,
or while older checkpoints are removed. CI: 6 kills on a 40-step run (about 40 s on 2 cores, most of it the
start-up of each resumed process); ``NCL_THOROUGH=1``: 30 kills on 150 steps.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import torch

from ncl import cli
from ncl.training import LATEST, METRICS, checkpoint_dirs, load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
THOROUGH = os.environ.get("NCL_THOROUGH", "") not in ("", "0")
KILLS, STEPS = (30, 150) if THOROUGH else (6, 40)
EVERY = 2  # --checkpoint-every: most of a step's time then goes to writing
SLOW = 0.03  # seconds each pause of a checkpoint write lasts (five pauses per write)
ARGS = ["--task", "sort", "--layers", "2", "--split", "1", "--batch-size", "4", "--threads", "1", "--quiet",
        "--log-every", "1", "--checkpoint-every", str(EVERY), "--steps", str(STEPS)]


def _start(out: Path, resume: bool, log) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "ncl.cli", "train", "--out", str(out), *ARGS, *(["--resume"] if resume else [])]
    env = dict(os.environ, NCL_TEST_SLOW_WRITE=str(SLOW), OMP_NUM_THREADS="1")
    return subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log)


def _pointer_step(out: Path) -> int:
    try:
        return json.loads((out / LATEST).read_text())["step"]
    except (FileNotFoundError, ValueError):  # not there yet, or (never) being replaced
        return -1


def _wait(proc: subprocess.Popen, ready, timeout: float = 120.0) -> bool:
    """Poll until ``ready()``; False if the process ended first."""
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            return False
        if ready():
            return True
        time.sleep(0.002)
    raise TimeoutError("the training process made no progress")


def _landing(out: Path) -> str:
    """Where the kill landed, from what it left on disk."""
    names = [p.name for p in out.iterdir()]
    if any(".tmp-" in n and n.startswith("checkpoint-") for n in names):
        return "writing a checkpoint's files"
    if any(n.startswith(f"{LATEST}.tmp-") for n in names):
        return "replacing latest.json"
    complete = [p.name for p in checkpoint_dirs(out)]
    pointed = json.loads((out / LATEST).read_text())["checkpoint"] if (out / LATEST).exists() else ""
    if any(n > pointed for n in complete):
        return "after the rename, before latest.json"
    if len(complete) > 1 or any(".trash-" in n for n in names):
        return "removing the older checkpoint"
    return "training (a step, the log, a pause after the pointer)"


def _check_readable(out: Path) -> int:
    """Every checkpoint on disk loads (the one latest.json names, and any other complete one); the step of the
    current one, -1 if the first is not committed yet (then the run starts afresh)."""
    for d in checkpoint_dirs(out):
        load_checkpoint(d)
    return load_checkpoint(out)["step"] if (out / LATEST).exists() else -1


def _losses(out: Path) -> list:
    lines = [json.loads(x) for x in (out / METRICS).read_text().splitlines()]
    return [(x["step"], x["loss"], x["lm_loss"], x["aux_loss"], x["grad_norm"]) for x in lines if "loss" in x]


@pytest.mark.slow
def test_training_survives_sigkill(tmp_path):
    t0 = time.time()
    ref = tmp_path / "uninterrupted"
    assert cli.main(["train", "--out", str(ref), *ARGS]) == 0
    out = tmp_path / "killed"
    rng = random.Random(18)
    landed, steps_at_kill = Counter(), []
    last_step, resume = -1, False
    with open(tmp_path / "stderr.txt", "w") as log:
        while len(steps_at_kill) < KILLS:
            start = max(last_step, 0)
            proc = _start(out, resume, log)
            target = start + EVERY * rng.randint(1, 4)  # one of the first four checkpoints this run writes
            if rng.random() < 0.5:  # inside a write: as soon as that checkpoint's temporary directory appears
                alive = _wait(proc, lambda: any(int(p.name[11:19]) >= target for p in out.glob("checkpoint-*.tmp-*")))
                delay = rng.uniform(0, 5 * SLOW)
            else:  # anywhere: once that checkpoint is committed, a random time later
                alive = _wait(proc, lambda: _pointer_step(out) >= target)
                delay = rng.uniform(0, 0.3)
            if alive:
                time.sleep(delay)
            if proc.poll() is not None:  # the run finished before this kill
                assert proc.returncode == 0, (tmp_path / "stderr.txt").read_text()[-3000:]
                break
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            landed[_landing(out)] += 1
            step = _check_readable(out)
            assert step >= last_step, "the checkpoint went back in time"
            last_step, resume = step, step >= 0
            steps_at_kill.append(step)
        if proc.returncode != 0:  # the last one was killed: finish the run
            proc = _start(out, resume, log)
            assert proc.wait(timeout=300) == 0, (tmp_path / "stderr.txt").read_text()[-3000:]
    print(f"\n{len(steps_at_kill)} kills in {time.time() - t0:.0f} s; checkpoint step after each: {steps_at_kill}; "
          f"landed: {dict(landed)}")
    assert len(steps_at_kill) >= KILLS // 2, steps_at_kill
    assert landed["writing a checkpoint's files"] + landed["after the rename, before latest.json"] + \
        landed["replacing latest.json"] + landed["removing the older checkpoint"] >= 1, landed
    a, b = load_checkpoint(ref), load_checkpoint(out)
    assert a["step"] == b["step"] == STEPS
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    assert a["optimizer"]["state"].keys() == b["optimizer"]["state"].keys()
    for i, state in a["optimizer"]["state"].items():
        for k, v in state.items():
            assert torch.equal(v, b["optimizer"]["state"][i][k]), (i, k)
    assert a["optimizer"]["param_groups"] == b["optimizer"]["param_groups"]
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])
    # the log holds each step once (a resume cuts the lines of the steps it redoes), with the same numbers
    assert _losses(out) == _losses(ref) and [x[0] for x in _losses(out)] == list(range(1, STEPS + 1))
    # and what the kills left behind is gone
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in ref.iterdir())
