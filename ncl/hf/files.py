"""An augmented model on disk, in the Hugging Face layout, safetensors and JSON only (never pickle):

```
DIR/
  config.json          the base model's config (``base_config``), its kind and class, the computer's config,
                       ``split``, the LoRA config (if any), the tokenizer's kind
  model.safetensors    every weight: ``base.*`` (the base model, its adapters) and ``computer.*`` (the heads and
                       the library image's fields); a tensor shared by two names (tied embeddings) is stored once,
                       the other names in the metadata's ``aliases``
  tokenizer.json ...   the tokenizer's own files
  library.asm          the library image as assembly, and library.json its entries and machine (a user library)
  library.py           the user library's Python source, for people to read (never executed when loading)
```

:func:`save` writes everything into a temporary directory beside ``DIR`` (each file fsynced, :mod:`ncl.storage`)
and renames it to ``DIR`` at the end, so ``DIR`` is complete or absent whatever moment a crash comes.
Loading runs no code from the files: the weights are safetensors, the library is reassembled from its assembly.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import safetensors.torch
import torch

from ncl import storage
from ncl.computer import ComputerConfig
from ncl.llama import LlamaConfig
from ncl.llama import LlamaForCausalLM as NclLlama
from ncl.machine import MachineConfig, assemble
from ncl.tokenizers import CHAR_TOKENIZER_TYPE, CharTokenizer, HFTokenizer

FORMAT = "ncl.AugmentedModel"
CONFIG, WEIGHTS, LIBRARY_ASM, LIBRARY_JSON, LIBRARY_PY = ("config.json", "model.safetensors", "library.asm",
                                                          "library.json", "library.py")


@dataclass
class Saved:
    """What :func:`load` reads: the pieces :meth:`AugmentedModel.from_pretrained` builds the model from."""

    base: torch.nn.Module
    tokenizer: object
    computer_config: ComputerConfig
    library: object
    library_source: str | None
    split: int
    lora: dict | None
    state: dict
    copy: bool = False


def _lora_dict(base) -> dict | None:
    config = getattr(base, "peft_config", None)
    if not config:
        return None
    d = config["default"].to_dict()
    return {k: (sorted(v) if isinstance(v, set) else v) for k, v in d.items()}


def _base_config(model) -> tuple[str, str, dict]:
    inner = model.base.get_base_model() if hasattr(model.base, "get_base_model") else model.base
    if model.kind == "ncl":
        return "ncl", "LlamaForCausalLM", inner.config.to_hf_dict()
    return "transformers", type(inner).__name__, inner.config.to_dict()


def _tokenizer_kind(tok) -> str:
    if isinstance(tok, CharTokenizer):
        return "ncl-char"
    if isinstance(tok, HFTokenizer):
        return "ncl-hf"
    if type(tok).__module__.startswith("tokenizers"):
        return "tokenizers"
    if hasattr(tok, "save_pretrained"):
        return "transformers"
    raise ValueError(f"tokenizer: cannot save a {type(tok).__name__} (ncl, tokenizers or transformers tokenizers)")


def _save_tokenizer(tok, kind: str, d: Path) -> None:
    if kind == "ncl-char":
        storage.write_json(d / "tokenizer.json", tok.to_dict(), indent=2)
    elif kind == "ncl-hf":
        storage.write_text(d / "tokenizer.json", tok.tokenizer.to_str())
        specials = {f"{k}_token": tok.id_to_token(getattr(tok, f"{k}_token_id")) for k in ("bos", "eos", "pad", "unk")
                    if getattr(tok, f"{k}_token_id") is not None}
        storage.write_json(d / "special_tokens_map.json", specials, indent=2)
    elif kind == "tokenizers":
        storage.write_text(d / "tokenizer.json", tok.to_str())
    else:  # transformers writes its own files; the directory's rename below makes them appear at once
        tok.save_pretrained(str(d))


def _load_tokenizer(kind: str, d: Path):
    if kind == "ncl-char":
        data = json.loads((d / "tokenizer.json").read_text())
        if data.get("type") != CHAR_TOKENIZER_TYPE:
            raise ValueError(f"{d / 'tokenizer.json'}: not an ncl CharTokenizer")
        return CharTokenizer.from_dict(data)
    if kind == "ncl-hf":
        return HFTokenizer.from_file(d)
    if kind == "tokenizers":
        import tokenizers  # optional dependency (the [hf] extra)
        return tokenizers.Tokenizer.from_file(str(d / "tokenizer.json"))
    if kind == "transformers":
        import transformers  # optional dependency (the [hf] extra)
        return transformers.AutoTokenizer.from_pretrained(str(d), local_files_only=True)
    raise ValueError(f"{d / CONFIG}: unknown tokenizer kind {kind!r}")


def _tensors(state: dict) -> tuple[dict, dict]:
    """The state dict with each shared storage once, and ``aliases``: a dropped name → the name kept."""
    kept, aliases, seen = {}, {}, {}
    for name, t in state.items():
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), t.dtype) if t.numel() else None
        if key is not None and key in seen:
            aliases[name] = seen[key]
            continue
        if key is not None:
            seen[key] = name
        kept[name] = t.detach().contiguous().cpu()
    return kept, aliases


def save(path, model) -> None:
    """Write ``model`` (an :class:`~ncl.hf.AugmentedModel`) to the directory ``path`` (module docstring)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"path: {path} exists and is not a directory")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = storage.temp_path(path)
    tmp.mkdir()
    try:
        kind, cls, base_config = _base_config(model)
        tok_kind = _tokenizer_kind(model.tokenizer)
        lib = model.computer.library
        user_library = model.has_user_library
        config = {"format": FORMAT, "base_kind": kind, "base_class": cls, "base_config": base_config,
                  "computer": model.computer.config.to_dict(), "split": model.split, "lora": _lora_dict(model.base),
                  "tokenizer": tok_kind, "library": LIBRARY_JSON if user_library else None,
                  "copy": model.copy_head is not None}
        storage.write_json(tmp / CONFIG, config, indent=2)
        tensors, aliases = _tensors(model.state_dict())
        storage.write_bytes(tmp / WEIGHTS, safetensors.torch.save(tensors, metadata={"aliases": json.dumps(aliases)}))
        _save_tokenizer(model.tokenizer, tok_kind, tmp)
        if user_library:
            storage.write_text(tmp / LIBRARY_ASM, lib.disassemble())
            storage.write_json(tmp / LIBRARY_JSON, {"entries": lib.entries, "machine": asdict(lib.config)}, indent=2)
            if model.library_source is not None:
                storage.write_text(tmp / LIBRARY_PY, model.library_source)
        storage.fsync_dir(tmp)
        if path.exists():  # the old directory goes aside first: os.rename cannot replace a non-empty one
            trash = path.with_name(f"{path.name}.trash-{tmp.name.rsplit('-', 1)[-1]}")
            storage.rename(path, trash)
            storage.rename(tmp, path)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            storage.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _build_base(config: dict, path: Path) -> torch.nn.Module:
    if config["base_kind"] == "ncl":
        return NclLlama(LlamaConfig.from_hf_dict(config["base_config"]))
    import transformers  # optional dependency (the [hf] extra)
    cls = config["base_class"]
    if not cls.endswith("ForCausalLM") or not hasattr(transformers, cls):
        raise ValueError(f"{path / CONFIG}: base_class {cls!r} is not a transformers causal LM")
    base_config = dict(config["base_config"])
    model_type = base_config.pop("model_type")
    hf_config = transformers.AutoConfig.for_model(model_type, **base_config)
    return getattr(transformers, cls)(hf_config)


