r"""``NeuralComputer``: heads that drive the differentiable computer from a transformer's hidden states, the run
on the compiled library image, and the readout embeddings (DESIGN §5 steps 2–4).

Data flow for a batch of B prompts of T tokens (hidden size d, values in Z_n, C cells, P library programs):

1. **Tape writes.** Every prompt token t gives a gate ``g_t`` and a value ``v_t`` (a distribution over Z_n).
   A write pointer ``p`` (a distribution over cells, starting at cell 0) appends: cell c becomes
   ``(1 − g_t p_c) mem_c + g_t p_c v_t``, then ``p ← (1 − g_t) p + g_t shift(p)``.
2. **Arguments.** Register r_k (k = 1..A) is a mixture, chosen by a head on the last prompt token, over
   sources: the first ``arg_cells`` tape cells, the tape length (the write pointer's final position read as a
   value) and the value 0.
3. **Program choice.** ``π = softmax(head(h_last))`` over the library's entry points. Two modes:
   ``"mixture"`` runs each of the top-k programs as its own machine instance and mixes their readouts by π
   (renormalised over the k); ``"superposition"`` runs one machine from ``ip = Σ_p π_p δ(entry_p)``.
4. **Run** on the library image, with adaptive halting.
5. **Readouts.** r0 and the tape cell under a read pointer (advanced by a gate at each read position), plus
   whether that cell was written, are embedded (d) for the positions in ``read_mask``.

Data-dependent control flow only computes the right thing on near-one-hot inputs (DESIGN §5), so the gates,
tape values and argument registers are *straight-through*: their forward value is hard (0/1, one-hot of the
argmax) and their gradient is the soft one's.

The library program is compiled with a sharpness of 120 by default: in fp32 ``exp(−120)`` underflows to 0, so
every field is exactly one-hot, and on hard inputs the soft machine equals the VM at every step (no leaked
"phantom" mass, hence no finite horizon, docs/machine.md). Gradients still reach the inputs through the soft
ALU, memory and control ops. A trainable library (``train_library=True``) should use a lower sharpness.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

MODES = ("mixture", "superposition")
READERS = ("mlp", "digits")
WRITERS = ("embed", "digits")
PLACES = 4  #: digit positions a printed value may have (n <= 10**PLACES)


@dataclass(frozen=True)
class ComputerConfig:
    """Sizes and options of :class:`NeuralComputer`.

    Args:
        n: value range (Z_n).
        cells: tape / memory cells C.
        registers: machine registers K.
        stack: stack depth S.
        sharpness: β of the compiled library (120: exactly one-hot fields in fp32).
        arg_registers: A, the argument registers r1..rA the heads set.
        arg_cells: how many leading tape cells the argument heads may pick from.
        mode: ``"mixture"`` or ``"superposition"`` (program choice).
        top_k: programs run per sample in ``"mixture"`` mode.
        min_prob: in ``"mixture"`` mode, candidates whose renormalised weight is below this are not run
            (they would contribute less than this to every readout).
        max_steps: step limit of a run (adaptive halting stops earlier).
        train_library: make the library's logits trainable.
        straight_through: hard forward values for gates, tape values and arguments (False: soft values).
        reader: how a token's tape value is read: ``"mlp"`` (a head maps the hidden state to a distribution over
            Z_n) or ``"digits"`` (heads say whether each token is a digit and which; a fixed base-10 recurrence
            ``acc ← 10·acc + digit`` on distributions over Z_n accumulates them, and a token's value is the
            number its preceding digits spell).
        writer: what the readouts carry: ``"embed"`` (learned embeddings of the r0 and tape-cell distributions)
            or ``"digits"`` (also the decimal digit of each under a digit pointer: it starts at the most
            significant digit, advances by a gate at each digit the answer writes and resets with the read
            pointer; past the last digit it reads "end"), so the decoder copies digits instead of recalling the
            spelling of every value.
        digit_tokens: ``()`` or the token ids of ``"0"``..``"9"`` (needs ``reader="digits"``). When given, a
            prompt token's digit is the one its id spells (``forward`` then needs ``input_ids``) instead of a
            learned classification, so digits that never occur in training are read right; the gates that say
            where numbers end are still learned. :class:`~ncl.augmented.AugmentedLlama` uses the same ids to
            print the readout's digits (a copy distribution) and to embed every digit token alike.
    """

    n: int = 128
    cells: int = 32
    registers: int = 8
    stack: int = 24
    sharpness: float = 120.0
    arg_registers: int = 3
    arg_cells: int = 4
    mode: str = "mixture"
    top_k: int = 2
    min_prob: float = 1e-3
    max_steps: int = 2000
    train_library: bool = False
    straight_through: bool = True
    reader: str = "mlp"
    writer: str = "embed"
    digit_tokens: tuple = ()

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"ComputerConfig: mode must be one of {MODES}, got {self.mode!r}")
        if self.cells > self.n:
            raise ValueError("ComputerConfig: cells must be <= n (the tape length is read as a value)")
        if not 1 <= self.arg_registers < self.registers:
            raise ValueError(f"ComputerConfig: arg_registers must be in 1..{self.registers - 1}")
        if not 1 <= self.arg_cells <= self.cells:
            raise ValueError("ComputerConfig: arg_cells must be in 1..cells")
        if self.reader not in READERS:
            raise ValueError(f"ComputerConfig: reader must be one of {READERS}, got {self.reader!r}")
        if self.writer not in WRITERS:
            raise ValueError(f"ComputerConfig: writer must be one of {WRITERS}, got {self.writer!r}")
        if self.top_k < 1:
            raise ValueError("ComputerConfig: top_k must be >= 1")
        if self.digit_tokens and (len(self.digit_tokens) != 10 or self.reader != "digits"):
            raise ValueError("ComputerConfig: digit_tokens must hold the 10 ids of '0'..'9' and needs reader='digits'")

    def machine(self):
        from ncl.machine import MachineConfig

        return MachineConfig(n=self.n, cells=self.cells, registers=self.registers, stack=self.stack,
                             sharpness=self.sharpness)

    def to_dict(self) -> dict:
        return asdict(self)


class ComputerOutput(NamedTuple):
    """What :meth:`NeuralComputer.forward` returns.

    ``readout``: (B, T, d) embeddings, zero outside ``read_mask``. ``steps``: (B,) expected steps (the ponder
    cost). ``unhalted``: (B,) running mass left. ``run_steps``: the steps the machine ran (int).
    ``heads``: the head outputs (for auxiliary losses and diagnostics): ``pi (B,P)`` program probabilities,
    ``args_soft (B,A,n)``, ``source_weights (B,A,S)``, ``source_values (B,S)``, ``gate_logit (B,T)``,
    ``value_logits (B,T,n)``, ``read_logit (B,T)``, ``digit_gate_logit (B,T)`` (None
    unless ``writer="digits"``), ``print_r0`` and ``print_cell`` (B,T,11) (the digit, or 10 = "end", under the
    digit pointer of r0 and of the tape cell read; zero outside the read positions; None unless
    ``writer="digits"``), ``r0 (B,n)``, ``mem (B,C,n)``. ``state``: what a later call may pass back to skip the run (same prompt).
    """

    readout: torch.Tensor
    steps: torch.Tensor
    unhalted: torch.Tensor
    run_steps: int
    heads: dict
    state: dict


def straight_through(soft: torch.Tensor) -> torch.Tensor:
    """One-hot of the argmax in the forward pass, the gradient of ``soft`` in the backward pass. (…, n)."""
    hard = F.one_hot(soft.argmax(-1), soft.shape[-1]).to(soft.dtype)
    return hard + (soft - soft.detach())  # the bracket is exactly 0 forward, so the value is exactly one-hot


def straight_through_gate(p: torch.Tensor) -> torch.Tensor:
    """``p > 0.5`` as 0/1 in the forward pass, the gradient of ``p`` in the backward pass."""
    return (p > 0.5).to(p.dtype) + (p - p.detach())


def _shift(p: torch.Tensor) -> torch.Tensor:
    """Move cell c's mass to c+1 along the last dim; the last cell keeps its own (saturates)."""
    moved = F.pad(p[..., :-1], (1, 0))
    moved[..., -1] = moved[..., -1] + p[..., -1]
    return moved


