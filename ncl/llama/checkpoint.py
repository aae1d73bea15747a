"""Local Hugging Face checkpoints: ``config.json`` plus safetensors, single-file or sharded with an index.

Nothing is ever downloaded: ``path`` must be a local directory.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save as save_tensors

from ncl import storage

from .config import LlamaConfig

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
INDEX_NAME = "model.safetensors.index.json"
# Keys some older checkpoints store that this package recomputes instead of loading.
IGNORED_KEY_SUFFIXES = (".rotary_emb.inv_freq",)
# Shard file names, in Hugging Face's naming scheme.
SHARD_NAME = "model-{index:05d}-of-{total:05d}.safetensors"

_DTYPES = {
    "float32": torch.float32, "fp32": torch.float32, "float": torch.float32,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
    "float64": torch.float64, "fp64": torch.float64, "double": torch.float64,
}
_SIZE_UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}


class CheckpointError(ValueError):
    """A checkpoint does not fit the model: missing, unexpected or mis-shaped keys (all named in the message)."""


def resolve_dtype(dtype, config: LlamaConfig | None = None) -> torch.dtype:
    """A ``torch.dtype`` from a dtype, a name (``"bf16"``, ``"float32"``…), ``"auto"`` (the checkpoint's
    recorded dtype, else float32) or None (``torch.get_default_dtype()``)."""
    if dtype is None:
        return torch.get_default_dtype()
    if isinstance(dtype, torch.dtype):
        if not dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating dtype, got {dtype}")
        return dtype
    if isinstance(dtype, str):
        name = dtype.removeprefix("torch.").lower()
        if name == "auto":
            recorded = config.dtype if config is not None else None
            return resolve_dtype(recorded or "float32")
        if name in _DTYPES:
            return _DTYPES[name]
    raise ValueError(f"dtype must be a floating torch.dtype, one of {sorted(_DTYPES)}, 'auto' or None; got "
                     f"{dtype!r}")


def _parse_size(size) -> int:
    """Bytes from an int or a string such as ``"5GB"`` or ``"200KiB"``."""
    if isinstance(size, int) and not isinstance(size, bool) and size > 0:
        return size
    if isinstance(size, str):
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]I?B|B)\s*", size.upper())
        if m:
            return max(1, int(float(m.group(1)) * _SIZE_UNITS[m.group(2)]))
    raise ValueError(f"max_shard_size must be a positive int (bytes) or a string like '5GB', got {size!r}")


def _checkpoint_dir(path) -> Path:
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(
            f"checkpoint directory {str(path)!r} does not exist or is not a directory. ncl only reads local "
            f"checkpoints (it never downloads): pass a directory holding {CONFIG_NAME} and {WEIGHTS_NAME} or "
            f"{INDEX_NAME} with its shards")
    return path


def read_config(path) -> LlamaConfig:
    """The ``LlamaConfig`` of the checkpoint directory ``path`` (its ``config.json``)."""
    file = _checkpoint_dir(path) / CONFIG_NAME
    if not file.is_file():
        raise FileNotFoundError(f"missing {file}: a Hugging Face checkpoint directory needs a {CONFIG_NAME}")
    with open(file) as f:
        return LlamaConfig.from_hf_dict(json.load(f))


def weight_files(path) -> dict[str, Path]:
    """Map every tensor name of the checkpoint in ``path`` to the safetensors file that holds it."""
    path = _checkpoint_dir(path)
    index, single = path / INDEX_NAME, path / WEIGHTS_NAME
    if index.is_file():
        with open(index) as f:
            weight_map = json.load(f).get("weight_map")
        if not isinstance(weight_map, dict):
            raise CheckpointError(f"{index} has no 'weight_map' dict")
        files = {name: path / shard for name, shard in weight_map.items()}
        for shard in sorted(set(files.values())):
            if not shard.is_file():
                raise FileNotFoundError(f"shard {shard.name} listed in {index.name} is missing from {path}")
        return files
    if single.is_file():
        with safe_open(single, framework="pt") as f:
            return {name: single for name in f.keys()}
    others = sorted(p.name for p in path.glob("*.bin")) + sorted(p.name for p in path.glob("*.pt*"))
    hint = f" (found {others}: only safetensors checkpoints are read)" if others else ""
    raise FileNotFoundError(f"no {WEIGHTS_NAME} or {INDEX_NAME} in {path}{hint}")


def load_state_dict(path, device="cpu", dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """Every tensor of the checkpoint in ``path``, optionally cast to ``dtype``, on ``device``."""
    by_file: dict[Path, list[str]] = {}
    for name, file in weight_files(path).items():
        by_file.setdefault(file, []).append(name)
    state = {}
    for file, names in by_file.items():
        with safe_open(file, framework="pt", device=str(device)) as f:
            present = set(f.keys())
            absent = [n for n in names if n not in present]
            if absent:
                raise CheckpointError(f"{file.name} does not hold keys its index assigns to it: {absent}")
            for name in names:
                t = f.get_tensor(name)
                state[name] = t.to(dtype) if dtype is not None and t.is_floating_point() else t
    return state


def check_state_dict(model: torch.nn.Module, state: dict[str, torch.Tensor], strict: bool = True) -> None:
    """Raise ``CheckpointError`` naming every missing, unexpected (if ``strict``) or mis-shaped key.

    A tied model accepts a checkpoint with or without ``lm_head.weight``.
    """
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    tied = getattr(getattr(model, "config", None), "tie_word_embeddings", False)
    optional = {"lm_head.weight"} if tied else set()
    missing = sorted(k for k in expected if k not in state and k not in optional)
    unexpected = sorted(k for k in state if k not in expected and not k.endswith(IGNORED_KEY_SUFFIXES))
    mismatched = sorted(f"{k}: checkpoint {tuple(state[k].shape)}, model {expected[k]}"
                        for k in expected if k in state and tuple(state[k].shape) != expected[k])
    problems = []
    if missing:
        problems.append(f"missing keys {missing}")
    if mismatched:
        problems.append(f"shape mismatches [{'; '.join(mismatched)}]")
    if unexpected and strict:
        problems.append(f"unexpected keys {unexpected}")
    if problems:
        raise CheckpointError("checkpoint does not match the model config: " + "; ".join(problems))


def load_pretrained(cls, path, dtype=None, device=None, strict: bool = True):
    """Build ``cls`` (``LlamaForCausalLM``) from the local Hugging Face checkpoint directory ``path``.

    The model is built on the meta device and the checkpoint tensors are assigned to it, so no memory goes to a
    random init and each weight is read once.

    Args:
        path: a directory with ``config.json`` and ``model.safetensors`` or ``model.safetensors.index.json``
            plus its shards.
        dtype: parameter dtype: a ``torch.dtype``, a name such as ``"bfloat16"``, ``"auto"`` (the dtype
            recorded in ``config.json``) or None (``torch.get_default_dtype()``, normally float32).
        device: where to put the parameters (default CPU).
        strict: refuse checkpoints with keys the model does not have.

    Raises:
        FileNotFoundError: no such directory, config or weights (never downloads).
        CheckpointError: missing, unexpected or mis-shaped keys; the message names them.
    """
    config = read_config(path)
    dtype = resolve_dtype(dtype, config)
    device = torch.device("cpu" if device is None else device)
    model = cls(config, device="meta", dtype=dtype)
    state = load_state_dict(path, device=device, dtype=dtype)
    check_state_dict(model, state, strict=strict)
    expected = model.state_dict().keys()
    state = {k: v for k, v in state.items() if k in expected}
    if config.tie_word_embeddings:
        state.pop("lm_head.weight", None)  # the head is the embedding; any stored copy is redundant
    model.load_state_dict(state, strict=False, assign=True)
    model.tie_weights()
    model.model.reset_buffers(device)
    leftover = [n for n, t in list(model.named_parameters()) + list(model.named_buffers()) if t.is_meta]
    if leftover:
        raise CheckpointError(f"checkpoint left these tensors unset: {leftover}")
    return model


def save_pretrained(model, path, max_shard_size: int | str = "5GB") -> None:
    """Write ``model`` as a Hugging Face checkpoint that ``transformers.LlamaForCausalLM.from_pretrained`` reads.

    Writes ``config.json`` and either ``model.safetensors`` or, when the weights exceed ``max_shard_size``,
    ``model-0000i-of-0000N.safetensors`` shards with ``model.safetensors.index.json``. A tied LM head is not
    stored (Hugging Face's convention). Each file is written durably and atomically (:mod:`ncl.storage`: a
    temporary file, fsync, ``os.replace``, fsync of the directory); the directory as a whole is updated in place,
    one file after another.
    """
    limit = _parse_size(max_shard_size)
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    config = model.config
    state = model.state_dict()
    if config.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    # safetensors refuses shared or strided storage: give each tensor its own contiguous copy on the CPU.
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}

    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name, tensor in state.items():
        nbytes = tensor.numel() * tensor.element_size()
        if shards[-1] and size + nbytes > limit:
            shards.append({})
            size = 0
        shards[-1][name] = tensor
        size += nbytes

    dtype = next(iter(state.values())).dtype
    hf_config = config.replace(dtype=str(dtype).removeprefix("torch.")).to_hf_dict()
    _write_json(path / CONFIG_NAME, hf_config)
    for stale in list(path.glob("model*.safetensors")) + [path / INDEX_NAME]:
        if stale.exists():
            stale.unlink()  # a shard left by an earlier save would be read with the new index
    metadata = {"format": "pt"}
    if len(shards) == 1:
        storage.write_bytes(path / WEIGHTS_NAME, save_tensors(shards[0], metadata=metadata))
        return
    weight_map = {}
    for i, shard in enumerate(shards, start=1):
        name = SHARD_NAME.format(index=i, total=len(shards))
        storage.write_bytes(path / name, save_tensors(shard, metadata=metadata))
        weight_map.update({k: name for k in shard})
    total = sum(t.numel() * t.element_size() for t in state.values())
    _write_json(path / INDEX_NAME, {"metadata": {"total_size": total}, "weight_map": weight_map})


def _write_json(file: Path, data: dict) -> None:
    storage.write_json(file, data, indent=2)
