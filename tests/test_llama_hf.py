"""ncl.llama against transformers' LlamaForCausalLM, through safetensors checkpoints on disk (nothing downloaded)."""

import math

import pytest
import torch

transformers = pytest.importorskip("transformers")

from ncl.llama import LlamaConfig, LlamaForCausalLM  # noqa: E402

# Relative error = max|a − b| / max|b|. fp32 logits must agree to FP32_RTOL (the bar); bf16 runs against
# transformers' bf16 model to BF16_RTOL, and against fp32 to BF16_VS_FP32_RTOL (bf16 has an 8-bit mantissa).
FP32_RTOL = 1e-4
BF16_RTOL = 1e-2
BF16_VS_FP32_RTOL = 1e-1

LLAMA3_SCALING = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                  "original_max_position_embeddings": 16}

# Tiny configs. rope_theta 10000 with original_max_position_embeddings 16 puts several frequencies in each
# llama3 band (kept, smoothed, divided) at these sequence lengths, so a wrong scaling changes the logits.
CASES = {
    "mha": dict(num_key_value_heads=4),
    "gqa2": dict(num_key_value_heads=2),
    "mqa": dict(num_key_value_heads=1),
    "llama3_tied": dict(num_key_value_heads=2, rope_scaling=LLAMA3_SCALING, tie_word_embeddings=True),
    "llama3_untied": dict(num_key_value_heads=1, rope_scaling=LLAMA3_SCALING),
    "linear_bias": dict(num_key_value_heads=2, rope_scaling={"rope_type": "linear", "factor": 2.0},
                        attention_bias=True, mlp_bias=True),
    "head_dim": dict(num_key_value_heads=2, head_dim=12),
}
BASE = dict(vocab_size=97, hidden_size=32, intermediate_size=56, num_hidden_layers=2, num_attention_heads=4,
            rope_theta=10000.0, max_position_embeddings=128, rms_norm_eps=1e-5, tie_word_embeddings=False,
            bos_token_id=1, eos_token_id=2, pad_token_id=0)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).abs().max() / b.double().abs().max()).item()


