"""Greedy generation: KV-cache decoding equals full recompute; padding, EOS and the cache itself."""

import math

import pytest
import torch

from ncl.llama import KVCache, LlamaConfig, LlamaForCausalLM

FP32_RTOL = 1e-5


def rel_err(a, b):
    return ((a.double() - b.double()).abs().max() / b.double().abs().max()).item()


def unit_model(seed=0, **overrides) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    model = LlamaForCausalLM(LlamaConfig.preset("tiny", **overrides)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2:
                p.normal_(0, 1.0 if "embed" in name else 2.0 / math.sqrt(p.shape[1]))
            else:
                p.normal_(1.0, 0.2)
    return model


@pytest.mark.parametrize("overrides", [
    {},
    {"num_key_value_heads": 1, "tie_word_embeddings": True},
    {"rope_scaling": {"rope_type": "llama3", "factor": 4.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                      "original_max_position_embeddings": 8}},
])
def test_cached_generation_equals_recompute(overrides):
    model = unit_model(**overrides)
    ids = torch.randint(0, 128, (3, 7), generator=torch.Generator().manual_seed(1))
    cached = model.generate(ids, 20, use_cache=True)
    recomputed = model.generate(ids, 20, use_cache=False)
    assert cached.shape == (3, 27)
    assert torch.equal(cached[:, :7], ids)
    assert torch.equal(cached, recomputed)


def test_cached_step_logits_equal_full_forward():
    """Each one-token step against the cache gives the logits of the full forward at that position."""
    model = unit_model(seed=2)
    ids = torch.randint(0, 128, (2, 16))
    with torch.no_grad():
        full = model(ids).logits
        cache = KVCache(model.config.num_hidden_layers, capacity=4)  # small: the buffers must grow
        steps = [model(ids[:, :5], cache=cache).logits]
        steps += [model(ids[:, t:t + 1], cache=cache).logits for t in range(5, 16)]
    assert rel_err(torch.cat(steps, 1), full) < FP32_RTOL


def test_left_padded_batch_generates_like_single_rows():
    model = unit_model(seed=3)
    g = torch.Generator().manual_seed(4)
    short, long = torch.randint(3, 128, (1, 4), generator=g), torch.randint(3, 128, (1, 9), generator=g)
    batch = torch.zeros(2, 9, dtype=torch.long)
    mask = torch.zeros(2, 9, dtype=torch.long)
    batch[0, 5:], mask[0, 5:] = short, 1
    batch[1], mask[1] = long, 1
    out = model.generate(batch, 10, attention_mask=mask)
    assert torch.equal(out[0, 9:], model.generate(short, 10)[0, 4:])
    assert torch.equal(out[1, 9:], model.generate(long, 10)[0, 9:])
    assert torch.equal(out, model.generate(batch, 10, attention_mask=mask, use_cache=False))


def test_eos_stops_and_pads():
    model = unit_model(seed=5)
    ids = torch.randint(0, 128, (2, 5))
    free = model.generate(ids, 12)
    eos = int(free[0, 7])  # the token row 0 emits at its third step
    out = model.generate(ids, 12, eos_token_id=eos, pad_token_id=0)
    first = (out[0, 5:] == eos).nonzero()[0, 0].item() + 5
    assert first <= 7
    assert torch.equal(out[0, :first + 1], free[0, :first + 1])
    assert (out[0, first + 1:] == 0).all()
    if out.shape[1] < 17:  # stopped early: every row has finished
        assert (out[1, 5:] == eos).any()


def test_generate_bad_input():
    model = unit_model()
    with pytest.raises(ValueError, match="input_ids"):
        model.generate(torch.zeros(2, 3), 4)
    with pytest.raises(ValueError, match="max_new_tokens"):
        model.generate(torch.zeros(2, 3, dtype=torch.long), -1)
    with pytest.raises(ValueError, match="attention_mask"):
        model.generate(torch.zeros(2, 3, dtype=torch.long), 2, attention_mask=torch.ones(2, 4))


def test_kv_cache_shapes_and_errors():
    cache = KVCache(2)
    k = torch.randn(1, 2, 3, 4)
    with torch.no_grad():
        keys, values = cache.update(1, k, k + 1)
        keys, values = cache.update(1, k, k + 1)
    assert keys.shape == (1, 2, 6, 4) and cache.length(1) == 6 and cache.length(0) == 0
    assert torch.equal(keys[:, :, 3:], k) and torch.equal(cache.values(1)[:, :, :3], k + 1)
    with pytest.raises(ValueError, match="layer"):
        cache.update(2, k, k)
    with pytest.raises(ValueError, match="k has shape"):
        cache.update(1, torch.randn(1, 3, 1, 4), torch.randn(1, 3, 1, 4))
    cache.reset()
    assert cache.length(1) == 0 and cache.keys(1) is None
