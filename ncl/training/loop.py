"""The training loop: ``ncl train`` (single process, or DDP under ``torchrun``).

Layout of a run directory:

- ``latest.json`` and ``checkpoint-<step>/``: the checkpoint (model, optimizer, RNG state, step, elapsed time,
  the full configuration, the last metrics) as safetensors and JSON, written so that a killed run always leaves
  a complete one (:mod:`ncl.training.checkpoints`);
- ``metrics.jsonl``: one JSON object per logged step (``loss``, ``lm_loss``, ``aux_loss``, ``grad_norm``,
  ``machine_steps``, ``unhalted``, ``elapsed``) and a final ``{"event": "end", ...}`` line;
- ``config.json``: the configuration, for people.

Batches depend only on ``(seed, rank, step)`` (:func:`ncl.training.data.batch_for_step`) and the checkpoint
holds the RNG state, so a resumed run resumes bit-exactly, also after ``kill -9`` (``tests/test_kill_resume.py``).
A checkpoint records how long ``metrics.jsonl`` was when it was written; a resumed run cuts the log back to that
length (the lines of steps it will redo, and the ``end`` line), so the log reads like an uninterrupted run's.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

import torch

from ncl import storage
from ncl import tasks as task_registry
from ncl.training.checkpoints import has_checkpoint, load_checkpoint, load_weights, save_checkpoint
from ncl.training.config import TrainConfig
from ncl.training.data import batch_for_step, encode, tokenizer
from ncl.training.discover import Discovered
from ncl.training.factory import build_model, resolve_numbers
from ncl.training.labels import Replay, drop_labels, labelled
from ncl.training.losses import aux_loss
from ncl.training.reinforce import reinforce_loss, sample_calls
from ncl.training.search import (PointerSearch, SearchResult, StepSearch, printed_right, search_loss, search_pointers,
                                 search_programs, search_steps, step_search_loss)

METRICS = "metrics.jsonl"


def learning_rate(cfg: TrainConfig, step: int, elapsed: float = 0.0) -> float:
    """Linear warmup over ``cfg.warmup`` steps, then cosine decay to 10% over ``cfg.steps`` or, with
    ``cfg.schedule == "time"``, over the ``cfg.time_limit`` seconds (``elapsed`` of them spent)."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    if cfg.schedule == "time":
        t = min(1.0, elapsed / cfg.time_limit)
    else:
        t = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))


