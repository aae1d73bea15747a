"""Forward throughput of ncl.llama against transformers' LlamaForCausalLM, same weights, on CPU.

    python -m pytest benchmarks/test_llama.py --benchmark-only -s

``test_forward`` times each implementation alone (pytest-benchmark table, tokens/s in ``extra_info``).
``test_forward_ratio`` times both in one run, alternating between them so that machine load hits both alike, and
reports tokens/s of ncl over transformers (target ≥ 1.0) from the median round (the figure of record), with the
spread of the per-round ratios and the best rounds beside it.
Self-contained: needs no benchmark conftest.
"""

import statistics
import time

import pytest
import torch

transformers = pytest.importorskip("transformers")

from ncl.llama import LlamaConfig, LlamaForCausalLM  # noqa: E402

# (preset, batch, sequence length). tiny is the test size; small is a CPU-trainable model for the tasks.
SIZES = {"tiny": ("tiny", 8, 64), "small": ("small", 4, 256)}
ROUNDS = 20  # alternating rounds per implementation in test_forward_ratio


def build(size: str):
    """An ncl model and a transformers model with the same weights, and a batch of random ids."""
    preset, batch, length = SIZES[size]
    config = LlamaConfig.preset(preset)
    torch.manual_seed(0)
    ours = LlamaForCausalLM(config).eval()
    hf_config = transformers.LlamaConfig(**{k: v for k, v in config.to_hf_dict().items() if k != "architectures"})
    theirs = transformers.LlamaForCausalLM(hf_config).eval()
    missing, unexpected = theirs.load_state_dict(ours.state_dict(), strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}, (missing, unexpected)
    ids = torch.randint(0, config.vocab_size, (batch, length), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.allclose(ours(ids).logits, theirs(ids).logits, rtol=1e-4, atol=1e-5)
    return {"ncl": lambda: ours(ids).logits, "transformers": lambda: theirs(ids).logits}, batch * length


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("impl", ["ncl", "transformers"])
def test_forward(benchmark, impl, size):
    forwards, tokens = build(size)
    benchmark.group = f"llama-forward-{size}"
    with torch.no_grad():
        benchmark.pedantic(forwards[impl], rounds=ROUNDS, warmup_rounds=2)
    benchmark.extra_info.update(tokens=tokens, tokens_per_s=tokens / benchmark.stats.stats.median,
                                threads=torch.get_num_threads())


@pytest.mark.parametrize("size", list(SIZES))
def test_forward_ratio(benchmark, size):
    forwards, tokens = build(size)
    times = {name: [] for name in forwards}
    with torch.no_grad():
        for name, fn in forwards.items():  # warm-up
            fn()
            fn()
        for _ in range(ROUNDS):
            for name, fn in forwards.items():
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
        benchmark.group = f"llama-ratio-{size}"
        benchmark.pedantic(forwards["ncl"], rounds=3)
    # The median is the figure of record; the per-round ratios' spread says how far load moved it, and the best
    # rounds estimate the uncontended speed.
    best = {name: tokens / min(t) for name, t in times.items()}
    typical = {name: tokens / statistics.median(t) for name, t in times.items()}
    ratio_best = best["ncl"] / best["transformers"]
    ratio_median = typical["ncl"] / typical["transformers"]
    per_round = sorted(b / a for a, b in zip(times["ncl"], times["transformers"]))
    benchmark.extra_info.update(tokens_per_s_ncl_median=typical["ncl"],
                                tokens_per_s_transformers_median=typical["transformers"], ratio_median=ratio_median,
                                ratio_rounds_min=per_round[0], ratio_rounds_max=per_round[-1],
                                tokens_per_s_ncl_best=best["ncl"], tokens_per_s_transformers_best=best["transformers"],
                                ratio_best=ratio_best, threads=torch.get_num_threads())
    print(f"\n[llama forward {size}: B×T={tokens}, {torch.get_num_threads()} threads, {ROUNDS} alternating rounds] "
          f"median: ncl {typical['ncl']:.0f} tok/s, transformers {typical['transformers']:.0f} tok/s, ratio "
          f"{ratio_median:.2f} (per-round ratios {per_round[0]:.2f}–{per_round[-1]:.2f}); best rounds: ncl "
          f"{best['ncl']:.0f}, transformers {best['transformers']:.0f}, ratio {ratio_best:.2f}")
