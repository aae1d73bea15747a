"""Triton kernels for the memory ops, one module per op, as host functions: forward and hand-written backward.

* :mod:`~ncl_kernels.memory.triton.soft_read` (``soft_read_fwd``, ``soft_read_bwd``),
* :mod:`~ncl_kernels.memory.triton.soft_write` (``soft_write_fwd``, ``soft_write_bwd``),
* :mod:`~ncl_kernels.memory.triton.content_address` (``content_address_fwd``, ``content_address_bwd``),
* :mod:`~ncl_kernels.memory.triton.tiling`: the tile choice, launch sizing and compile-target helper they
  share.

Each op module exports its ``COMPILE_TARGETS`` and is its op's ``triton_module`` in the registry
(:mod:`ncl_kernels.memory`). This package imports none of them (importing Triton costs about a second).

The autograd wiring, the ``torch.library`` registration and the input validation live in
:mod:`ncl_kernels.memory`; the functions here assume inputs that already passed those checks (same device,
same dtype in fp32/fp16/bf16), but call ``.contiguous()`` anyway, which costs nothing on contiguous tensors
and keeps a strided input correct.

Numerics: every kernel loads in the input dtype, upcasts to fp32, accumulates in fp32 and casts once on
store. Cross-program partial sums (the "small reductions" of the backward passes) go through fp32
workspaces and are summed by PyTorch in fp32 before the final cast.

Triton rules followed here (see docs/building.md): the 3.6 API with plain pointer arithmetic (no block
pointers, no libdevice, no inline asm), every load masked, no ``tl.dot`` (the products are formed by
broadcasting in fp32, which is exact under the interpreter and leaves the memory-bound kernels bound by
memory on the GPU), no autotuning. The kernels run on CUDA tensors, or on CPU tensors when
``TRITON_INTERPRET=1`` was set before these modules were imported.

Tiling: the head dimension ``H`` (a handful of heads) is held whole in every program as a
``next_power_of_2(H)`` block; ``N`` and ``D`` are looped over in tiles whose sizes are picked from the shapes
so that the largest 3-D temporary (``BLOCK_H x BLOCK_N x BLOCK_D``) stays within
:data:`~ncl_kernels.memory.triton.tiling.TILE_BUDGET` elements. Large ``H`` therefore still runs correctly,
with smaller ``N``/``D`` tiles.

Parallelism: the forward reductions over ``N`` (``soft_read``, ``content_address``) would have only
``B`` (times a few ``D`` tiles) programs, too few to stream the bank at full bandwidth on a GPU with a small
batch. When that is the case, ``N`` is cut into splits (a whole number of tiles each, see
:func:`~ncl_kernels.memory.triton.tiling.n_splits`) whose partial results are merged afterwards: fp32 partial
sums for ``soft_read``, and per-split softmax (max, sum-exp) statistics merged by a second small kernel for
``content_address``.
"""