def randomize_(model: torch.nn.Module, seed: int) -> None:
    """Unit-scale random weights. The default init (std 0.02) makes attention nearly uniform, which would hide
    errors in RoPE, masking and head grouping; these weights give peaked attention."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g, dtype=torch.float64)
            if name.endswith("norm.weight"):
                value = 1 + 0.2 * noise
            elif p.dim() == 2 and "embed_tokens" not in name:
                gain = 2.5 if ("q_proj" in name or "k_proj" in name) else 1.0
                value = gain * noise / math.sqrt(p.shape[1])
            elif p.dim() == 2:
                value = noise
            else:
                value = 0.1 * noise
            p.copy_(value.to(p.dtype))


def make_hf(case: str, seed: int = 0, dtype=torch.float32):
    config = transformers.LlamaConfig(**{**BASE, **CASES[case]})
    torch.manual_seed(seed)
    model = transformers.LlamaForCausalLM(config).to(dtype).eval()
    randomize_(model, seed)
    return model


def random_ids(B=3, T=24, V=BASE["vocab_size"], seed=1):
    return torch.randint(3, V, (B, T), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("case", sorted(CASES))
def test_hf_checkpoint_logits_match(case, tmp_path):
    hf = make_hf(case)
    hf.save_pretrained(tmp_path)
    model = LlamaForCausalLM.from_pretrained(tmp_path).eval()
    ids = random_ids()
    with torch.no_grad():
        expected = hf(ids).logits
        got = model(ids).logits
    assert got.shape == expected.shape == (3, 24, BASE["vocab_size"])
    assert rel_err(got, expected) < FP32_RTOL
    if CASES[case].get("tie_word_embeddings"):
        assert model.lm_head.weight is model.model.embed_tokens.weight


def test_llama3_scaling_is_checked(tmp_path):
    """The comparison above must be able to fail: the same weights without the llama3 scaling differ."""
    hf = make_hf("llama3_tied")
    hf.save_pretrained(tmp_path)
    model = LlamaForCausalLM.from_pretrained(tmp_path).eval()
    unscaled = LlamaForCausalLM(model.config.replace(rope_scaling=None)).eval()
    unscaled.load_state_dict(model.state_dict())
    ids = random_ids()
    with torch.no_grad():
        assert rel_err(unscaled(ids).logits, hf(ids).logits) > 100 * FP32_RTOL


def test_hf_padding_mask_matches(tmp_path):
    hf = make_hf("gqa2")
    hf.save_pretrained(tmp_path)
    model = LlamaForCausalLM.from_pretrained(tmp_path).eval()
    ids = random_ids(B=3, T=20)
    mask = torch.ones_like(ids)
    mask[0, :5] = 0   # left padding
    mask[2, 14:] = 0  # right padding
    with torch.no_grad():
        expected = hf(ids, attention_mask=mask).logits
        got = model(ids, attention_mask=mask).logits
    valid = mask.bool()
    assert torch.isfinite(got).all()
    assert rel_err(got[valid], expected[valid]) < FP32_RTOL


def test_hf_sharded_checkpoint(tmp_path):
    hf = make_hf("llama3_untied", seed=3)
    hf.save_pretrained(tmp_path, max_shard_size="20KB")
    assert (tmp_path / "model.safetensors.index.json").is_file()
    assert len(list(tmp_path.glob("model-*.safetensors"))) > 2
    model = LlamaForCausalLM.from_pretrained(tmp_path).eval()
    ids = random_ids(seed=4)
    with torch.no_grad():
        assert rel_err(model(ids).logits, hf(ids).logits) < FP32_RTOL


@pytest.mark.parametrize("case,shard", [("llama3_tied", None), ("gqa2", "16KB"), ("linear_bias", None)])
def test_ncl_checkpoint_loads_in_transformers(case, shard, tmp_path):
    config = LlamaConfig.from_hf_dict(transformers.LlamaConfig(**{**BASE, **CASES[case]}).to_dict())
    model = LlamaForCausalLM(config).eval()
    randomize_(model, seed=5)
    model.save_pretrained(tmp_path, **({"max_shard_size": shard} if shard else {}))
    assert (tmp_path / "model.safetensors.index.json").is_file() == (shard is not None)
    hf = transformers.LlamaForCausalLM.from_pretrained(tmp_path).eval()
    assert hf.config.num_key_value_heads == config.num_key_value_heads
    assert hf.config.tie_word_embeddings == config.tie_word_embeddings
    ids = random_ids(seed=6)
    with torch.no_grad():
        assert rel_err(model(ids).logits, hf(ids).logits) < FP32_RTOL


@pytest.mark.parametrize("padded", [False, True])
def test_greedy_generation_matches_transformers(padded, tmp_path):
    hf = make_hf("llama3_tied", seed=7)
    hf.save_pretrained(tmp_path)
    model = LlamaForCausalLM.from_pretrained(tmp_path).eval()
    ids = random_ids(B=2, T=9, seed=8)
    mask = torch.ones_like(ids)
    if padded:
        mask[1, :4] = 0
        ids[1, :4] = 0
    expected = hf.generate(ids, attention_mask=mask, max_new_tokens=12, do_sample=False, eos_token_id=2,
                           pad_token_id=0)
    got = model.generate(ids, 12, attention_mask=mask, eos_token_id=2, pad_token_id=0)
    assert torch.equal(got, expected)


def test_bf16_runs_and_matches(tmp_path):
    hf = make_hf("llama3_tied", seed=9)
    hf.save_pretrained(tmp_path)
    ids = random_ids(seed=10)
    model = LlamaForCausalLM.from_pretrained(tmp_path, dtype=torch.bfloat16).eval()
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())
    with torch.no_grad():
        got = model(ids).logits
        fp32 = hf(ids).logits
        # Loaded in bf16 as a user would: ``hf.to(bf16)`` would also round transformers' RoPE buffer to bf16.
        hf_bf16 = transformers.LlamaForCausalLM.from_pretrained(tmp_path, dtype=torch.bfloat16).eval()
        expected = hf_bf16(ids).logits
    assert got.dtype == torch.bfloat16 and torch.isfinite(got).all()
    assert rel_err(got, expected) < BF16_RTOL
    assert rel_err(got, fp32) < BF16_VS_FP32_RTOL
    out = model.generate(ids[:, :6], 4)
    assert out.shape == (3, 10)
