"""``ncl convert DIR``: turn the pickle ``checkpoint.pt`` of an older run directory into the current checkpoint
format (safetensors and JSON, :mod:`ncl.training.checkpoints`).

**This module is the one place in ncl that unpickles.** Unpickling a file runs whatever code the file holds, so
nothing else in ncl ever does it (``ncl eval`` and ``ncl train --resume`` refuse old checkpoints and point here).
It first tries ``torch.load(weights_only=True)``, torch's restricted unpickler that only builds tensors and
plain containers: an ``ncl train`` checkpoint of an older version holds only those and loads that way. A file
that needs full unpickling is refused unless the caller passes ``unsafe_pickle=True`` (``--unsafe-pickle``),
which says that the file comes from someone trusted; it then loads with ``weights_only=False`` and a warning.
"""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import torch

from ncl.training.checkpoints import (LATEST, LEGACY_CHECKPOINT, CheckpointError, load_checkpoint,
                                      write_checkpoint)

#: The entries of an old checkpoint (``torch.save`` of this dict by ``save_checkpoint`` before safetensors).
LEGACY_KEYS = ("model", "optimizer", "step", "elapsed", "config")


def read_legacy(path, unsafe_pickle: bool = False) -> dict:
    """The dict of the old pickle checkpoint file ``path`` (module docstring: when it unpickles what)."""
    path = Path(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if not unsafe_pickle:
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise CheckpointError(
                f"{path} does not load with torch's restricted unpickler (weights_only=True: {reason}). Loading it "
                f"fully runs whatever code the file holds; only if you trust where it came from, convert it with "
                f"`ncl convert {path.parent} --unsafe-pickle`") from err
        warnings.warn(f"unpickling {path} with weights_only=False: this runs any code the file holds",
                      stacklevel=2)
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise
    except Exception as err:  # a truncated or damaged file: torch's and pickle's errors vary
        # The first sentence only: torch's zip errors go on for a paragraph, and some errors say nothing at all.
        reason = str(err).strip().split(". ")[0].splitlines()[0] if str(err).strip() else "no detail"
        raise CheckpointError(f"{path} cannot be read as an old ncl checkpoint (is it damaged or truncated?): "
                              f"{type(err).__name__}: {reason}") from err
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in LEGACY_KEYS):
        raise CheckpointError(f"{path} is not an old ncl checkpoint (a dict with {', '.join(LEGACY_KEYS)})")
    return ckpt


def convert_run_dir(run_dir, unsafe_pickle: bool = False) -> Path:
    """Convert the ``checkpoint.pt`` of ``run_dir`` into a checkpoint of the current format in the same directory;
    returns the new checkpoint's directory. ``checkpoint.pt`` is left in place (the new checkpoint takes
    precedence; delete it once the conversion is checked). The result is read back and compared tensor by tensor.

    Raises FileNotFoundError (no ``checkpoint.pt``), FileExistsError (already converted) or
    :class:`~ncl.training.checkpoints.CheckpointError` (unreadable, or needs ``unsafe_pickle``).
    """
    run_dir = Path(run_dir)
    old = run_dir / LEGACY_CHECKPOINT
    if not old.is_file():
        raise FileNotFoundError(f"no {LEGACY_CHECKPOINT} in {run_dir}: nothing to convert")
    if (run_dir / LATEST).exists():
        raise FileExistsError(f"{run_dir} already holds a checkpoint of the current format ({LATEST}); "
                              f"nothing to convert")
    ckpt = read_legacy(old, unsafe_pickle=unsafe_pickle)
    if not isinstance(ckpt["config"], dict):
        raise CheckpointError(f"{old}: its 'config' is a {type(ckpt['config']).__name__}, not a dict")
    # no RNG state (old runs restarted from the seed's, which training never drew from) and no metrics length
    new = write_checkpoint(run_dir, {k: ckpt[k] for k in LEGACY_KEYS})
    back = load_checkpoint(run_dir)
    pairs = [(ckpt["model"], back["model"])]
    pairs += [(ckpt["optimizer"]["state"][i], back["optimizer"]["state"][i]) for i in ckpt["optimizer"]["state"]]
    for a, b in pairs:
        for k, v in a.items():
            same = torch.equal(v.cpu(), b[k]) if torch.is_tensor(v) else v == b[k]
            if not same:
                raise CheckpointError(f"converting {old}: entry {k!r} did not read back equal from {new}")
    return new


__all__ = ["LEGACY_KEYS", "convert_run_dir", "read_legacy"]