def train(cfg: TrainConfig, out: str | os.PathLike, resume: bool = False, progress: bool = True) -> dict:
    """Train ``cfg`` into ``out``; returns the last logged metrics.

    Under ``torchrun`` (``WORLD_SIZE`` > 1) it runs DDP (gloo on CPU, nccl on GPU); rank 0 writes the files.
    """
    out = Path(out)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    ddp = world > 1
    device = torch.device("cpu")
    if ddp:
        # torch.distributed only under torchrun: a torch build may lack it, and single runs need not load it
        import torch.distributed as dist
        from torch.nn.parallel import DistributedDataParallel  # torch.distributed too (line above)

        if torch.cuda.is_available():
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    elif torch.cuda.is_available():
        device = torch.device("cuda")
    if resume:
        if not has_checkpoint(out):
            raise FileNotFoundError(f"--resume: no checkpoint in {out}")
        ckpt = load_checkpoint(out)
        saved = TrainConfig.from_dict(ckpt["config"])
        saved.steps, saved.time_limit = cfg.steps, cfg.time_limit  # a resumed run may be extended
        cfg = saved
    else:
        ckpt = None
        if has_checkpoint(out):
            raise FileExistsError(f"{out} already holds a run; pass --resume to continue it or pick another --out")
    cfg.validate()
    if cfg.model == "augmented":
        cfg.numbers = resolve_numbers(cfg)  # saved resolved: the checkpoint's layout must not depend on "auto"
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    task = task_registry.get(cfg.task)
    tok = tokenizer()
    model = build_model(cfg)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr,
                                  weight_decay=cfg.weight_decay)
    step, elapsed = 0, 0.0
    if ckpt is not None:
        load_weights(model, ckpt["model"], out)
        optimizer.load_state_dict(ckpt["optimizer"])
        step, elapsed = ckpt["step"], ckpt["elapsed"]
        _restore_rng(ckpt["rng"])
    model.to(device)
    module = model
    if ddp:
        model = DistributedDataParallel(model, find_unused_parameters=True)
    names = module.computer.program_names if module.has_computer else None
    cells = cfg.computer.reader == "cells"
    calls = module.computer.config.calls if module.has_computer else 0
    slots = module.computer.config.slots if module.has_computer else 0
    cue_focus = module.has_computer and module.computer.config.call_read == "text"
    target = "call" if cfg.model == "tooluse" else "answer"  # the tool-use baseline learns to write the call
    main = rank == 0
    if main:
        out.mkdir(parents=True, exist_ok=True)
        storage.write_json(out / "config.json", cfg.to_dict(), indent=1)
        _cut_metrics(out / METRICS, ckpt["metrics_bytes"] if ckpt is not None else 0)
    saved_step = step
    replay = Replay(task, cfg, rank, step) if cfg.replay else None  # (validate: only with 0 < labels < 1)
    discovered = Discovered.for_model(task, cfg, tok, module, progress and main) if cfg.discover else None
    if discovered is not None and main:
        storage.write_json(out / "discovered.json", discovered.record(), indent=1)
    bar = None
    if progress and main:
        from tqdm import tqdm  # only for the progress bar (rank 0, not --quiet)

        bar = tqdm(total=cfg.steps, initial=step, desc=f"{cfg.task}/{cfg.model}", dynamic_ncols=True)
    last = (ckpt["metrics"] or {}) if ckpt is not None else {}  # what a resume that trains no step returns
    start_time = time.time() - elapsed
    model.train()
    while step < cfg.steps:
        if time.time() - start_time > cfg.time_limit:
            break
        lr = learning_rate(cfg, step, time.time() - start_time)
        for g in optimizer.param_groups:
            g["lr"] = lr
        examples = batch_for_step(task, cfg, step, rank)
        if replay is not None:
            examples = replay.batch(examples, step)
        encoded = encode(examples, tok, names, cells=cells, target=target, calls=calls, slots=slots,
                         cue_focus=cue_focus)
        samples = search = explained = None
        if cfg.labels < 1:
            keep = labelled(examples, cfg.seed, cfg.labels)
            unlabelled = int((~keep).sum())
            if cfg.model == "tooluse":  # its label is the call text; the other examples train by REINFORCE
                if discovered is not None:  # the calls the search explains are labels too
                    examples, explained = discovered.relabel_calls(examples, ~keep)
                    encoded = encode(examples, tok, names, cells=cells, target=target)
                    keep = keep | explained
                encoded = drop_labels(encoded, keep, keys=("labels",))
                rest = [e for e, k in zip(examples, keep.tolist()) if not k]
                samples = sample_calls(module, tok, [e.prompt for e in rest], [e.answer for e in rest],
                                       _generator(cfg, rank, step))
            else:
                full, encoded = encoded, drop_labels(encoded, keep)
                if discovered is not None:
                    encoded, explained = discovered.relabel(full, encoded, examples, ~keep)
                if cfg.search > 0 or cfg.search_steps or cfg.search_pointers:
                    search = ([e.answer for e in examples], ~keep)
        batch = {k: v.to(device) for k, v in encoded.items()}
        done = train_step(model, module, optimizer, batch, cfg, agree=_all_ranks_agree(dist, device) if ddp else None,
                          samples=samples, search=search)
        loss, comp, found = done.loss, done.computer, done.search
        step += 1
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
        if main and (step % cfg.log_every == 0 or step == cfg.steps):
            last = {"step": step, "loss": loss.item(), "lm_loss": done.lm.item(), "aux_loss": done.aux.item(),
                    "grad_norm": done.norm.item(), "skipped": not bool(done.finite), "lr": lr,
                    "elapsed": round(time.time() - start_time, 2)}
            if explained is not None:  # of the examples without labels: labelled by the discovered interface
                last["discovered"] = int(explained.sum()) / max(1, unlabelled)
            if samples is not None:
                last["reward"] = samples.reward.mean().item() if len(samples.text) else None
            if found is not None:  # of the examples without labels: answered right, and repaired by a search
                unlabelled = max(1, int(search[1].sum()))
                last["search_right"] = int(found.own.sum()) / unlabelled
                last["search_repaired"] = int((found.matches.any(-1).any(-1) & ~found.own).sum()) / unlabelled
            for name, res in (("step_search_repaired", done.steps), ("pointer_search_repaired", done.pointers)):
                if res is not None:  # ... and repaired by a change of a step end, or of an argument
                    last[name] = int(res.matches.flatten(1).any(-1).sum()) / max(1, int(search[1].sum()))
            if comp is not None:
                last.update(machine_steps=comp.steps.mean().item(), unhalted=comp.unhalted.mean().item(),
                            run_steps=comp.run_steps)
            with open(out / METRICS, "a") as f:
                f.write(json.dumps(last) + "\n")
        if main and step % cfg.checkpoint_every == 0:
            _save(out, module, optimizer, step, time.time() - start_time, cfg, last)
            saved_step = step
    elapsed = time.time() - start_time
    if main:
        if step != saved_step:  # else the checkpoint of this step is already on disk
            _save(out, module, optimizer, step, elapsed, cfg, last)
        with open(out / METRICS, "a") as f:
            f.write(json.dumps({"event": "end", "step": step, "elapsed": round(elapsed, 2),
                                "stopped_by_time_limit": step < cfg.steps}) + "\n")
    if bar is not None:
        bar.close()
    if main and step < cfg.steps and cfg.schedule == "steps":  # a "time" schedule ends there by design
        # Else the run ends on its last logged line, which does not say that it stopped early, nor why.
        # The limit counts the run's whole training time, resumed parts included: going on needs a larger one.
        print(f"stopped by the time limit at step {step} of {cfg.steps} (--time-limit {cfg.time_limit:g} s of "
              f"training in all); to go on: ncl train --task {cfg.task} --out {out} --resume --time-limit SECONDS "
              f"(more than {cfg.time_limit:g})", file=sys.stderr, flush=True)
    if ddp:
        dist.barrier()
    return last


