"""Checkpoints of a run directory: safetensors and JSON, never pickle; written so that a crash leaves a readable one.

Layout (one checkpoint = one directory; ``latest.json`` names the current one)::

    RUN/
      latest.json                 {"format": "ncl-checkpoint", "version": 1, "checkpoint": "checkpoint-00000042",
                                   "step": 42, "sha256": <of that checkpoint's checkpoint.json>}
      checkpoint-00000042/
        model.safetensors         the model's state dict
        train_state.safetensors   the optimizer's tensors ("optimizer.state.<param index>.<name>") and the RNG
                                  states ("rng.torch": torch.get_rng_state(); "rng.cuda.<i>" when CUDA is in use)
        checkpoint.json           step, elapsed, config (TrainConfig.to_dict), the optimizer's other state
                                  (param_groups, non-tensor entries), the last logged metrics, the length of
                                  metrics.jsonl at this step, and the size and SHA-256 of both safetensors files

Writing (:func:`write_checkpoint`), each step durable (:mod:`ncl.storage`: fsync the file, then the directory):

1. the three files go into a fresh ``checkpoint-<step>.tmp-<pid>-<random>/``;
2. that directory is renamed to ``checkpoint-<step>/`` (complete before it has its name);
3. ``latest.json`` is replaced atomically to name it: **this is the commit point**;
4. every other ``checkpoint-*`` entry is removed (a complete one is first renamed to ``*.trash-*``, so a
   directory with a final name is never half-deleted).

A crash at any point leaves ``latest.json`` naming a complete checkpoint (the old one before step 3, the new one
after), and every directory with a final name complete; temporary and trash directories are never read and the
next save removes them. A reader (:func:`load_checkpoint`) follows ``latest.json``, checks each file's size and
SHA-256 against what the writer recorded, and retries if a concurrent writer moved the pointer meanwhile.
Loading runs no code from the files: no ``torch.load``, no pickle.

Run directories of older versions hold ``checkpoint.pt`` (a pickle): loading one raises
:class:`LegacyCheckpointError`, which says to run ``ncl convert DIR`` (:mod:`ncl.training.convert`, the one
place that unpickles).

Test hook: ``NCL_TEST_SLOW_WRITE=SECONDS`` sleeps that long between the steps of a write (after each file, after
the rename, after the pointer), so that a test's SIGKILL can land inside a checkpoint write
(``tests/test_kill_resume.py``). Unset, it costs nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
import uuid
from pathlib import Path

import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from ncl import storage
from ncl.training.config import TrainConfig
from ncl.training.factory import build_model

FORMAT, VERSION = "ncl-checkpoint", 1
#: The pointer file: a run directory holds a checkpoint exactly when it has this file.
CHECKPOINT = LATEST = "latest.json"
#: The pickle checkpoint of older versions (``ncl convert`` reads it).
LEGACY_CHECKPOINT = "checkpoint.pt"
MODEL_FILE, STATE_FILE, META_FILE = "model.safetensors", "train_state.safetensors", "checkpoint.json"
_NAME = re.compile(r"checkpoint-\d{8,}(-\d+)?")  # a complete checkpoint directory's name
_OPT, _RNG = "optimizer.state.", "rng."


class CheckpointError(ValueError):
    """A checkpoint that cannot be read: a missing, truncated or damaged file (named in the message)."""


class LegacyCheckpointError(CheckpointError):
    """A run directory of an older version (a pickle ``checkpoint.pt``): convert it with ``ncl convert DIR``."""


def _pause() -> None:
    """The test hook of the module docstring."""
    delay = os.environ.get("NCL_TEST_SLOW_WRITE")
    if delay:
        time.sleep(float(delay))


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _cpu_tensors(tensors: dict) -> dict:
    # a copy of each tensor, contiguous on the CPU: safetensors refuses shared storage (a tied LM head)
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in tensors.items()}


def _write_file(path: Path, data: bytes) -> dict:
    storage.write_bytes(path, data)
    _pause()
    return {"bytes": len(data), "sha256": _digest(data)}


def _pointer(run_dir: Path) -> dict | None:
    """The parsed ``latest.json`` of ``run_dir``; None if there is none; CheckpointError if it is damaged."""
    path = run_dir / LATEST
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (ValueError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path} is not valid JSON ({err}): the checkpoint pointer is damaged") from err
    if not isinstance(data, dict) or data.get("format") != FORMAT or not _NAME.fullmatch(str(data.get("checkpoint"))):
        raise CheckpointError(f"{path} is not an ncl checkpoint pointer (expected format {FORMAT!r} and a "
                              f"'checkpoint' entry naming a checkpoint-<step> directory)")
    return data


def has_checkpoint(run_dir) -> bool:
    """Whether ``run_dir`` holds a checkpoint, of this format or of an older version."""
    return (Path(run_dir) / LATEST).exists() or (Path(run_dir) / LEGACY_CHECKPOINT).exists()


def checkpoint_dirs(run_dir) -> list[Path]:
    """The complete checkpoint directories in ``run_dir`` (the current one, and any a crash left unnamed by
    ``latest.json``), oldest step first. Temporary and trash directories are not checkpoints."""
    return sorted(p for p in Path(run_dir).glob("checkpoint-*") if _NAME.fullmatch(p.name) and p.is_dir())


def _discard(path: Path) -> None:
    """Remove a checkpoint directory or temporary; a complete one is renamed out of its name first."""
    if _NAME.fullmatch(path.name):
        trash = path.with_name(f"{path.name}.trash-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        storage.rename(path, trash)
        path = trash
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def write_checkpoint(run_dir, ckpt: dict) -> Path:
    """Write ``ckpt`` (the dict :func:`load_checkpoint` returns: ``model``, ``optimizer`` state dicts, ``step``,
    ``elapsed``, ``config`` and optionally ``rng``, ``metrics``, ``metrics_bytes``) as the checkpoint of
    ``run_dir``, crash-safely (module docstring); returns its directory. One writer per run directory."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        current = (_pointer(run_dir) or {}).get("checkpoint")
    except CheckpointError:
        current = None  # a damaged pointer is replaced below
    step = int(ckpt["step"])
    name, n = f"checkpoint-{step:08d}", 0
    while name == current:  # a second save at the current step: a new directory, the pointer moves to it
        n += 1
        name = f"checkpoint-{step:08d}-{n}"
    tensors, plain = {}, {}
    for index, entries in ckpt["optimizer"]["state"].items():
        plain[str(index)] = {k: v for k, v in entries.items() if not torch.is_tensor(v)}
        tensors.update({f"{_OPT}{index}.{k}": v for k, v in entries.items() if torch.is_tensor(v)})
    rng = ckpt.get("rng") or {}
    if rng.get("torch") is not None:
        tensors[_RNG + "torch"] = rng["torch"]
    tensors.update({f"{_RNG}cuda.{i}": t for i, t in enumerate(rng.get("cuda") or ())})
    meta = {"format": FORMAT, "version": VERSION, "step": step, "elapsed": float(ckpt["elapsed"]),
            "config": ckpt["config"],
            "optimizer": {"param_groups": ckpt["optimizer"]["param_groups"], "state": plain},
            "metrics": ckpt.get("metrics"), "metrics_bytes": ckpt.get("metrics_bytes")}
    json.dumps(meta)  # a config or optimizer entry JSON cannot hold fails here, before anything is written
    tmp = run_dir / f"{name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        files = {MODEL_FILE: _write_file(tmp / MODEL_FILE, save_tensors(_cpu_tensors(ckpt["model"]))),
                 STATE_FILE: _write_file(tmp / STATE_FILE, save_tensors(_cpu_tensors(tensors)))}
        meta_text = json.dumps({**meta, "files": files}, indent=1) + "\n"
        storage.write_text(tmp / META_FILE, meta_text)
        _pause()
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    final = run_dir / name
    if final.exists():  # complete, but latest.json never named it (a crash before the pointer moved)
        _discard(final)
    storage.rename(tmp, final)
    _pause()
    storage.write_json(run_dir / LATEST, {"format": FORMAT, "version": VERSION, "checkpoint": name, "step": step,
                                          "sha256": _digest(meta_text.encode())}, indent=1)
    _pause()
    for entry in run_dir.iterdir():  # older checkpoints, and what crashed writes left
        stale = entry.name.startswith("checkpoint-") or entry.name.startswith(f"{LATEST}.tmp-")
        if stale and entry.name != name:
            _discard(entry)
    return final


