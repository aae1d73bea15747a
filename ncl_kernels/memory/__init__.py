"""Memory ops: weighted read, gated write and content addressing of a bank of vectors.

Each public function validates its inputs, picks a backend (:mod:`ncl_kernels.dispatch`) and runs either
the pure-PyTorch reference (autograd through it) or a fused forward with a hand-written fused backward.
Inputs may be float16, bfloat16 or float32 (accumulation is fp32), or float64 on ``reference`` and ``cpp``.
"""

from __future__ import annotations

import torch

from ncl_kernels import _oplib, dispatch
from ncl_kernels.checks import check_inputs
from ncl_kernels.memory import reference

__all__ = ["soft_read", "soft_write", "content_address"]


def _run(name: str, backend: str | None, *inputs: torch.Tensor) -> torch.Tensor:
    chosen = dispatch.select(inputs[0].device, inputs[0].dtype, backend)
    if chosen == "reference":
        return getattr(reference, name)(*inputs)
    return _oplib.apply(name, chosen, *inputs)


def soft_read(bank: torch.Tensor, weights: torch.Tensor, *, backend: str | None = None) -> torch.Tensor:
    r"""Weighted read of a memory bank.

    .. math:: \text{out}_{b,h} = \sum_i w_{b,h,i}\, \text{bank}_{b,i}

    Args:
        bank: ``(B, N, D)`` memory rows.
        weights: ``(B, H, N)`` read weights.
        backend: force ``"reference" | "cpp" | "triton" | "cuda"``; default: :func:`ncl_kernels.dispatch.select`.

    Returns:
        ``(B, H, D)``, in the inputs' dtype.
    """
    check_inputs("soft_read", ("bank", bank, "B N D"), ("weights", weights, "B H N"))
    return _run("soft_read", backend, bank, weights)


def soft_write(bank: torch.Tensor, weights: torch.Tensor, values: torch.Tensor, gate: torch.Tensor, *,
               backend: str | None = None) -> torch.Tensor:
    r"""Gated, weighted overwrite of a memory bank; functional (returns a new tensor).

    .. math:: \text{bank}'_{b,i} = \text{bank}_{b,i} + g_b\, w_{b,i}\, (v_b - \text{bank}_{b,i})

    Args:
        bank: ``(B, N, D)``
        weights: ``(B, N)`` write weights.
        values: ``(B, D)`` the value written.
        gate: ``(B,)`` write strength.
        backend: as in :func:`soft_read`.

    Returns:
        ``(B, N, D)``
    """
    check_inputs("soft_write", ("bank", bank, "B N D"), ("weights", weights, "B N"), ("values", values, "B D"),
                 ("gate", gate, "B"))
    return _run("soft_write", backend, bank, weights, values, gate)


def content_address(bank: torch.Tensor, keys: torch.Tensor, strength: torch.Tensor, *,
                    backend: str | None = None) -> torch.Tensor:
    r"""Content-based addressing: softmax over the cosine similarity of each key with each bank row.

    .. math:: \text{out}_{b,h,i} = \operatorname{softmax}_i\Big(\beta_{b,h}
              \frac{\langle k_{b,h}, m_{b,i}\rangle}{(\lVert k_{b,h}\rVert + \epsilon)(\lVert m_{b,i}\rVert + \epsilon)}\Big),
              \quad \epsilon = 10^{-6}

    Args:
        bank: ``(B, N, D)`` memory rows ``m``.
        keys: ``(B, H, D)``
        strength: ``(B, H)`` sharpness ``β``.
        backend: as in :func:`soft_read`.

    Returns:
        ``(B, H, N)``; each row is a distribution.
    """
    check_inputs("content_address", ("bank", bank, "B N D"), ("keys", keys, "B H D"), ("strength", strength, "B H"))
    return _run("content_address", backend, bank, keys, strength)


def _sample_read(g: torch.Generator):
    return torch.randn(3, 5, 7, generator=g), torch.softmax(torch.randn(3, 2, 5, generator=g), -1)


def _sample_write(g: torch.Generator):
    return (torch.randn(3, 5, 7, generator=g), torch.softmax(torch.randn(3, 5, generator=g), -1),
            torch.randn(3, 7, generator=g), torch.rand(3, generator=g) * 0.9 + 0.05)


def _sample_address(g: torch.Generator):
    return (torch.randn(3, 5, 7, generator=g), torch.randn(3, 2, 7, generator=g),
            torch.rand(3, 2, generator=g) * 5 + 0.5)


_oplib.register(_oplib.OpSpec(
    name="soft_read",
    fn=soft_read,
    fwd_schema="(Tensor bank, Tensor weights) -> Tensor",
    bwd_schema="(Tensor grad, Tensor bank, Tensor weights) -> (Tensor, Tensor)",
    fwd_fake=lambda bank, weights: bank.new_empty(bank.shape[0], weights.shape[1], bank.shape[2]),
    triton_module="ncl_kernels.memory.triton.soft_read",
    sample=_sample_read,
))
_oplib.register(_oplib.OpSpec(
    name="soft_write",
    fn=soft_write,
    fwd_schema="(Tensor bank, Tensor weights, Tensor values, Tensor gate) -> Tensor",
    bwd_schema="(Tensor grad, Tensor bank, Tensor weights, Tensor values, Tensor gate)"
               " -> (Tensor, Tensor, Tensor, Tensor)",
    fwd_fake=lambda bank, weights, values, gate: torch.empty_like(bank),
    triton_module="ncl_kernels.memory.triton.soft_write",
    sample=_sample_write,
))
_oplib.register(_oplib.OpSpec(
    name="content_address",
    fn=content_address,
    fwd_schema="(Tensor bank, Tensor keys, Tensor strength) -> Tensor",
    bwd_schema="(Tensor grad, Tensor out, Tensor bank, Tensor keys, Tensor strength) -> (Tensor, Tensor, Tensor)",
    fwd_fake=lambda bank, keys, strength: bank.new_empty(bank.shape[0], keys.shape[1], bank.shape[1]),
    triton_module="ncl_kernels.memory.triton.content_address",
    saves_output=True,
    sample=_sample_address,
))
