"""ncl.llama modules against plain float64 references written from the formulas, and their piecewise API."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ncl.llama import (MLP, Attention, KVCache, LlamaConfig, LlamaForCausalLM, RMSNorm, RotaryEmbedding,
                       apply_rotary, rope_inv_freq)

# fp32 module outputs against float64 references: max |a − b| / max |b|.
FP32_RTOL = 1e-5


def rel_err(a, b):
    return ((a.double() - b.double()).abs().max() / b.double().abs().max()).item()


def unit_model(seed=0, **overrides) -> LlamaForCausalLM:
    """A tiny model with unit-scale weights (peaked attention, so errors in masks and positions show)."""
    torch.manual_seed(seed)
    config = LlamaConfig.preset("tiny", **overrides)
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2:
                p.normal_(0, 1.0 if "embed" in name else 2.0 / math.sqrt(p.shape[1]))
            else:
                p.normal_(1.0, 0.2)
    return model


# ---------------------------------------------------------------------------------------------- RMSNorm, MLP


@settings(max_examples=15, deadline=None)
@given(shape=st.lists(st.integers(1, 5), min_size=1, max_size=3), d=st.integers(1, 33),
       eps=st.sampled_from([1e-6, 1e-5, 1e-2]))
def test_rmsnorm_matches_formula(shape, d, eps):
    norm = RMSNorm(d, eps)
    with torch.no_grad():
        norm.weight.normal_()
    x = torch.randn(*shape, d)
    xd, w = x.double(), norm.weight.double()
    expected = w * xd / torch.sqrt(xd.pow(2).mean(-1, keepdim=True) + eps)
    assert rel_err(norm(x), expected) < FP32_RTOL


def test_rmsnorm_bad_input():
    with pytest.raises(ValueError, match="x must have last dimension 8"):
        RMSNorm(8)(torch.randn(2, 7))


def test_mlp_matches_formula():
    mlp = MLP(12, 20)
    x = torch.randn(3, 5, 12)
    g, u, dn = (m.weight.double() for m in (mlp.gate_proj, mlp.up_proj, mlp.down_proj))
    xd = x.double()
    a = xd @ g.T
    expected = ((a * torch.sigmoid(a)) * (xd @ u.T)) @ dn.T
    assert rel_err(mlp(x), expected) < FP32_RTOL


# ---------------------------------------------------------------------------------------------- RoPE


def llama3_inv_freq_reference(head_dim, theta, factor, low, high, old_len):
    """The llama3 rule, one frequency at a time, in float64."""
    out = []
    for i in range(0, head_dim, 2):
        f = theta ** (-i / head_dim)
        wavelen = 2 * math.pi / f
        if wavelen < old_len / high:
            out.append(f)
        elif wavelen > old_len / low:
            out.append(f / factor)
        else:
            gamma = (old_len / wavelen - low) / (high - low)
            out.append((1 - gamma) * f / factor + gamma * f)
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize("head_dim,theta,old_len", [(16, 10000.0, 16), (64, 500000.0, 8192), (128, 500000.0, 8192)])
def test_llama3_inv_freq(head_dim, theta, old_len):
    scaling = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": old_len}
    got = rope_inv_freq(head_dim, theta, scaling)
    expected = llama3_inv_freq_reference(head_dim, theta, 8.0, 1.0, 4.0, old_len)
    assert got.dtype == torch.float32 and got.shape == (head_dim // 2,)
    assert rel_err(got, expected) < FP32_RTOL
    assert torch.allclose(got.double(), expected, rtol=1e-5, atol=0)  # per element, small ones included
    plain = rope_inv_freq(head_dim, theta)
    assert not torch.allclose(got, plain)  # some band was rescaled


def test_rotary_is_a_rotation_and_relative():
    """RoPE rotates pairs (i, i + hd/2): norms are kept and q·k depends only on the position difference."""
    hd = 16
    rope = RotaryEmbedding(hd, 10000.0)
    q, k = torch.randn(1, 1, 1, hd, dtype=torch.float64), torch.randn(1, 1, 1, hd, dtype=torch.float64)

    def rotated(x, pos):
        cos, sin = rope(torch.tensor([[pos]]), dtype=torch.float64)
        return apply_rotary(x, cos, sin)

    assert torch.allclose(rotated(q, 7).norm(), q.norm())
    dot = lambda a, b: (rotated(q, a) * rotated(k, b)).sum()  # noqa: E731
    assert torch.allclose(dot(9, 4), dot(25, 20), rtol=1e-4)
    assert not torch.allclose(dot(9, 4), dot(9, 5), rtol=1e-4)


def test_rotary_bad_input():
    with pytest.raises(ValueError, match="position_ids"):
        RotaryEmbedding(8, 10000.0)(torch.zeros(1, 2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="head_dim"):
        rope_inv_freq(7, 10000.0)


# ---------------------------------------------------------------------------------------------- attention


def attention_reference(attn: Attention, x, cos, sin, mask):
    """Per-head loop in float64 with head h reading key/value head h // (H / G)."""
    B, T, _ = x.shape
    H, G, hd = attn.num_heads, attn.num_kv_heads, attn.head_dim
    xd = x.double()
    proj = lambda m, n: (xd @ m.weight.double().T).view(B, T, n, hd).transpose(1, 2)  # noqa: E731
    q, k, v = proj(attn.q_proj, H), proj(attn.k_proj, G), proj(attn.v_proj, G)
    q, k = apply_rotary(q, cos.double(), sin.double()), apply_rotary(k, cos.double(), sin.double())
    heads = []
    for h in range(H):
        g = h // (H // G)
        scores = q[:, h] @ k[:, g].transpose(-1, -2) / math.sqrt(hd)
        scores = scores.masked_fill(~mask, float("-inf"))
        heads.append(torch.softmax(scores, -1) @ v[:, g])
    out = torch.stack(heads, 1).transpose(1, 2).reshape(B, T, H * hd)
    return out @ attn.o_proj.weight.double().T