def save_checkpoint(run_dir, model, optimizer, step: int, elapsed: float, cfg: TrainConfig,
                    metrics: dict | None = None, metrics_bytes: int | None = None) -> Path:
    """Save a training state as the checkpoint of ``run_dir`` (:func:`write_checkpoint`), with the RNG states."""
    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return write_checkpoint(run_dir, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                      "step": step, "elapsed": elapsed, "config": cfg.to_dict(), "rng": rng,
                                      "metrics": metrics, "metrics_bytes": metrics_bytes})


def _read_meta(path: Path, sha256: str | None) -> dict:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing: {path.parent} is not a complete checkpoint") from None
    if sha256 is not None and _digest(raw) != sha256:
        raise CheckpointError(f"{path} is damaged: its SHA-256 differs from the one {LATEST} records")
    try:
        data = json.loads(raw.decode())
    except (ValueError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path} is damaged: not valid JSON ({err})") from err
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an ncl checkpoint (no 'format': {FORMAT!r})")
    if not isinstance(data.get("version"), int) or data["version"] > VERSION:
        raise CheckpointError(f"{path} has format version {data.get('version')!r}; this ncl reads up to "
                              f"{VERSION} (a newer ncl wrote it?)")
    return data


def _read_tensors(path: Path, record) -> dict:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing: {path.parent} is not a complete checkpoint") from None
    if not isinstance(record, dict) or len(data) != record.get("bytes"):
        raise CheckpointError(f"{path} is truncated or damaged: {len(data)} bytes, {META_FILE} records "
                              f"{record.get('bytes') if isinstance(record, dict) else None}")
    if _digest(data) != record.get("sha256"):
        raise CheckpointError(f"{path} is damaged: its SHA-256 differs from the one {META_FILE} records")
    try:
        return load_tensors(data)
    except Exception as err:  # safetensors' own errors: a header it cannot parse
        raise CheckpointError(f"{path} is not a readable safetensors file: {err}") from err


