"""LLaMA3 configuration, presets, and conversion to and from Hugging Face ``config.json``.

Field names follow Hugging Face's ``LlamaConfig`` so that a ``config.json`` maps onto this class one to one.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any

# Rope types this package implements. Hugging Face knows more (yarn, dynamic, longrope); a checkpoint that uses one
# of them is refused with a ValueError instead of being run with the wrong positions.
ROPE_TYPES = ("default", "linear", "llama3")

# Keys a llama3 rope-scaling dict must hold, with their meaning in RotaryEmbedding.
LLAMA3_ROPE_KEYS = ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")

LLAMA3_VOCAB = 128256
LLAMA3_ROPE_THETA = 500000.0
LLAMA32_ROPE_SCALING = {
    "rope_type": "llama3",
    "factor": 32.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 8192,
}


@dataclass
class LlamaConfig:
    """Hyper-parameters of a LLaMA3 decoder (the Hugging Face ``LlamaConfig`` fields this package uses).

    Shapes below use d = ``hidden_size``, H = ``num_attention_heads``, G = ``num_key_value_heads``,
    hd = ``head_dim`` (default d / H), F = ``intermediate_size``, V = ``vocab_size``.

    Args:
        vocab_size: V, rows of the token embedding and of the LM head.
        hidden_size: d, the residual-stream width.
        intermediate_size: F, the SwiGLU hidden width.
        num_hidden_layers: number of decoder layers.
        num_attention_heads: H query heads.
        num_key_value_heads: G key/value heads (grouped-query attention); H must be a multiple of G.
            ``None`` means G = H (plain multi-head attention).
        head_dim: hd; ``None`` means d / H.
        max_position_embeddings: the longest context the model was trained for (informational; positions beyond
            it still run).
        rms_norm_eps: ε of every RMSNorm.
        rope_theta: the RoPE base θ.
        rope_scaling: ``None`` or a Hugging Face rope-scaling dict with ``rope_type`` in ``ROPE_TYPES``. For
            ``"llama3"`` it holds ``factor``, ``low_freq_factor``, ``high_freq_factor`` and
            ``original_max_position_embeddings``; for ``"linear"`` it holds ``factor``.
        tie_word_embeddings: the LM head reuses the token-embedding matrix.
        attention_bias: biases on the q, k, v, o projections.
        mlp_bias: biases on the gate, up, down projections.
        initializer_range: standard deviation of the normal init of linear and embedding weights.
        bos_token_id, eos_token_id, pad_token_id: special token ids (``eos_token_id`` may be a list).
        dtype: the parameter dtype recorded in a checkpoint's ``config.json`` (a string such as ``"bfloat16"``),
            or ``None``. Informational: ``from_pretrained(dtype="auto")`` uses it.
    """

    vocab_size: int = 128
    hidden_size: int = 64
    intermediate_size: int = 128
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int | None = 2
    head_dim: int | None = None
    max_position_embeddings: int = 2048
    rms_norm_eps: float = 1e-5
    rope_theta: float = LLAMA3_ROPE_THETA
    rope_scaling: dict | None = None
    tie_word_embeddings: bool = False
    attention_bias: bool = False
    mlp_bias: bool = False
    initializer_range: float = 0.02
    bos_token_id: int | None = None
    eos_token_id: int | list | None = None
    pad_token_id: int | None = None
    dtype: str | None = None
    extra: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        for name in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                     "num_key_value_heads", "max_position_embeddings"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"LlamaConfig.{name} must be a positive int, got {value!r}")
        if self.head_dim is None:
            if self.hidden_size % self.num_attention_heads:
                raise ValueError(
                    f"LlamaConfig.hidden_size ({self.hidden_size}) must be divisible by num_attention_heads "
                    f"({self.num_attention_heads}) when head_dim is not given")
            self.head_dim = self.hidden_size // self.num_attention_heads
        if not isinstance(self.head_dim, int) or self.head_dim <= 0 or self.head_dim % 2:
            raise ValueError(f"LlamaConfig.head_dim must be a positive even int (RoPE rotates pairs), got "
                             f"{self.head_dim!r}")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"LlamaConfig.num_attention_heads ({self.num_attention_heads}) must be a multiple of "
                f"num_key_value_heads ({self.num_key_value_heads})")
        if not self.rms_norm_eps > 0:
            raise ValueError(f"LlamaConfig.rms_norm_eps must be > 0, got {self.rms_norm_eps!r}")
        if not self.rope_theta > 0:
            raise ValueError(f"LlamaConfig.rope_theta must be > 0, got {self.rope_theta!r}")
        self.rope_scaling = _normalize_rope_scaling(self.rope_scaling)

    # ------------------------------------------------------------------ derived sizes

    @property
    def rope_type(self) -> str:
        """The rope type in use: ``"default"`` when ``rope_scaling`` is None."""
        return "default" if self.rope_scaling is None else self.rope_scaling["rope_type"]

    @property
    def num_key_value_groups(self) -> int:
        """H / G: query heads that share one key/value head."""
        return self.num_attention_heads // self.num_key_value_heads

    def num_parameters(self) -> int:
        """The number of distinct parameters of ``LlamaForCausalLM`` with this config (tied weights count once).

        Per layer: q and o are d·H·hd each, k and v are d·G·hd each, the MLP is 3·d·F, and two norms are d each.
        """
        d, hd, H, G, F, V = (self.hidden_size, self.head_dim, self.num_attention_heads, self.num_key_value_heads,
                             self.intermediate_size, self.vocab_size)
        attn = 2 * d * H * hd + 2 * d * G * hd
        if self.attention_bias:
            attn += H * hd + 2 * G * hd + d  # q, k, v biases and the o bias
        mlp = 3 * d * F + ((2 * F + d) if self.mlp_bias else 0)
        layer = attn + mlp + 2 * d
        embed = V * d
        head = 0 if self.tie_word_embeddings else V * d
        return embed + self.num_hidden_layers * layer + d + head

    # ------------------------------------------------------------------ presets and copies

    @classmethod
    def preset(cls, name: str, **overrides) -> "LlamaConfig":
        """The config of a named preset (see ``PRESETS``), with keyword ``overrides`` applied."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset name {name!r}; known presets: {sorted(PRESETS)}")
        fields = copy.deepcopy(PRESETS[name])
        fields.update(overrides)
        return cls(**fields)

    def replace(self, **changes) -> "LlamaConfig":
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(copy.deepcopy(self), **changes)

    # ------------------------------------------------------------------ Hugging Face config.json

    @classmethod
    def from_hf_dict(cls, data: dict) -> "LlamaConfig":
        """Read a Hugging Face ``config.json`` dict (transformers 4.x or 5.x layout).

        transformers 5 stores ``rope_theta`` and the scaling inside ``rope_parameters``; 4.x stores ``rope_theta``
        at the top and the scaling in ``rope_scaling``. Both are accepted. Keys this package does not use are kept
        in ``extra`` so that ``to_hf_dict`` writes them back.
        """
        if not isinstance(data, dict):
            raise ValueError(f"config must be a dict, got {type(data).__name__}")
        model_type = data.get("model_type", "llama")
        if model_type != "llama":
            raise ValueError(f"config model_type must be 'llama', got {model_type!r}")
        act = data.get("hidden_act", "silu")
        if act != "silu":
            raise ValueError(f"config hidden_act must be 'silu' (SwiGLU), got {act!r}")
        names = {f.name for f in dataclasses.fields(cls)} - {"extra", "rope_scaling", "rope_theta", "dtype"}
        kwargs = {k: data[k] for k in names if k in data}
        missing = [k for k in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                               "num_attention_heads") if k not in data]
        if missing:
            raise ValueError(f"config.json is missing required keys: {missing}")

        rope = data.get("rope_parameters")
        if rope is not None:
            rope = dict(rope)
            theta = rope.pop("rope_theta", data.get("rope_theta", 10000.0))
            scaling = rope if rope.get("rope_type", rope.get("type", "default")) != "default" else None
        else:
            theta = data.get("rope_theta", 10000.0)  # Hugging Face's default base when none is stored
            scaling = data.get("rope_scaling")
        kwargs["rope_theta"] = float(theta)
        kwargs["rope_scaling"] = scaling
        kwargs["dtype"] = data.get("dtype", data.get("torch_dtype"))
        used = names | {"rope_parameters", "rope_scaling", "rope_theta", "dtype", "torch_dtype", "model_type",
                        "hidden_act", "architectures", "transformers_version", "pretraining_tp", "use_cache",
                        "attention_dropout"}
        kwargs["extra"] = {k: v for k, v in data.items() if k not in used}
        return cls(**kwargs)

    def to_hf_dict(self) -> dict:
        """A Hugging Face ``config.json`` dict that transformers 4.x and 5.x both load as ``LlamaForCausalLM``.

        The rope is written in the 4.x layout (``rope_theta`` plus ``rope_scaling``), which 5.x converts on load.
        """
        out: dict[str, Any] = dict(self.extra)
        out.update({
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "hidden_act": "silu",
            "attention_dropout": 0.0,
            "pretraining_tp": 1,
            "use_cache": True,
        })
        for f in dataclasses.fields(self):
            if f.name in ("extra", "dtype"):
                continue
            out[f.name] = copy.deepcopy(getattr(self, f.name))
        if self.dtype is not None:
            out["torch_dtype"] = self.dtype
        return dict(sorted(out.items()))


