"""Backend choice for every op in :mod:`ncl_kernels`.

Four backends implement one contract (docs/design.md §2):

* ``reference``: pure PyTorch, any device, any float dtype (the spec);
* ``cpp``: the C++ extension on CPU tensors (float64 included);
* ``triton``: Triton kernels on CUDA tensors, or on CPU tensors under ``TRITON_INTERPRET=1``;
* ``cuda``: the CUDA C++ extension on CUDA tensors.

``NCL_BACKEND`` in the environment (or ``backend=`` on a call) forces one; a forced backend that cannot
run the call raises :class:`BackendUnavailable` saying why.

Determinism: under ``torch.use_deterministic_algorithms(True)`` the CPU backends give bit-identical results from
run to run (docs/machine.md, "Long runs and determinism"). A few GPU kernels add with atomics,
in whatever order the threads arrive (:data:`NONDETERMINISTIC`); under ``torch.use_deterministic_algorithms(True)``
:func:`check_deterministic` refuses them on a GPU, as PyTorch refuses its own nondeterministic kernels.
"""

from __future__ import annotations

import os
import warnings

import torch

from ncl_kernels import _ext

BACKENDS = ("reference", "cpp", "triton", "cuda")
LOW_PRECISION = (torch.float16, torch.bfloat16)


class BackendUnavailable(RuntimeError):
    """A backend was asked for that cannot run here (or cannot run this call)."""


def _interpret() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


_triton_error: list[str | None] = []  # memo of _triton_import_error (see _ext.load for why not lru_cache)


def _triton_import_error() -> str | None:
    if not _triton_error:
        try:
            import triton  # noqa: F401  (an optional dependency, and about a second to import)
            _triton_error.append(None)
        except Exception as exc:
            _triton_error.append(f"triton is not importable ({exc})")
    return _triton_error[0]


def unavailable_reason(backend: str) -> str | None:
    """Why ``backend`` cannot run on this machine at all, or ``None`` when it can."""
    if backend == "reference":
        return None
    if backend == "cpp":
        return _ext.load()[1]
    if backend == "cuda":
        reason = _ext.load()[1]
        if reason:
            return reason
        if not _ext.cuda_compiled():
            return ("the extension was built without CUDA (CPU-only torch, no nvcc, or NCL_SKIP_CUDA=1); "
                    + _ext.REBUILD_HINT + " on a machine with CUDA")
        if not torch.cuda.is_available():
            return "no CUDA device is visible"
        return None
    if backend == "triton":
        reason = _triton_import_error()
        if reason:
            return reason
        if not torch.cuda.is_available() and not _interpret():
            return "no CUDA device is visible (set TRITON_INTERPRET=1 to run Triton on the CPU)"
        return None
    raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")


def _call_reason(backend: str, device: torch.device, dtype: torch.dtype) -> str | None:
    """Why ``backend`` cannot run a call on ``device`` with ``dtype``."""
    reason = unavailable_reason(backend)
    if reason:
        return reason
    if backend == "cpp" and device.type != "cpu":
        return f"the cpp backend runs on CPU tensors, got {device}"
    if backend == "cuda" and device.type != "cuda":
        return f"the cuda backend runs on CUDA tensors, got {device}"
    if backend == "triton":
        if device.type == "cpu" and not _interpret():
            return "Triton runs on CPU tensors only under TRITON_INTERPRET=1"
        if dtype == torch.float64:
            return "the triton backend supports float32, float16 and bfloat16, not float64"
    if backend == "cuda" and dtype == torch.float64:
        return "the cuda backend supports float32, float16 and bfloat16, not float64"
    return None


def select(device: torch.device, dtype: torch.dtype, backend: str | None = None) -> str:
    """The backend for a call on ``device`` with ``dtype``.

    Order of precedence: the ``backend`` argument, then ``NCL_BACKEND``, then the fastest available
    (``cuda`` then ``triton`` on a GPU, ``cpp`` on CPU, ``reference`` otherwise).
    """
    forced = backend or os.environ.get("NCL_BACKEND") or None
    if forced is not None:
        if forced not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {forced!r}")
        reason = _call_reason(forced, device, dtype)
        if reason:
            raise BackendUnavailable(f"backend {forced!r} cannot run this call: {reason}")
        return forced
    order = ("cuda", "triton") if device.type == "cuda" else ("cpp",)
    for name in order:
        if _call_reason(name, device, dtype) is None:
            return name
    return "reference"


#: The GPU kernels that add with atomics, so that the order of fp32 additions (and the last bits of the result)
#: can change from run to run: (op, backend, pass) -> where. ``machine_run`` is the whole-run machine kernel,
#: which the ``cuda`` backend runs through Triton too. tests/test_determinism.py checks that every file with an
#: ``atomicAdd`` or ``tl.atomic_*`` is listed here.
NONDETERMINISTIC: dict[tuple[str, str, str], str] = {
    ("alu_mix", "cuda", "fwd"): "MUL, DIV and MOD atomicAdd into a shared-memory row (csrc/cuda/alu.cu)",
    ("alu_mix", "triton", "fwd"): "MUL, DIV and MOD tl.atomic_add into the fp32 output row "
                                  "(ncl_kernels/alu/triton.py)",
    ("soft_write", "cuda", "bwd"): "each bank row atomicAdds its share of the gate's gradient "
                                   "(csrc/cuda/memory.cu)",
    ("machine_run", "triton", "fwd"): "the ALU row's MUL, DIV and MOD add atomically in alu_general_tile "
                                      "(ncl_kernels/machine/triton.py)",
    ("machine_run", "triton", "bwd"): "the fields' gradients are summed over samples with tl.atomic_add "
                                      "(ncl_kernels/machine/triton_bwd.py)",
}


def _alerts_on(device: torch.device) -> bool:
    """Whether kernels on ``device`` run in parallel threads (Triton under TRITON_INTERPRET=1 runs in order)."""
    return device.type == "cuda"


def check_deterministic(op: str, backend: str, device: torch.device, part: str = "fwd") -> None:
    """Raise ``RuntimeError`` (warn, with ``warn_only=True``) if deterministic algorithms are requested and
    ``part`` of ``op`` on ``backend`` adds with atomics on ``device`` (:data:`NONDETERMINISTIC`)."""
    where = NONDETERMINISTIC.get((op, backend, part))
    if where is None or not torch.are_deterministic_algorithms_enabled() or not _alerts_on(device):
        return
    message = (f"ncl: {op} ({part}) on the {backend} backend does not have a deterministic implementation ({where}), "
               "but you set 'torch.use_deterministic_algorithms(True)'. Run it with backend='reference' (or "
               "NCL_BACKEND=reference), whose PyTorch ops follow that setting, or pass warn_only=True to be "
               "warned instead.")
    if torch.is_deterministic_algorithms_warn_only_enabled():
        warnings.warn(message, stacklevel=2)
        return
    raise RuntimeError(message)


def info() -> dict[str, str]:
    """Every backend mapped to ``"available"`` or the reason it is not."""
    return {name: unavailable_reason(name) or "available" for name in BACKENDS}