def _read_dir(ckpt_dir: Path, sha256: str | None = None) -> dict:
    if not ckpt_dir.is_dir():
        raise FileNotFoundError(f"checkpoint directory {ckpt_dir} is missing")
    meta_path = ckpt_dir / META_FILE
    meta = _read_meta(meta_path, sha256)
    files = meta.get("files") or {}
    model = _read_tensors(ckpt_dir / MODEL_FILE, files.get(MODEL_FILE))
    tensors = _read_tensors(ckpt_dir / STATE_FILE, files.get(STATE_FILE))
    try:
        opt = meta["optimizer"]
        state = {int(i): dict(entries) for i, entries in opt["state"].items()}
        for key, t in tensors.items():
            if key.startswith(_OPT):
                index, name = key[len(_OPT):].split(".", 1)
                state.setdefault(int(index), {})[name] = t
        cuda = sorted((int(k[len(_RNG) + 5:]), t) for k, t in tensors.items() if k.startswith(_RNG + "cuda."))
        return {"model": model, "optimizer": {"state": state, "param_groups": opt["param_groups"]},
                "step": int(meta["step"]), "elapsed": float(meta["elapsed"]), "config": dict(meta["config"]),
                "rng": {"torch": tensors.get(_RNG + "torch"), "cuda": [t for _, t in cuda]},
                "metrics": meta.get("metrics"), "metrics_bytes": meta.get("metrics_bytes"), "path": str(ckpt_dir)}
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise CheckpointError(f"{meta_path} is damaged: bad or missing entry ({err!r})") from err


