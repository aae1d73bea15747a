"""Checkpoints: ``checkpoint.pt`` in a run directory holds the model, the optimizer, the step, the elapsed time
and the configuration (``TrainConfig.to_dict``; :meth:`TrainConfig.from_dict` also reads older, flat ones)."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ncl.training.config import TrainConfig
from ncl.training.factory import build_model

CHECKPOINT = "checkpoint.pt"


def save_checkpoint(path: Path, model, optimizer, step: int, elapsed: float, cfg: TrainConfig) -> None:
    """Write atomically: a temporary file in the same directory, then ``os.replace``."""
    path = Path(path)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                "elapsed": elapsed, "config": cfg.to_dict()}, tmp)
    os.replace(tmp, path)


def load_checkpoint(run_dir) -> dict:
    """The checkpoint of a run directory (a dict, on the CPU); FileNotFoundError if there is none."""
    path = Path(run_dir) / CHECKPOINT
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint in {run_dir} (expected {path})")
    return torch.load(path, map_location="cpu", weights_only=False)


def load_model(run_dir):
    """``(model, config, checkpoint)`` of a run directory, model in eval mode."""
    ckpt = load_checkpoint(run_dir)
    cfg = TrainConfig.from_dict(ckpt["config"])
    model = build_model(cfg)
    model.load_state_dict(ckpt["model"])
    model.eval()
    return model, cfg, ckpt


__all__ = ["CHECKPOINT", "load_checkpoint", "load_model", "save_checkpoint"]