def _clip_rows(grad: torch.Tensor, max_norm: float = 1.0) -> torch.Tensor:
    """Zero every batch row of ``grad`` that holds a non-finite number; scale the others to norm ≤ max_norm.

    Gradients through long runs are large (DESIGN §5 measured 4.6e4 after 54 steps; wrong candidates early in
    training reach 1e16): clipped only globally, one such sample would scale every other gradient to nothing.
    """
    flat = grad.flatten(1)
    finite = torch.isfinite(flat).all(1)
    norm = torch.where(finite[:, None], flat, torch.zeros_like(flat)).norm(dim=1)
    scale = torch.where(finite, (max_norm / norm.clamp_min(1e-30)).clamp(max=1.0), torch.zeros_like(norm))
    return torch.where(finite.view(-1, *[1] * (grad.dim() - 1)), grad, torch.zeros_like(grad)) * \
        scale.view(-1, *[1] * (grad.dim() - 1))


class NeuralComputer(nn.Module):
    """Heads, the machine run on the library image, and readout embeddings.

    Args:
        hidden_size: d of the hidden states read and the readouts written.
        config: :class:`ComputerConfig`.

    Shapes: ``forward(hidden (B,T,d), attention_mask (B,T), read_mask (B,T))`` → :class:`ComputerOutput`.
    """

    def __init__(self, hidden_size: int, config: ComputerConfig | None = None):
        super().__init__()
        import ncl.library

        self.config = cfg = config or ComputerConfig()
        self.library = ncl.library.image(cfg.machine())
        self.program_names = list(self.library.entries)
        self.register_buffer("entries", torch.tensor([self.library.entries[p] for p in self.program_names]),
                             persistent=False)
        self.library.requires_grad_(cfg.train_library)
        d, n = hidden_size, cfg.n
        self.num_sources = cfg.arg_cells + 2  # tape cells, tape length, zero
        self.norm = nn.LayerNorm(d)
        self.program_head = nn.Linear(d, len(self.program_names))
        self.source_head = nn.Linear(d, cfg.arg_registers * self.num_sources)
        self.gate_head = nn.Linear(d, 1)
        self.value_head = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, n))
        if cfg.digit_tokens:
            self.register_buffer("digit_ids", torch.tensor(cfg.digit_tokens), persistent=False)
        if cfg.reader == "digits":
            self.digit_head = nn.Linear(d, 11)  # 10 digits + "not a digit"
            times10 = torch.zeros(n, n)
            times10[torch.arange(n), (10 * torch.arange(n)) % n] = 1
            self.register_buffer("times10", times10, persistent=False)
        self.read_head = nn.Linear(d, 1)
        if cfg.writer == "digits":
            self.digit_gate_head = nn.Linear(d, 1)
            nn.init.constant_(self.digit_gate_head.bias, -2.0)
            self.print_r0 = nn.Linear(11, d, bias=False)
            self.print_cell = nn.Linear(11, d, bias=False)
            spell = torch.zeros(n, PLACES, 11)  # value → its digits, most significant first; 10 = "end"
            for v in range(n):
                digits = [int(c) for c in str(v)] + [10] * PLACES
                spell[v, torch.arange(PLACES), torch.tensor(digits[:PLACES])] = 1
            self.register_buffer("spell", spell.flatten(1), persistent=False)  # (n, PLACES·11)
        self.embed_r0 = nn.Linear(n, d, bias=False)
        self.embed_cell = nn.Linear(n, d, bias=False)
        self.embed_valid = nn.Parameter(torch.zeros(d))
        nn.init.normal_(self.embed_valid, std=0.02)
        for lin in (self.embed_r0, self.embed_cell):
            nn.init.normal_(lin.weight, std=0.02)
        # start with the gates closed: a random half-open gate writes noise on every token
        nn.init.constant_(self.gate_head.bias, -2.0)
        nn.init.constant_(self.read_head.bias, -2.0)

    # --- heads ---------------------------------------------------------------------------------------------
    def _hard(self, soft: torch.Tensor) -> torch.Tensor:
        return straight_through(soft) if self.config.straight_through else soft

    def _gate(self, p: torch.Tensor) -> torch.Tensor:
        return straight_through_gate(p) if self.config.straight_through else p

    def token_digits(self, input_ids: torch.Tensor) -> torch.Tensor:
        """The digit each token spells, by its id: (B, T) → (B, T, 11) one-hot (class 10: not a digit)."""
        is_d = (input_ids[..., None] == self.digit_ids).float()  # (B, T, 10)
        return torch.cat([is_d, 1 - is_d.sum(-1, keepdim=True)], -1)

    def write_tape(self, h: torch.Tensor, mask: torch.Tensor, input_ids: torch.Tensor | None = None):
        """Append the gated token values to an empty tape.

        Args:
            h: (B, T, d) normalised hidden states; mask: (B, T) 1 where the token is written from.
            input_ids: (B, T) the tokens; needed with ``digit_tokens`` (their digits are read from the ids).

        Returns:
            ``mem (B,C,n)``, ``length (B,C)`` (the final write pointer), ``written (B,C)`` (mass written per
            cell, ≤ 1), ``gate_logit (B,T)``, ``value_logits (B,T,n)`` (``(B,T,11)`` digit logits with
            ``reader="digits"``).
        """
        cfg = self.config
        B, T, _ = h.shape
        gate_logit = self.gate_head(h).squeeze(-1)
        gate = self._gate(torch.sigmoid(gate_logit)) * mask
        if cfg.reader == "digits" and cfg.digit_tokens:
            digits = self.token_digits(input_ids).to(h.dtype)
            value_logits = 30.0 * digits  # what the auxiliary digit loss sees: exact, so it adds nothing
            value = self._digit_values(digits * mask[..., None])
        elif cfg.reader == "digits":
            value_logits = self.digit_head(h)  # (B, T, 11): digits 0-9, then "not a digit"
            value = self._digit_values(self._hard(torch.softmax(value_logits, -1)) * mask[..., None])
        else:
            value_logits = self.value_head(h)
            value = self._hard(torch.softmax(value_logits, -1))
        mem = F.one_hot(torch.zeros(B, cfg.cells, dtype=torch.long), cfg.n).to(h.dtype)
        ptr = F.one_hot(torch.zeros(B, dtype=torch.long), cfg.cells).to(h.dtype)
        written = h.new_zeros(B, cfg.cells)
        for t in range(T):  # T is the prompt length (tens of tokens); each step is a few small ops
            w = gate[:, t, None] * ptr  # (B, C): where this token writes
            mem = mem * (1 - w[..., None]) + w[..., None] * value[:, t, None, :]
            written = written + w * (1 - written)
            ptr = (1 - gate[:, t, None]) * ptr + gate[:, t, None] * _shift(ptr)
        return mem, ptr, written, gate_logit, value_logits

    def _digit_values(self, digits: torch.Tensor) -> torch.Tensor:
        """Values spelled by the digits before each token: (B,T,11) one-hot-ish digits → (B,T,n).

        ``acc_t = is_digit_t·(10·acc_{t−1} + d_t) + (1 − is_digit_t)·δ_0`` on distributions over Z_n (10· is a
        fixed map of the support, + a digit is a circular shift), and the value at t is ``acc_{t−1}``: a number
        is complete at the token after its last digit, which is where the write gate fires.
        """
        B, T, _ = digits.shape
        n = self.config.n
        acc = F.one_hot(torch.zeros(B, dtype=torch.long), n).to(digits.dtype)
        zero = acc
        out = []
        for t in range(T):
            out.append(acc)
            shifted = acc @ self.times10
            rolled = torch.stack([torch.roll(shifted, k, -1) for k in range(10)], 1)  # (B, 10, n)
            grown = (digits[:, t, :10, None] * rolled).sum(1)
            is_digit = digits[:, t, :10].sum(-1, keepdim=True)
            acc = grown + (1 - is_digit) * zero
        return torch.stack(out, 1)

    def arguments(self, h_last: torch.Tensor, mem: torch.Tensor, length: torch.Tensor):
        """Argument registers r1..rA: per register a mixture over sources, straight-through.

        Returns ``args (B,A,n)`` (hard forward), ``args_soft (B,A,n)`` (the mixtures), ``weights (B,A,S)``
        (each register's source weights) and ``source_values (B,S)`` (each source's argmax value).
        """
        cfg = self.config
        B = h_last.shape[0]
        length_value = F.pad(length, (0, cfg.n - cfg.cells))  # pointer position c is the value c
        zero = F.one_hot(torch.zeros(B, dtype=torch.long), cfg.n).to(mem.dtype)
        sources = torch.cat([mem[:, :cfg.arg_cells], length_value[:, None], zero[:, None]], 1)  # (B, S, n)
        weights = torch.softmax(self.source_head(h_last).view(B, cfg.arg_registers, self.num_sources), -1)
        soft = weights @ sources  # (B, A, n)
        return self._hard(soft), soft, weights, sources.argmax(-1)

    # --- the run ---------------------------------------------------------------------------------------------
    def _initial_regs(self, args: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        B = args.shape[0]
        regs = F.one_hot(torch.zeros(B, cfg.registers, dtype=torch.long), cfg.n).to(args.dtype)
        return torch.cat([regs[:, :1], args, regs[:, 1 + cfg.arg_registers:]], 1)

    def run_machine(self, pi: torch.Tensor, regs: torch.Tensor, mem: torch.Tensor, max_steps: int | None = None):
        """Run the library from the program choice ``pi (B,P)``.

        Returns ``r0 (B,n)``, ``mem (B,C,n)``, ``steps (B,)``, ``unhalted (B,)`` and the steps run (int).
        """
        cfg = self.config
        max_steps = cfg.max_steps if max_steps is None else max_steps
        B, L = pi.shape[0], self.library.length
        if torch.is_grad_enabled():
            # A long run (a wrong candidate, early in training) can blow up or overflow its fp32 gradient:
            # clip each sample's input gradient, and zero it where it is not finite.
            for t in (regs, mem):
                if t.requires_grad:
                    t.register_hook(_clip_rows)
        if cfg.mode == "superposition":
            ip = pi.new_zeros(B, L).index_add(1, self.entries, pi)
            res = self.library.run(regs, mem, ip, max_steps=max_steps)
            return res.r0, res.mem, res.expected_steps, res.unhalted, res.steps
        k = min(cfg.top_k, pi.shape[1])
        top_p, top_i = pi.topk(k, -1)
        weight = top_p / top_p.sum(-1, keepdim=True)  # exact mixture over the k candidates; gradient to π
        keep = (weight.detach() >= cfg.min_prob).flatten()
        keep[0::k] = True  # every sample runs its best candidate
        rows = keep.nonzero().squeeze(1)
        sample = rows // k
        ip = F.one_hot(self.entries[top_i.flatten()[rows]], L).to(regs.dtype)
        res = self.library.run(regs[sample], mem[sample], ip, max_steps=max_steps)
        w = weight.flatten()[rows]
        r0 = regs.new_zeros(B, cfg.n).index_add(0, sample, w[:, None] * res.r0)
        mem_out = mem.new_zeros(mem.shape).index_add(0, sample, w[:, None, None] * res.mem)
        steps = regs.new_zeros(B).index_add(0, sample, w * res.expected_steps)
        unhalted = regs.new_zeros(B).index_add(0, sample, w * res.unhalted)
        # a dropped candidate's weight (< min_prob) is mass that produced nothing: count it as unhalted
        unhalted = unhalted + (1 - regs.new_zeros(B).index_add(0, sample, w))
        return r0, mem_out, steps, unhalted, res.steps

    # --- forward ---------------------------------------------------------------------------------------------
    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor, read_mask: torch.Tensor,
                state: dict | None = None, max_steps: int | None = None,
                input_ids: torch.Tensor | None = None) -> ComputerOutput:
        """Heads → machine → readouts.

        Args:
            hidden: (B, T, d) hidden states.
            attention_mask: (B, T) 1 = token, 0 = padding.
            read_mask: (B, T) 1 at the positions that receive readouts (the answer positions); the other real
                tokens are the prompt, which the tape heads read. The last prompt token is the last real token
                before the first read position (left padding: the same column for every row).
            state: the ``state`` of an earlier call on the same prompt: skips the heads on the prompt and the
                run (incremental decoding).
            max_steps: override ``config.max_steps``.
            input_ids: (B, T) the tokens; needed with ``config.digit_tokens``.

        Returns:
            :class:`ComputerOutput`.
        """
        B, T, d = hidden.shape
        if attention_mask.shape != (B, T) or read_mask.shape != (B, T):
            raise ValueError(f"attention_mask and read_mask must be (B, T) = {(B, T)}, got "
                             f"{tuple(attention_mask.shape)} and {tuple(read_mask.shape)}")
        if self.config.digit_tokens and state is None and (input_ids is None or input_ids.shape != (B, T)):
            raise ValueError(f"digit_tokens: forward needs input_ids of shape (B, T) = {(B, T)}")
        mask = attention_mask.to(hidden.dtype)
        read = read_mask.to(hidden.dtype) * mask
        h = self.norm(hidden)
        if state is None:
            prompt = mask * (1 - read)
            first_read = torch.where(read.sum(0) > 0)[0]
            if len(first_read) == 0:
                raise ValueError("read_mask selects no position")
            last = int(first_read[0]) - 1
            if last < 0:
                raise ValueError("read_mask must leave at least one prompt token before the first read position")
            prompt_cols = slice(0, last + 1)
            ids = input_ids[:, prompt_cols] if input_ids is not None else None
            mem, length, written, gate_logit, value_logits = self.write_tape(h[:, prompt_cols], prompt[:, prompt_cols],
                                                                             ids)
            h_last = h[:, last]
            pi = torch.softmax(self.program_head(h_last), -1)
            args, args_soft, source_weights, source_values = self.arguments(h_last, mem, length)
            regs = self._initial_regs(args)
            r0, mem_out, steps, unhalted, run_steps = self.run_machine(pi, regs, mem, max_steps)
            state = {"r0": r0, "mem": mem_out, "written": written, "steps": steps, "unhalted": unhalted,
                     "run_steps": run_steps, "pi": pi, "args_soft": args_soft, "source_weights": source_weights,
                     "source_values": source_values, "gate_logit": gate_logit,
                     "value_logits": value_logits, "first_read": last + 1}
        r0, mem_out, written = state["r0"], state["mem"], state["written"]
        # read pointer: starts at cell 0, advances by a gate at each read position, reads after advancing
        read_logit = self.read_head(h).squeeze(-1)
        adv = self._gate(torch.sigmoid(read_logit)) * read
        ptr = F.one_hot(torch.zeros(B, dtype=torch.long), self.config.cells).to(h.dtype)
        ptrs = []
        for t in range(state["first_read"], T):
            ptr = (1 - adv[:, t, None]) * ptr + adv[:, t, None] * _shift(ptr)
            ptrs.append(ptr)
        ptrs = torch.stack(ptrs, 1)  # (B, T', C)
        cell = ptrs @ mem_out  # (B, T', n)
        valid = (ptrs * written[:, None]).sum(-1, keepdim=True)  # (B, T', 1)
        out = self.embed_r0(r0)[:, None] + self.embed_cell(cell) + valid * self.embed_valid
        if self.config.writer == "digits":
            digit_logit = self.digit_gate_head(h).squeeze(-1)
            step = self._gate(torch.sigmoid(digit_logit)) * read
            place = F.one_hot(torch.zeros(B, dtype=torch.long), PLACES).to(h.dtype)
            places = []
            for t in range(state["first_read"], T):
                moved = step[:, t, None] * _shift(place) + (1 - step[:, t, None]) * place
                place = adv[:, t, None] * F.one_hot(torch.zeros(B, dtype=torch.long), PLACES).to(h.dtype) + \
                    (1 - adv[:, t, None]) * moved
                places.append(place)
            places = torch.stack(places, 1)  # (B, T', PLACES)

            def spelled(value):  # (B, T', n) → (B, T', 11): the digit under the place pointer
                return torch.einsum("btp,btpk->btk", places, (value @ self.spell).unflatten(-1, (PLACES, 11)))

            print_r0, print_cell = spelled(r0[:, None].expand_as(cell)), spelled(cell)
            out = out + self.print_r0(print_r0) + self.print_cell(print_cell)
            pad = (0, 0, state["first_read"], 0)
            print_r0, print_cell = F.pad(print_r0, pad) * read[..., None], F.pad(print_cell, pad) * read[..., None]
        else:
            digit_logit = print_r0 = print_cell = None
        readout = F.pad(out, (0, 0, state["first_read"], 0)) * read[..., None]
        heads = {k: state[k] for k in ("pi", "args_soft", "source_weights", "source_values", "gate_logit",
                                       "value_logits", "r0", "mem")}
        heads["read_logit"] = read_logit
        heads["digit_gate_logit"] = digit_logit
        heads["print_r0"], heads["print_cell"] = print_r0, print_cell
        return ComputerOutput(readout, state["steps"], state["unhalted"], state["run_steps"], heads, state)


__all__ = ["NeuralComputer", "ComputerConfig", "ComputerOutput", "MODES", "straight_through",
           "straight_through_gate"]
