"""LlamaConfig: presets with their published dimensions, parameter counts, validation, config.json round trip."""

import pytest
import torch

from ncl.llama import PRESETS, LlamaConfig, LlamaForCausalLM, preset_names

# Parameter counts Meta and Hugging Face publish for these checkpoints (sum of numel over the safetensors).
PUBLISHED_PARAMETERS = {"llama3.2-1b": 1_235_814_400, "llama3.2-3b": 3_212_749_824, "llama3-8b": 8_030_261_248}


def test_preset_names():
    assert set(preset_names()) == set(PRESETS) >= {"tiny", "llama3.2-1b", "llama3.2-3b", "llama3-8b"}


@pytest.mark.parametrize("name,d,layers,heads,kv,hd,ffn,tied", [
    ("llama3.2-1b", 2048, 16, 32, 8, 64, 8192, True),
    ("llama3.2-3b", 3072, 28, 24, 8, 128, 8192, True),
    ("llama3-8b", 4096, 32, 32, 8, 128, 14336, False),
])
def test_published_presets(name, d, layers, heads, kv, hd, ffn, tied):
    c = LlamaConfig.preset(name)  # fields only: the big presets are never instantiated
    assert (c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.num_key_value_heads, c.head_dim,
            c.intermediate_size, c.tie_word_embeddings) == (d, layers, heads, kv, hd, ffn, tied)
    assert c.vocab_size == 128256 and c.rope_theta == 500000.0 and c.rms_norm_eps == 1e-5
    if name.startswith("llama3.2"):
        assert c.rope_scaling == {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                                  "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
        assert c.max_position_embeddings == 131072
    else:
        assert c.rope_scaling is None and c.max_position_embeddings == 8192
    assert c.num_parameters() == PUBLISHED_PARAMETERS[name]


@pytest.mark.parametrize("overrides", [
    {}, {"tie_word_embeddings": True}, {"attention_bias": True}, {"mlp_bias": True, "head_dim": 24},
    {"num_key_value_heads": 1, "num_hidden_layers": 3},
])
def test_num_parameters_counts_the_module(overrides):
    config = LlamaConfig.preset("tiny", **overrides)
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    assert model.num_parameters() == config.num_parameters()


def test_preset_overrides_and_copies():
    c = LlamaConfig.preset("tiny", num_hidden_layers=5)
    assert c.num_hidden_layers == 5 and c.head_dim == 64 // 4
    c.rope_scaling = None
    assert LlamaConfig.preset("llama3.2-1b").rope_scaling is not None  # presets are not shared mutable state
    assert c.replace(hidden_size=32).head_dim == 16
    assert c.num_key_value_groups == 2


@pytest.mark.parametrize("kwargs,match", [
    (dict(hidden_size=0), "hidden_size"),
    (dict(hidden_size=30, num_attention_heads=4), "hidden_size"),
    (dict(num_key_value_heads=3), "num_key_value_heads"),
    (dict(head_dim=7), "head_dim"),
    (dict(vocab_size=1.5), "vocab_size"),
    (dict(rms_norm_eps=0.0), "rms_norm_eps"),
    (dict(rope_scaling={"rope_type": "yarn", "factor": 2.0}), "rope_scaling"),
    (dict(rope_scaling={"rope_type": "llama3", "factor": 2.0}), "missing keys"),
    (dict(rope_scaling={"factor": 2.0}), "rope_type"),
])
def test_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LlamaConfig.preset("tiny", **kwargs)


def test_unknown_preset():
    with pytest.raises(ValueError, match="unknown preset"):
        LlamaConfig.preset("llama2-7b")


def test_hf_dict_round_trip_keeps_extra_keys():
    c = LlamaConfig.preset("llama3.2-1b", extra={"custom_field": [1, 2]})
    data = c.to_hf_dict()
    assert data["model_type"] == "llama" and data["architectures"] == ["LlamaForCausalLM"]
    assert data["rope_theta"] == 500000.0 and data["rope_scaling"]["rope_type"] == "llama3"
    assert data["custom_field"] == [1, 2]
    assert LlamaConfig.from_hf_dict(data) == c


@pytest.mark.parametrize("data,match", [
    ({"model_type": "mistral"}, "model_type"),
    ({"model_type": "llama", "hidden_act": "gelu"}, "hidden_act"),
    ({"model_type": "llama", "hidden_size": 8}, "missing required keys"),
])
def test_hf_dict_rejects(data, match):
    with pytest.raises(ValueError, match=match):
        LlamaConfig.from_hf_dict(data)