def _normalize_rope_scaling(scaling: dict | None) -> dict | None:
    """Check a rope-scaling dict and give it a ``rope_type`` key (4.x checkpoints sometimes call it ``type``)."""
    if scaling is None:
        return None
    if not isinstance(scaling, dict):
        raise ValueError(f"LlamaConfig.rope_scaling must be a dict or None, got {type(scaling).__name__}")
    scaling = dict(scaling)
    rope_type = scaling.pop("type", None)
    rope_type = scaling.get("rope_type", rope_type)
    if rope_type is None:
        raise ValueError("LlamaConfig.rope_scaling needs a 'rope_type' key")
    if rope_type not in ROPE_TYPES:
        raise ValueError(f"LlamaConfig.rope_scaling rope_type {rope_type!r} is not supported; supported: "
                         f"{list(ROPE_TYPES)}")
    scaling.pop("rope_theta", None)  # the base lives in LlamaConfig.rope_theta
    scaling["rope_type"] = rope_type
    if rope_type == "default":
        return None
    needed = LLAMA3_ROPE_KEYS if rope_type == "llama3" else ("factor",)
    missing = [k for k in needed if k not in scaling]
    if missing:
        raise ValueError(f"LlamaConfig.rope_scaling of type {rope_type!r} is missing keys {missing}")
    if not scaling["factor"] > 0:
        raise ValueError(f"LlamaConfig.rope_scaling factor must be > 0, got {scaling['factor']!r}")
    if rope_type == "llama3" and not scaling["high_freq_factor"] > scaling["low_freq_factor"]:
        raise ValueError("LlamaConfig.rope_scaling needs high_freq_factor > low_freq_factor, got "
                         f"{scaling['high_freq_factor']!r} and {scaling['low_freq_factor']!r}")
    return scaling