def load(path) -> Saved:
    """Read what :func:`save` wrote (the weights are returned, not yet loaded: see :func:`load_weights`)."""
    path = Path(path)
    file = path / CONFIG
    if not file.is_file():
        raise FileNotFoundError(f"no {CONFIG} in {path} (not a saved ncl.AugmentedModel)")
    config = json.loads(file.read_text())
    if config.get("format") != FORMAT:
        raise ValueError(f"{file}: not an ncl.AugmentedModel (format {config.get('format')!r})")
    base = _build_base(config, path)
    tokenizer = _load_tokenizer(config["tokenizer"], path)
    ccfg = ComputerConfig.from_dict(config["computer"])
    library, source = None, None
    if config.get("library"):
        meta = json.loads((path / config["library"]).read_text())
        library = assemble((path / LIBRARY_ASM).read_text(), MachineConfig(**meta["machine"]))
        library.entries = {k: int(v) for k, v in meta["entries"].items()}
        src = path / LIBRARY_PY
        source = src.read_text() if src.is_file() else None
    state = safetensors.torch.load_file(str(path / WEIGHTS))
    with open(path / WEIGHTS, "rb") as f:  # the header's metadata: the names of tied tensors
        header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
    for alias, name in json.loads(header.get("__metadata__", {}).get("aliases", "{}")).items():
        state[alias] = state[name]
    dtypes = {t.dtype for k, t in state.items() if k.startswith("base.") and t.is_floating_point()}
    if len(dtypes) == 1:
        base.to(dtypes.pop())
    return Saved(base, tokenizer, ccfg, library, source, config["split"], config.get("lora"), state,
                 bool(config.get("copy")))


def load_weights(model, state: dict, path) -> None:
    """Load ``state`` into ``model``; a mismatch is one line naming ``path`` and the first differing keys."""
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{path}: the weights do not fit the model its config builds: {len(missing)} missing "
                         f"(e.g. {missing[:1]}), {len(unexpected)} unexpected (e.g. {unexpected[:1]})")


__all__ = ["FORMAT", "Saved", "load", "load_weights", "save"]