def _legacy_message(run_dir: Path) -> str:
    return (f"{run_dir / LEGACY_CHECKPOINT} is a checkpoint in the old pickle format, which ncl no longer loads: "
            f"unpickling a file runs whatever code it holds. If you trust where it came from, convert it once with "
            f"`ncl convert {run_dir}` (the one command that unpickles; it writes safetensors and JSON beside it)")


def load_checkpoint(path) -> dict:
    """The checkpoint of a run directory (the one ``latest.json`` names), or of a checkpoint directory itself.

    Returns a dict, tensors on the CPU: ``model`` and ``optimizer`` (state dicts), ``step``, ``elapsed``,
    ``config`` (a dict for :meth:`TrainConfig.from_dict`), ``rng`` (``{"torch": tensor or None, "cuda": [...]}``),
    ``metrics``, ``metrics_bytes`` and ``path`` (the checkpoint directory). Runs no code from the files.

    Raises FileNotFoundError if there is no checkpoint, :class:`LegacyCheckpointError` for an old pickle
    checkpoint, :class:`CheckpointError` for a damaged one (naming the file).
    """
    path = Path(path)
    if (path / META_FILE).exists() and not (path / LATEST).exists():
        return _read_dir(path)
    for attempt in range(3):
        pointer = _pointer(path)
        if pointer is None:
            if (path / LEGACY_CHECKPOINT).exists():
                raise LegacyCheckpointError(_legacy_message(path))
            raise FileNotFoundError(f"no checkpoint in {path} (expected {path / LATEST})")
        try:
            return _read_dir(path / pointer["checkpoint"], pointer.get("sha256"))
        except (FileNotFoundError, CheckpointError) as err:
            moved = (_pointer(path) or {}).get("checkpoint") != pointer["checkpoint"]
            if moved and attempt < 2:
                continue  # a writer replaced the checkpoint while it was read: read the new one
            if isinstance(err, FileNotFoundError):
                raise CheckpointError(f"{path / LATEST} names {pointer['checkpoint']}, which is missing") from err
            raise
    raise AssertionError("unreachable")


def load_model(run_dir, length: int | None = None):
    """``(model, config, checkpoint)`` of a run directory, model in eval mode; its machine's tape and step limit
    sized for inputs of ``length`` tape cells (default: the training inputs; :func:`~ncl.training.build_model`)."""
    ckpt = load_checkpoint(run_dir)
    cfg = TrainConfig.from_dict(ckpt["config"])
    model = build_model(cfg, length=length)
    load_weights(model, ckpt["model"], run_dir)
    model.eval()
    return model, cfg, ckpt


def load_weights(model, state: dict, run_dir) -> None:
    """``model.load_state_dict(state)``, or a :class:`CheckpointError` naming ``run_dir`` when the weights do not
    fit the model (torch's error lists every key over many lines)."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or shapes:
        example = (f"{shapes[0]} is {tuple(state[shapes[0]].shape)} there and {tuple(own[shapes[0]].shape)} here"
                   if shapes else f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}")
        raise CheckpointError(f"{run_dir}: the checkpoint's weights do not fit the model its configuration builds "
                              f"({len(missing)} missing, {len(unexpected)} unexpected, {len(shapes)} of another "
                              f"shape; {example}): was it saved by another version of ncl?")
    model.load_state_dict(state)


__all__ = ["CHECKPOINT", "LATEST", "LEGACY_CHECKPOINT", "CheckpointError", "LegacyCheckpointError",
           "checkpoint_dirs", "has_checkpoint", "load_checkpoint", "load_model", "load_weights", "save_checkpoint",
           "write_checkpoint"]
