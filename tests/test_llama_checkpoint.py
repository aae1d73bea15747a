"""Local safetensors checkpoints: round trips, sharding, dtypes, and clear errors for bad checkpoints."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from ncl.llama import CheckpointError, LlamaConfig, LlamaForCausalLM, load_state_dict, read_config


def random_model(seed=0, **overrides):
    torch.manual_seed(seed)
    model = LlamaForCausalLM(LlamaConfig.preset("tiny", **overrides)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_()
    return model


def assert_same_model(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    ids = torch.randint(0, a.config.vocab_size, (2, 7))
    with torch.no_grad():
        assert torch.equal(a(ids).logits, b(ids).logits)


@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("shard", [None, "30KB"])
def test_round_trip(tied, shard, tmp_path):
    model = random_model(tie_word_embeddings=tied)
    model.save_pretrained(tmp_path, **({"max_shard_size": shard} if shard else {}))
    files = sorted(p.name for p in tmp_path.iterdir())
    if shard:
        assert "model.safetensors.index.json" in files and "model.safetensors" not in files
        index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
        assert set(index["weight_map"]) == set(load_state_dict(tmp_path))
    else:
        assert files == ["config.json", "model.safetensors"]
    assert ("lm_head.weight" in load_state_dict(tmp_path)) == (not tied)
    loaded = LlamaForCausalLM.from_pretrained(tmp_path).eval()
    assert loaded.config == model.config.replace(dtype="float32")
    assert_same_model(loaded, model)
    assert (loaded.lm_head.weight is loaded.model.embed_tokens.weight) == tied
    assert loaded.num_parameters() == model.config.num_parameters()
    # Saving again into the same directory, unsharded, removes the old shards.
    loaded.save_pretrained(tmp_path)
    assert not list(tmp_path.glob("model-*")) and not (tmp_path / "model.safetensors.index.json").exists()
    assert_same_model(LlamaForCausalLM.from_pretrained(tmp_path), model)


@pytest.mark.parametrize("dtype,expected", [(torch.bfloat16, torch.bfloat16), ("fp16", torch.float16),
                                            ("float32", torch.float32), (None, torch.float32)])
def test_dtype_argument(dtype, expected, tmp_path):
    model = random_model()
    model.save_pretrained(tmp_path)
    loaded = LlamaForCausalLM.from_pretrained(tmp_path, dtype=dtype)
    assert {p.dtype for p in loaded.parameters()} == {expected}
    assert loaded.model.rotary_emb.inv_freq.dtype == torch.float32  # positions stay float32
    ids = torch.randint(0, 128, (1, 5))
    with torch.no_grad():
        logits = loaded(ids).logits
    assert logits.dtype == expected and torch.isfinite(logits).all()


def test_auto_dtype_uses_the_checkpoint(tmp_path):
    random_model().to(torch.bfloat16).save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["torch_dtype"] == "bfloat16"
    assert LlamaForCausalLM.from_pretrained(tmp_path, dtype="auto").lm_head.weight.dtype == torch.bfloat16
    with pytest.raises(ValueError, match="dtype"):
        LlamaForCausalLM.from_pretrained(tmp_path, dtype="int8")


def rewrite_weights(path, edit):
    state = load_file(path / "model.safetensors")
    edit(state)
    save_file(state, str(path / "model.safetensors"), metadata={"format": "pt"})


def test_missing_keys_are_named(tmp_path):
    random_model().save_pretrained(tmp_path)

    def drop(state):
        del state["model.layers.1.mlp.up_proj.weight"]
        del state["lm_head.weight"]

    rewrite_weights(tmp_path, drop)
    with pytest.raises(CheckpointError, match="missing keys") as err:
        LlamaForCausalLM.from_pretrained(tmp_path)
    assert "model.layers.1.mlp.up_proj.weight" in str(err.value) and "lm_head.weight" in str(err.value)


def test_mismatched_shapes_are_named(tmp_path):
    random_model().save_pretrained(tmp_path)
    rewrite_weights(tmp_path, lambda s: s.update({"model.layers.0.self_attn.k_proj.weight": torch.zeros(64, 64)}))
    with pytest.raises(CheckpointError, match=r"model\.layers\.0\.self_attn\.k_proj\.weight: checkpoint \(64, 64\), "
                                              r"model \(32, 64\)"):
        LlamaForCausalLM.from_pretrained(tmp_path)


def test_config_that_disagrees_with_weights(tmp_path):
    random_model().save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["num_hidden_layers"] = 3
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="model.layers.2.self_attn.q_proj.weight"):
        LlamaForCausalLM.from_pretrained(tmp_path)


def test_unexpected_keys(tmp_path):
    model = random_model()
    model.save_pretrained(tmp_path)
    rewrite_weights(tmp_path, lambda s: s.update({"model.extra.weight": torch.ones(3),
                                                  "model.rotary_emb.inv_freq": torch.ones(8)}))
    with pytest.raises(CheckpointError, match="unexpected keys") as err:
        LlamaForCausalLM.from_pretrained(tmp_path)
    assert "model.extra.weight" in str(err.value) and "inv_freq" not in str(err.value)
    assert_same_model(LlamaForCausalLM.from_pretrained(tmp_path, strict=False).eval(), model)


def test_tied_checkpoint_with_stored_head(tmp_path):
    """Some tied checkpoints store lm_head.weight anyway; it is accepted and the tie kept."""
    model = random_model(tie_word_embeddings=True)
    model.save_pretrained(tmp_path)
    rewrite_weights(tmp_path, lambda s: s.update({"lm_head.weight": s["model.embed_tokens.weight"].clone()}))
    loaded = LlamaForCausalLM.from_pretrained(tmp_path)
    assert loaded.lm_head.weight is loaded.model.embed_tokens.weight


def test_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="never downloads"):
        LlamaForCausalLM.from_pretrained(tmp_path / "meta-llama/Llama-3.2-1B")
    with pytest.raises(FileNotFoundError, match="config.json"):
        LlamaForCausalLM.from_pretrained(tmp_path)
    random_model().save_pretrained(tmp_path, max_shard_size="30KB")
    shards = sorted(tmp_path.glob("model-*.safetensors"))
    shards[-1].unlink()
    with pytest.raises(FileNotFoundError, match=shards[-1].name):
        LlamaForCausalLM.from_pretrained(tmp_path)
    for p in tmp_path.glob("model*"):
        p.unlink()
    (tmp_path / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="only safetensors"):
        LlamaForCausalLM.from_pretrained(tmp_path)


def test_read_config_formats(tmp_path):
    """transformers 5 (rope_parameters) and 4.x (rope_theta + rope_scaling with 'type') layouts."""
    v5 = {"model_type": "llama", "vocab_size": 50, "hidden_size": 16, "intermediate_size": 24,
          "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
          "rope_parameters": {"rope_type": "llama3", "rope_theta": 123.0, "factor": 2.0, "low_freq_factor": 1.0,
                              "high_freq_factor": 4.0, "original_max_position_embeddings": 32}}
    (tmp_path / "config.json").write_text(json.dumps(v5))
    c5 = read_config(tmp_path)
    assert c5.rope_theta == 123.0 and c5.rope_type == "llama3" and c5.rope_scaling["factor"] == 2.0
    v4 = dict(v5)
    del v4["rope_parameters"]
    v4.update(rope_theta=123.0, rope_scaling={"type": "llama3", "factor": 2.0, "low_freq_factor": 1.0,
                                              "high_freq_factor": 4.0, "original_max_position_embeddings": 32})
    assert LlamaConfig.from_hf_dict(v4) == c5
    v5_default = dict(v5, rope_parameters={"rope_type": "default", "rope_theta": 9.0})
    assert LlamaConfig.from_hf_dict(v5_default).rope_scaling is None
    assert LlamaConfig.from_hf_dict(v5_default).rope_theta == 9.0