class StepResult(NamedTuple):
    """What :func:`train_step` returns: the total loss and its LM and auxiliary parts (0-d tensors), the global
    gradient norm before clipping and whether it was finite (the update is skipped if not), the computer's output
    (None for a plain model) and the program, step and pointer searches' results (None without them)."""

    loss: torch.Tensor
    lm: torch.Tensor
    aux: torch.Tensor
    norm: torch.Tensor
    finite: Any
    computer: Any
    search: SearchResult | None
    steps: StepSearch | None = None
    pointers: PointerSearch | None = None


def train_step(model, module, optimizer, batch: dict, cfg: TrainConfig, agree=None, clock=None, samples=None,
               search=None) -> StepResult:
    """One optimizer step of ``model`` (``module``: the model itself, under DDP its wrapped module) on an
    encoded ``batch`` (:func:`~ncl.training.encode`): forward, the LM and auxiliary losses, backward, global
    gradient clipping, and the update unless the gradient norm is not finite. ``samples``: the tool-use
    baseline's sampled calls (:func:`~ncl.training.reinforce.sample_calls`), whose REINFORCE loss is added; the
    LM loss of a batch with no labelled row is then 0. ``search``: ``(answers, rows (B,) bool)``, the rows whose
    programs (``cfg.search``), step ends and pointers (``cfg.search_steps``, ``cfg.search_pointers``: the rows
    whose own chain is wrong) are searched, and their answer texts (:mod:`ncl.training.search`); the searches'
    losses are added.

    ``agree(finite) -> bool``: makes every DDP rank take the same decision. ``clock(name)``: a context manager
    timing the sections ``"forward"``, ``"backward"`` and ``"optimizer"`` (``ncl bench train``).

    Returns a :class:`StepResult`.
    """
    section = clock or _untimed
    with section("forward"):
        res = model(batch["input_ids"], batch["attention_mask"], batch["read_mask"], labels=batch["labels"])
        lm = res["loss"] if bool((batch["labels"] >= 0).any()) else res["logits"].new_zeros(())
        comp = res["computer"]
        aux = aux_loss(comp, batch) if (comp is not None and cfg.aux > 0) else lm.new_zeros(())
        loss = lm + cfg.aux * aux
        if samples is not None:
            loss = loss + reinforce_loss(module, samples)
        found = steps = pointers = None
        if search is not None:
            chain = comp.heads.prompt.chain
            answers, rows = search
            if cfg.search > 0:
                found = search_programs(module.computer, chain, comp.heads.mem, answers, rows, top=cfg.search)
                loss = loss + search_loss(chain.pi, found.matches)
            wrong = rows & ~(found.own if found is not None else printed_right(comp.heads.mem, answers))
            if cfg.search_pointers:
                pointers = search_pointers(module.computer, chain, answers, wrong)
                loss = loss + search_loss(chain.pointers, pointers.matches)
            if cfg.search_steps:
                # the smallest change first: a row that one program or one argument repairs is not split into
                # other steps, since a chain given one more call can print many a short answer by chance
                if found is not None:
                    wrong = wrong & ~found.matches.flatten(1).any(-1)
                if pointers is not None:
                    wrong = wrong & ~pointers.matches.flatten(1).any(-1)
                steps = search_steps(module.computer, chain, answers, wrong)
                loss = loss + step_search_loss(chain.step_logit, steps.marks, steps.matches)
    with section("backward"):
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
    with section("optimizer"):
        # gradients through long machine runs are large (docs/design.md §5): clip, and skip non-finite steps
        norm = torch.nn.utils.clip_grad_norm_(module.parameters(), cfg.clip)
        finite = torch.isfinite(norm) if agree is None else agree(torch.isfinite(norm))
        if bool(finite):
            optimizer.step()
    return StepResult(loss, lm, aux, norm, finite, comp, found, steps, pointers)