_LLAMA32_COMMON = dict(
    vocab_size=LLAMA3_VOCAB,
    intermediate_size=8192,
    num_key_value_heads=8,
    max_position_embeddings=131072,
    rms_norm_eps=1e-5,
    rope_theta=LLAMA3_ROPE_THETA,
    rope_scaling=LLAMA32_ROPE_SCALING,
    tie_word_embeddings=True,
    bos_token_id=128000,
    eos_token_id=128001,
)

# Published dimensions of Meta's releases (their Hugging Face config.json files). ``tiny`` is test-sized, and
# ``small`` is a CPU-trainable size for the algorithmic tasks and the benchmarks.
PRESETS: dict[str, dict] = {
    "tiny": dict(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512),
    "small": dict(vocab_size=512, hidden_size=256, intermediate_size=688, num_hidden_layers=4,
                  num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=2048),
    "llama3.2-1b": dict(_LLAMA32_COMMON, hidden_size=2048, num_hidden_layers=16, num_attention_heads=32,
                        head_dim=64),
    "llama3.2-3b": dict(_LLAMA32_COMMON, hidden_size=3072, num_hidden_layers=28, num_attention_heads=24,
                        head_dim=128),
    "llama3-8b": dict(vocab_size=LLAMA3_VOCAB, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                      num_attention_heads=32, num_key_value_heads=8, head_dim=128, max_position_embeddings=8192,
                      rms_norm_eps=1e-5, rope_theta=LLAMA3_ROPE_THETA, rope_scaling=None,
                      tie_word_embeddings=False, bos_token_id=128000, eos_token_id=128001),
}


def preset_names() -> list[str]:
    """The names accepted by ``LlamaConfig.preset``."""
    return list(PRESETS)