@pytest.mark.parametrize("H,G", [(4, 4), (4, 2), (6, 3), (4, 1)])
def test_attention_gqa_matches_reference(H, G):
    torch.manual_seed(H * 10 + G)
    hd, d, B, T = 8, 24, 2, 11
    attn = Attention(d, H, G, hd)
    with torch.no_grad():
        for p in attn.parameters():
            p.normal_(0, 2.0 / math.sqrt(d))
    x = torch.randn(B, T, d)
    cos, sin = RotaryEmbedding(hd, 10000.0)(torch.arange(T))
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    assert rel_err(attn(x, cos, sin), attention_reference(attn, x, cos, sin, causal)) < FP32_RTOL
    # An explicit mask takes the masked path of SDPA; this one also hides key 3 from every later query.
    mask = causal.clone()
    mask[4:, 3] = False
    got = attn(x, cos, sin, attn_mask=mask[None, None].expand(B, 1, T, T))
    assert rel_err(got, attention_reference(attn, x, cos, sin, mask)) < FP32_RTOL


def test_attention_rejects_bad_grouping():
    with pytest.raises(ValueError, match="num_kv_heads"):
        Attention(16, 4, 3, 4)


# ---------------------------------------------------------------------------------------------- piecewise model API


def test_run_layers_in_pieces_equals_forward():
    model = unit_model(num_hidden_layers=3)
    ids = torch.randint(0, 128, (2, 13))
    mask = torch.ones_like(ids)
    mask[0, :3] = 0
    with torch.no_grad():
        full = model.model(ids, attention_mask=mask)
        h = model.model.embed(ids)
        ctx = model.model.context(h, attention_mask=mask)
        for start, end in [(0, 1), (1, 1), (1, 3)]:
            h = model.model.run_layers(h, start, end, context=ctx)
        pieces = model.model.final_norm(h)
        from_embeds = model(inputs_embeds=model.model.embed(ids), attention_mask=mask).logits
    assert torch.equal(pieces, full)
    assert torch.equal(from_embeds, model(ids, attention_mask=mask).logits)


def test_injection_between_layers_changes_later_positions_only():
    """Adding a vector to the hidden state at position t after layer 1 leaves positions < t unchanged (causal)."""
    model = unit_model(num_hidden_layers=3)
    ids = torch.randint(0, 128, (1, 10))
    with torch.no_grad():
        mm = model.model
        base = mm.run_layers(mm.embed(ids), 0, 1)
        injected = base.clone()
        injected[:, 6] += torch.randn(model.config.hidden_size)
        a = mm.final_norm(mm.run_layers(base, 1))
        b = mm.final_norm(mm.run_layers(injected, 1))
    assert torch.equal(a[:, :6], b[:, :6])
    assert not torch.allclose(a[:, 6:], b[:, 6:])