def _generator(cfg: TrainConfig, rank: int, step: int) -> torch.Generator:
    """The sampler of ``step``'s calls: seeded by ``(seed, rank, step)``, like the batches, so a resumed run
    samples what the uninterrupted one did."""
    return torch.Generator().manual_seed(random.Random(f"reinforce/{cfg.seed}/{rank}/{step}").getrandbits(63))


@contextlib.contextmanager
def _untimed(name):
    yield


def _all_ranks_agree(dist, device):
    def agree(finite):
        flag = finite.float().to(device)
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        return flag > 0
    return agree


def _restore_rng(rng: dict) -> None:
    """Put back the RNG states a checkpoint saved (none in a converted old one: those restart from the seed's)."""
    if rng.get("torch") is not None:
        torch.set_rng_state(rng["torch"])
    if rng.get("cuda") and torch.cuda.is_available() and len(rng["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(rng["cuda"])


def _cut_metrics(path: Path, length: int | None) -> None:
    """Cut the log back to ``length`` bytes (what it held at the checkpoint): a fresh run starts an empty log, a
    resumed one drops the lines of steps it will redo. None (a converted old checkpoint): keep the log."""
    if length is not None and path.exists() and path.stat().st_size > length:
        with open(path, "r+b") as f:
            f.truncate(length)
            f.flush()
            os.fsync(f.fileno())


def _save(out: Path, module, optimizer, step: int, elapsed: float, cfg: TrainConfig, last: dict) -> None:
    """A checkpoint, with the log made durable first and its length recorded (:func:`_cut_metrics`)."""
    log = out / METRICS
    if log.exists():
        storage.fsync_file(log)
    save_checkpoint(out, module, optimizer, step, elapsed, cfg, metrics=last or None,
                    metrics_bytes=log.stat().st_size if log.exists() else 0)


__all__ = ["METRICS", "learning_rate", "train"]
