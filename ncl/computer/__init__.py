r"""The neural computer: heads that drive the differentiable computer from a transformer's hidden states, the
run on the compiled library image, and the readout embeddings (docs/design.md §5 steps 2–4).

Data flow for a batch of B prompts of T tokens (hidden size d, values in Z_n, C cells, P library programs):

1. **Tape writes** (:mod:`ncl.computer.tape`). Every prompt token t gives a gate ``g_t`` and a value ``v_t`` (a
   distribution over Z_n). A write pointer ``p`` (a distribution over cells, starting at cell 0) appends: cell c
   becomes ``(1 − g_t p_c) mem_c + g_t p_c v_t``, then ``p ← (1 − g_t) p + g_t shift(p)``.
2. **Arguments** (:mod:`ncl.computer.arguments`). Register r_k (k = 1..A) is a mixture, chosen by a head on the
   last prompt token, over sources: the first ``arg_cells`` tape cells, the tape length (the write pointer's
   final position read as a value) and the value 0.
3. **Program choice** (:mod:`ncl.computer.run`). ``π = softmax(head(h_last))`` over the library's entry points.
   Two modes: ``"mixture"`` runs each of the top-k programs as its own machine instance and mixes their
   readouts by π (renormalised over the k); ``"superposition"`` runs one machine from
   ``ip = Σ_p π_p δ(entry_p)``.
4. **Run** on the library image, with adaptive halting.
5. **Readouts** (:mod:`ncl.computer.readout`). r0 and the tape cell under a read pointer (advanced by a gate at
   each read position), plus whether that cell was written, are embedded (d) for the positions in
   ``read_mask``.

Data-dependent control flow only computes the right thing on near-one-hot inputs (docs/design.md §5), so the
gates, tape values and argument registers are *straight-through* (:mod:`ncl.computer.sharp`): their forward
value is hard (0/1, one-hot of the argmax) and their gradient is the soft one's.

The library program is compiled with a sharpness of 120 by default (:data:`DEFAULT_MACHINE`): in fp32
``exp(−120)`` underflows to 0, so every field is exactly one-hot, and on hard inputs the soft machine equals the
VM at every step (no leaked "phantom" mass, hence no finite horizon, docs/machine.md). Gradients still reach the
inputs through the soft ALU, memory and control ops. A trainable library (``train_library=True``) should use a
lower sharpness.

Modules: :mod:`~ncl.computer.config` (:class:`ComputerConfig`), :mod:`~ncl.computer.tape`,
:mod:`~ncl.computer.arguments`, :mod:`~ncl.computer.run`, :mod:`~ncl.computer.readout`,
:mod:`~ncl.computer.outputs` (the typed results), :mod:`~ncl.computer.module` (:class:`NeuralComputer`) and
:mod:`~ncl.computer.calls` (a chain of calls, each on segments of the tape and earlier results).
"""

from ncl.computer.config import DEFAULT_MACHINE, MODES, PLACES, READERS, WRITERS, ComputerConfig
from ncl.computer.module import NeuralComputer
from ncl.computer.outputs import ComputerOutput, ComputerState, Heads, PromptHeads
from ncl.computer.sharp import straight_through, straight_through_gate

__all__ = ["ComputerConfig", "ComputerOutput", "ComputerState", "DEFAULT_MACHINE", "Heads", "MODES",
           "NeuralComputer", "PLACES", "PromptHeads", "READERS", "WRITERS", "straight_through",
           "straight_through_gate"]