def test_left_padding_equals_unpadded():
    model = unit_model()
    ids = torch.randint(3, 128, (1, 9))
    padded = torch.cat((torch.zeros(1, 4, dtype=torch.long), ids), 1)
    mask = torch.cat((torch.zeros(1, 4, dtype=torch.long), torch.ones_like(ids)), 1)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        expected = model(ids).logits
        got = model(padded, attention_mask=mask, position_ids=positions).logits
    assert torch.isfinite(got).all()
    assert rel_err(got[:, 4:], expected) < FP32_RTOL


def test_chunked_prefill_with_cache_equals_full():
    model = unit_model()
    ids = torch.randint(0, 128, (2, 15))
    with torch.no_grad():
        full = model(ids).logits
        cache = KVCache(model.config.num_hidden_layers)
        parts = [model(ids[:, a:b], cache=cache).logits for a, b in [(0, 6), (6, 7), (7, 15)]]
    assert cache.length() == 15 and len(cache) == 15
    assert rel_err(torch.cat(parts, 1), full) < FP32_RTOL


def test_gradients_flow_and_loss():
    model = unit_model()
    ids = torch.randint(0, 128, (2, 8))
    labels = ids.clone()
    labels[:, :3] = -100
    out = model(ids, labels=labels)
    logp = torch.log_softmax(out.logits.double(), -1)
    expected = -logp[:, 2:-1].gather(-1, ids[:, 3:, None]).mean()
    assert abs(out.loss.item() - expected.item()) < 1e-5
    out.loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_gradients_through_cache():
    """With autograd on, the cache concatenates, so a loss over two cached steps backpropagates."""
    model = unit_model()
    ids = torch.randint(0, 128, (1, 6))
    cache = KVCache(model.config.num_hidden_layers)
    loss = model(ids[:, :4], cache=cache).logits.sum() + model(ids[:, 4:], cache=cache).logits.sum()
    loss.backward()
    assert torch.isfinite(model.model.embed_tokens.weight.grad).all()


@pytest.mark.parametrize("kwargs,match", [
    (dict(input_ids=torch.zeros(2, 3)), "input_ids"),
    (dict(input_ids=torch.zeros(2, 3, 1, dtype=torch.long)), "input_ids"),
    (dict(inputs_embeds=torch.zeros(2, 3, 5)), "inputs_embeds"),
    (dict(input_ids=torch.zeros(2, 3, dtype=torch.long), attention_mask=torch.ones(2, 4)), "attention_mask"),
    (dict(input_ids=torch.zeros(2, 3, dtype=torch.long), position_ids=torch.zeros(2, 4, dtype=torch.long)),
     "position_ids"),
    (dict(input_ids=torch.zeros(2, 3, dtype=torch.long), labels=torch.zeros(2, 4, dtype=torch.long)), "labels"),
    (dict(), "exactly one"),
])
def test_forward_bad_input(kwargs, match):
    model = LlamaForCausalLM(LlamaConfig.preset("tiny"))
    ids = kwargs.pop("input_ids", None)
    with pytest.raises(ValueError, match=match):
        model(ids, **kwargs)


def test_run_layers_bad_range():
    model = LlamaForCausalLM(LlamaConfig.preset("tiny"))
    h = torch.zeros(1, 2, 64)
    with pytest.raises(ValueError, match="start and end"):
        model.model.run_layers(h, 1, 5)
    with pytest.raises(ValueError, match="context or"):
        model.model.run_layers(h, context=model.model.context(h), attention_mask=torch.ones(1, 2))


@pytest.mark.cuda
@pytest.mark.parametrize("padded", [False, True])
def test_cuda_matches_cpu(padded):
    """On a GPU: SDPA's CUDA kernels (and the repeated-keys path taken with a mask) give the CPU logits."""
    model = unit_model(seed=11)
    ids = torch.randint(0, 128, (2, 12))
    mask = torch.ones_like(ids)
    if padded:
        mask[0, :4] = 0
    with torch.no_grad():
        expected = model(ids, attention_mask=mask).logits
        gpu = model.to("cuda")
        got = gpu(ids.cuda(), attention_mask=mask.cuda()).logits.cpu()
        tokens = gpu.generate(ids.cuda(), 6, attention_mask=mask.cuda())
    valid = mask.bool()
    assert rel_err(got[valid], expected[valid]) < 1e-3  # TF32 or reduced-precision reductions may be on
    assert tokens.shape == (2, 18) and tokens.device.type == "cuda"
