"""LLaMA3 building blocks as drop-in ``torch.nn`` modules, with local Hugging Face checkpoint loading.

- ``LlamaConfig`` and its presets (``LlamaConfig.preset("llama3.2-1b")``, ``preset_names()``);
- modules: ``RMSNorm``, ``RotaryEmbedding``, ``Attention``, ``MLP``, ``DecoderLayer``, ``LlamaModel``,
  ``LlamaForCausalLM``; ``KVCache`` for incremental decoding;
- ``LlamaForCausalLM.from_pretrained(dir)`` / ``save_pretrained(dir)`` for local safetensors checkpoints.

Logits equal ``transformers.LlamaForCausalLM``'s for the same weights. See ``docs/llama.md``.
"""

from .attention import Attention
from .cache import KVCache
from .checkpoint import CheckpointError, load_state_dict, read_config, save_pretrained
from .config import PRESETS, LlamaConfig, preset_names
from .generation import greedy_generate
from .layer import DecoderLayer
from .mlp import MLP
from .model import CausalLMOutput, LayerContext, LlamaForCausalLM, LlamaModel, causal_lm_loss
from .norm import RMSNorm
from .rope import RotaryEmbedding, apply_rotary, rope_inv_freq

__all__ = [
    "Attention", "CausalLMOutput", "CheckpointError", "DecoderLayer", "KVCache", "LayerContext", "LlamaConfig",
    "LlamaForCausalLM", "LlamaModel", "MLP", "PRESETS", "RMSNorm", "RotaryEmbedding", "apply_rotary",
    "causal_lm_loss", "greedy_generate", "load_state_dict", "preset_names", "read_config", "rope_inv_freq",
    "save_pretrained",
]
