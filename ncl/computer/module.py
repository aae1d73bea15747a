"""``NeuralComputer``: the module that owns the heads and readout embeddings and composes the tape
(:mod:`ncl.computer.tape`), the arguments (:mod:`~ncl.computer.arguments`), the run (:mod:`~ncl.computer.run`)
and the readout (:mod:`~ncl.computer.readout`). The data flow is in the package docstring (:mod:`ncl.computer`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import ncl.library
from ncl.computer import arguments as arguments_
from ncl.computer import calls as calls_
from ncl.computer import readout as readout_
from ncl.computer import tape as tape_
from ncl.computer.call_heads import STEP_WINDOW, CallHeads, list_separators
from ncl.computer.config import ENCODER_VIEWS, ComputerConfig
from ncl.computer.contracts import contract_table
from ncl.computer.outputs import ChainHeads, ChainInputs, ComputerOutput, ComputerState, Heads, PromptHeads
from ncl.computer.run import RunOutput, run_library
from ncl.computer.sharp import straight_through, straight_through_gate

PROGRAM_QUERIES = 4  #: attention queries over the prompt's words that choose a single call's program
ARITIES = 3  #: what the program head is told of the tape's numbers: one, two, or more


class NeuralComputer(nn.Module):
    """Heads, the machine run on the library image, and readout embeddings.

    Args:
        hidden_size: d of the hidden states read and the readouts written.
        config: :class:`~ncl.computer.ComputerConfig`.
        library: the library image to run (default: the built-in one, ``ncl.library.image``), e.g. a user's
            ``ncl.Library.from_functions([...]).image(config.machine)``; the program head has one output per
            entry.

    Shapes: ``forward(hidden (B,T,d), attention_mask (B,T), read_mask (B,T))`` →
    :class:`~ncl.computer.ComputerOutput`.

    ``read_mask`` marks the positions that receive readouts (the answer); it must leave at least one prompt
    token before the first read position, since the heads read the prompt and the machine runs on it first.

    Example, as a drop-in module between two layers of any transformer::

        >>> import torch
        >>> from ncl.computer import ComputerConfig, NeuralComputer
        >>> computer = NeuralComputer(hidden_size=32, config=ComputerConfig(max_steps=16))
        >>> hidden = torch.randn(2, 6, 32)                      # (B, T, d) from the layers below
        >>> attention_mask = torch.ones(2, 6)                   # 1 = token, 0 = padding
        >>> read_mask = torch.tensor([[0, 0, 0, 0, 1, 1]] * 2)  # 4 prompt tokens, then 2 read positions
        >>> out = computer(hidden, attention_mask, read_mask)
        >>> hidden = hidden + out.readout                       # to the layers above (zero outside read_mask)
        >>> out.readout.shape, out.steps.shape                  # steps: expected machine steps (ponder cost)
        (torch.Size([2, 6, 32]), torch.Size([2]))
        >>> computer(hidden, attention_mask, torch.ones(2, 6))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ValueError: read_mask must leave at least one prompt token before the first read position...
    """

    def __init__(self, hidden_size: int, config: ComputerConfig | None = None, library=None):
        super().__init__()
        self.config = cfg = config or ComputerConfig()
        self.library = ncl.library.image(cfg.machine) if library is None else check_library(library, cfg.machine)
        self.program_names = list(self.library.entries)
        self.register_buffer("entries", torch.tensor([self.library.entries[p] for p in self.program_names]),
                             persistent=False)
        self.library.requires_grad_(cfg.train_library)
        #: (P, M + 1) bool while calls are decoded under the programs' input contracts (decode_under_contracts)
        self.contracts: torch.Tensor | None = None
        d, n = hidden_size, cfg.machine.n
        self.num_sources = cfg.arg_cells + 2  # tape cells, tape length, zero
        # The attribute names below are the checkpoints' state-dict keys: keep them.
        self.norm = nn.LayerNorm(d)
        self.program_head = nn.Linear(d, len(self.program_names))
        self.source_head = nn.Linear(d, cfg.arg_registers * self.num_sources)
        self.gate_head = nn.Linear(d, 1)
        if cfg.program_read == "text":  # queries over the words (prompt_run): several, for several key words
            self.program_query = nn.Parameter(0.02 * torch.randn(PROGRAM_QUERIES, d))
            self.program_key = nn.Linear(d, d, bias=False)
            self.arity = nn.Embedding(ARITIES, d)  # how many numbers the tape holds: 1, 2, more
        if cfg.tape_gates == "local":
            self.gate_prev_head = nn.Linear(d, 1, bias=False)  # the write gate's view of the token before
        self.value_head = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, n))
        if cfg.digit_tokens:
            self.register_buffer("digit_ids", torch.tensor(cfg.digit_tokens), persistent=False)
        if cfg.symbol_tokens:
            self.register_buffer("symbol_ids", torch.tensor(cfg.symbol_tokens), persistent=False)
        if cfg.reader in ("digits", "cells"):
            self.digit_head = nn.Linear(d, 11)  # 10 digits + "not a digit"
        if cfg.reader == "digits":
            self.register_buffer("times10", tape_.times10_map(n), persistent=False)
        if cfg.reader == "cells":
            self.register_buffer("class_cells", tape_.class_cells(n), persistent=False)
        self.read_head = nn.Linear(d, 1)
        if cfg.writer == "cells":  # digits, the symbols printed (symbol_tokens), "other"
            self.print_r0 = nn.Linear(11 + len(cfg.symbol_tokens), d, bias=False)
            self.print_cell = nn.Linear(11 + len(cfg.symbol_tokens), d, bias=False)
        if cfg.writer == "digits":
            self.digit_gate_head = nn.Linear(d, 1)
            nn.init.constant_(self.digit_gate_head.bias, -2.0)
            self.print_r0 = nn.Linear(11, d, bias=False)
            self.print_cell = nn.Linear(11, d, bias=False)
            self.register_buffer("spell", readout_.spell_table(n), persistent=False)  # (n, PLACES·11)
        if cfg.calls:  # a chain (ncl.computer.calls), its heads the same function for every call
            mean = cfg.word_view in ENCODER_VIEWS and cfg.call_read == "text"
            self.call_heads = CallHeads(d, len(self.program_names), cfg.slots, cfg.call_read, cfg.nesting,
                                        "mean" if mean else "attention", cfg.word_dropout, cfg.step_reach)
            self.end_head = nn.Linear(d, 1)  # does this prompt token's cell end an operand
            if cfg.tape_gates == "local":
                self.end_next_head = nn.Linear(d, 1, bias=False)  # the end gate's view of the token after
                if cfg.end_lookahead == 2:
                    self.end_next2_head = nn.Linear(d, 1, bias=False)  # ... and of the one after that
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
    def _hard(self, soft: torch.Tensor, head: str) -> torch.Tensor:
        return straight_through(soft, self.config.answer_grad_to(head)) if self.config.straight_through else soft

    def _gate(self, p: torch.Tensor, head: str) -> torch.Tensor:
        return straight_through_gate(p, self.config.answer_grad_to(head)) if self.config.straight_through else p

    def digit_values(self, digits: torch.Tensor) -> torch.Tensor:
        """Values spelled by the digits before each token: (B,T,11) → (B,T,n)
        (:func:`ncl.computer.tape.digit_values`)."""
        return tape_.digit_values(digits, self.times10)

    def write_tape(self, h: torch.Tensor, mask: torch.Tensor, input_ids: torch.Tensor | None = None,
                   tokens: torch.Tensor | None = None) -> tuple[tape_.Tape, torch.Tensor, torch.Tensor]:
        """Append the gated token values to an empty tape.

        Args:
            h: (B, T, d) normalised hidden states; mask: (B, T) 1 where the token is written from.
            input_ids: (B, T) the tokens; needed with ``digit_tokens`` (their digits are read from the ids).
            tokens: (B, T, d) what ``tape_gates="local"`` write gates read, normalised (default ``h``): the logit
                at t is ``gate_head(tokens[t]) + gate_prev_head(tokens[t-1])``.

        Returns:
            ``(tape, gate_logit (B,T), token_logits)``: the :class:`~ncl.computer.tape.Tape`, the write gates'
            logits, and the reader's logits: ``(B,T,n)`` values with ``reader="mlp"``, ``(B,T,11)`` digits with
            ``reader="digits"``.
        """
        cfg = self.config
        if cfg.tape_gates == "local":
            tokens = h if tokens is None else tokens
            before = F.pad(tokens[:, :-1], (0, 0, 1, 0))  # the first token has none before it: zeros
            gate_logit = (self.gate_head(tokens) + self.gate_prev_head(before)).squeeze(-1)
        else:
            gate_logit = self.gate_head(h).squeeze(-1)
        gate = self._gate(torch.sigmoid(gate_logit), "write") * mask
        if cfg.reader in ("digits", "cells"):
            if cfg.digit_tokens:
                digits = tape_.token_digits(input_ids, self.digit_ids).to(h.dtype)
                logits = 30.0 * digits  # what the auxiliary digit loss sees: exact, so it adds nothing
            else:
                logits = self.digit_head(h)  # (B, T, 11): digits 0-9, then "not a digit"
                digits = self._hard(torch.softmax(logits, -1), "values")
            if cfg.reader == "digits":
                value = self.digit_values(digits * mask[..., None])
            else:  # one cell per token written: its digit, or SEP
                value = digits @ self.class_cells
        else:
            logits = self.value_head(h)
            value = self._hard(torch.softmax(logits, -1), "values")
        return tape_.append(gate, value, cfg.machine.cells), gate_logit, logits

    def arguments(self, h_last: torch.Tensor, tape: tape_.Tape) -> arguments_.Arguments:
        """Argument registers r1..rA: per register a mixture over the sources (:mod:`ncl.computer.arguments`),
        straight-through."""
        cfg = self.config
        B = h_last.shape[0]
        sources = arguments_.sources(tape.mem, tape.length, cfg.arg_cells)  # (B, S, n)
        weights = torch.softmax(self.source_head(h_last).view(B, cfg.arg_registers, self.num_sources), -1)
        soft = weights @ sources  # (B, A, n)
        return arguments_.Arguments(self._hard(soft, "args"), soft, weights, sources.argmax(-1))

    def initial_registers(self, args: torch.Tensor) -> torch.Tensor:
        """The register file (B, K, n) a run starts from, r1..rA = ``args (B,A,n)``."""
        return arguments_.initial_registers(args, self.config.machine.registers)

    # --- the run ---------------------------------------------------------------------------------------------
    def run_machine(self, pi: torch.Tensor, regs: torch.Tensor, mem: torch.Tensor,
                    max_steps: int | None = None) -> RunOutput:
        """Run the library from the program choice ``pi (B,P)`` (:func:`ncl.computer.run.run_library`)."""
        max_steps = self.config.max_steps if max_steps is None else max_steps
        return run_library(self.library, self.entries, self.config, pi, regs, mem, max_steps)

    # --- the readout -----------------------------------------------------------------------------------------
    def readout(self, h: torch.Tensor, read: torch.Tensor, state: ComputerState,
                pointers: readout_.Pointers | None = None, tokens: torch.Tensor | None = None) -> readout_.Readout:
        """The readout embeddings of a finished run at the read positions ``read (B,T)`` of ``h (B,T,d)``
        (:mod:`ncl.computer.readout`).

        ``pointers``: None when ``h`` is the whole sequence (the pointers start at ``state.first_read``); else
        the :class:`~ncl.computer.readout.Pointers` after the position just before ``h``, which continue over
        every position of ``h`` (incremental decoding: ``h (B,1,d)``). The result's ``pointers`` are those after
        the last position, to pass to the next call.

        ``tokens (B,T',d)``: what the pointer gates read, normalised (default ``h``). Whether the pointers move
        depends only on the token just written (every answer token on the digit tape, each separator
        otherwise), so :class:`~ncl.augmented.AugmentedLlama` passes the tokens' embeddings: a gate read off the
        context drifts on answers longer than any trained on (the read pointer then repeats cells).
        """
        cfg = self.config
        first = state.first_read if pointers is None else 0
        start = pointers or readout_.Pointers(None, None)
        tokens = h if tokens is None else tokens
        read_logit = self.read_head(tokens).squeeze(-1)
        adv = self._gate(torch.sigmoid(read_logit), "read") * read
        if pointers is None:  # the first read position reads cell 0, where every answer starts: it holds by
            # construction, since a gate learned there can fire on prompts longer than any trained on
            hold = torch.ones_like(adv[0])
            hold[first] = 0
            adv = adv * hold
        ptrs = readout_.read_pointers(adv, first, cfg.machine.cells, start.read)  # (B, T', C)
        cell = ptrs @ state.mem  # (B, T', n)
        valid = (ptrs * state.written[:, None]).sum(-1, keepdim=True)  # (B, T', 1)
        # A chain's answer is its halting call's tape, the cells a later call would read; its r0 is whatever the
        # program left there (a list's length, ...), values that longer inputs make new to the decoder: a mix
        # model printed a 2x list's first numbers and stopped, and with r0's readout zeroed it got 92-96 % of
        # the 2x and 4x list and addition prompts right that it had failed (docs/language.md).
        r0 = torch.zeros_like(state.r0) if cfg.calls else state.r0
        out = self.embed_r0(r0)[:, None] + self.embed_cell(cell) + valid * self.embed_valid
        digit_logit = print_r0 = print_cell = places = None
        r0 = r0[:, None].expand_as(cell)
        if cfg.writer == "digits":
            digit_logit = self.digit_gate_head(tokens).squeeze(-1)
            step = self._gate(torch.sigmoid(digit_logit), "read") * read
            places = readout_.place_pointers(step, adv, first, start.place)  # (B, T', PLACES)
            print_r0, print_cell = readout_.spelled(places, r0, self.spell), readout_.spelled(places, cell, self.spell)
        elif cfg.writer == "cells":  # one answer token per cell: its digit or symbol, or "other"
            symbols = len(cfg.symbol_tokens)
            print_r0, print_cell = readout_.cell_digits(r0, symbols), readout_.cell_digits(cell, symbols)
        if print_cell is not None:
            out = out + self.print_r0(print_r0) + self.print_cell(print_cell)
            pad = (0, 0, first, 0)
            print_r0, print_cell = F.pad(print_r0, pad) * read[..., None], F.pad(print_cell, pad) * read[..., None]
        readout = F.pad(out, (0, 0, first, 0)) * read[..., None]
        after = readout_.Pointers(ptrs[:, -1], None if places is None else places[:, -1])
        return readout_.Readout(readout, read_logit, digit_logit, print_r0, print_cell, after)

    # --- forward ---------------------------------------------------------------------------------------------
    def prompt_run(self, h: torch.Tensor, mask: torch.Tensor, read: torch.Tensor,
                   input_ids: torch.Tensor | None = None, max_steps: int | None = None,
                   tokens: torch.Tensor | None = None, words: torch.Tensor | None = None,
                   program: torch.Tensor | None = None) -> ComputerState:
        """The heads on the prompt and the run: ``h (B,T,d)`` normalised hidden states, ``mask``/``read`` (B,T)
        the real tokens and the read positions, ``tokens (B,T,d)`` what the local write and operand-end gates
        read, ``words (B,T,d)`` the states a chain's heads pool its words from and ``program (B,T,d)`` those
        its program head pools instead (normalised; see :meth:`forward`)."""
        cfg = self.config
        prompt = mask * (1 - read)
        first_read = torch.where(read.sum(0) > 0)[0]
        if len(first_read) == 0:
            raise ValueError("read_mask selects no position")
        last = int(first_read[0]) - 1
        if last < 0:
            raise ValueError("read_mask must leave at least one prompt token before the first read position")
        cols = slice(0, last + 1)
        ids = input_ids[:, cols] if input_ids is not None else None
        tape, gate_logit, token_logits = self.write_tape(h[:, cols], prompt[:, cols], ids,
                                                         None if tokens is None else tokens[:, cols])
        if cfg.calls:
            # what local gates read: each prompt token and the ones after it, up to the answer cue's "=" (the
            # first read position); past it is the answer, which no head on the prompt may see (zeros there)
            seen = (h if tokens is None else tokens)[:, :last + 2]
            reach = max(cfg.step_reach, STEP_WINDOW[1] if cfg.nesting else 0)  # the furthest-reading gate's
            ahead = [F.pad(seen[:, j:], (0, 0, 0, j - 1)) for j in range(1, reach + 1)]
            local = (seen[:, cols], *ahead) if cfg.tape_gates == "local" else None
            return self._chain_run(h[:, cols], prompt[:, cols], tape, gate_logit, token_logits, max_steps, last + 1,
                                   local, None if words is None else words[:, cols],
                                   None if program is None else program[:, cols])
        if cfg.program_read == "text":
            written = (gate_logit > 0).to(h.dtype) * prompt[:, cols]  # the write gates' forward values
            seps = written if cfg.reader == "mlp" else written * (token_logits.argmax(-1) == 10)  # numbers' ends
            arity = (seps.sum(1).long() - 1).clamp(0, ARITIES - 1)
            c = self.text_context(h[:, cols], prompt[:, cols] * (1 - written)) + self.arity(arity)
        else:
            c = h[:, last]
        pi = torch.softmax(self.program_head(c), -1)
        args = self.arguments(c, tape)
        run = self.run_machine(pi, self.initial_registers(args.args), tape.mem, max_steps)
        digits = cfg.reader in ("digits", "cells")
        heads = PromptHeads(cfg.reader, pi, args.soft, args.weights, args.source_values, gate_logit,
                            value_logits=None if digits else token_logits,
                            digit_logits=token_logits if digits else None)
        return ComputerState(heads, run.r0, run.mem, tape.written, run.steps, run.unhalted, run.run_steps, last + 1)

    def text_context(self, h: torch.Tensor, words: torch.Tensor) -> torch.Tensor:
        """What the program and argument heads read with ``program_read="text"``: ``h (B,T,d)`` pooled over the
        ``words (B,T)`` (1 at the prompt tokens the tape does not hold) by each of the
        :data:`PROGRAM_QUERIES` learned queries, summed → (B, d) (:meth:`prompt_run` adds the arity's
        embedding). The numbers' tokens take no weight, so longer numbers do not dilute the words (the last
        token's state, read instead, drifts on prompts longer than trained)."""
        scores = torch.einsum("btd,qd->bqt", self.program_key(h), self.program_query) / h.shape[-1] ** 0.5
        weights = torch.softmax(scores.masked_fill(words[:, None] <= 0, float("-inf")), -1)
        return torch.einsum("bqt,btd->bd", weights.nan_to_num(0.0), h)

    def _chain_run(self, h, mask, tape, gate_logit, digit_logits, max_steps, first_read,
                   end_tokens=None, word_h=None, program_h=None) -> ComputerState:
        """The chain of ``config.calls`` calls on the prompt's tape (:mod:`ncl.computer.calls`), its heads
        :class:`~ncl.computer.call_heads.CallHeads`: ``h (B,T,d)`` and ``mask (B,T)`` the prompt's normalised
        hidden states and tokens written from; ``end_tokens``: ``(tokens (B,T,d), the tokens after them, the
        tokens after those, ...)`` that local gates read (None: ``h``): the operand-end gate ``end_lookahead``
        tokens ahead, the step-end gate of ``call_read="text"`` ``step_reach`` (with ``nesting``, also its window's);
        ``word_h (B,T,d)``: the states the call heads pool the words from (None: ``h``); ``program_h (B,T,d)``:
        those the program head pools (``word_view="hybrid"``; None: ``word_h``)."""
        cfg, K = self.config, self.config.calls
        B, C = h.shape[0], cfg.machine.cells
        written = (torch.sigmoid(gate_logit) > 0.5).to(h.dtype) * mask  # the write gates' forward values
        if end_tokens is None:
            end_logit = self.end_head(h).squeeze(-1)
        else:
            end_logit = self.end_head(end_tokens[0]) + self.end_next_head(end_tokens[1])
            if cfg.end_lookahead == 2:
                end_logit = end_logit + self.end_next2_head(end_tokens[2])
            end_logit = end_logit.squeeze(-1)
        end = (torch.sigmoid(end_logit) > 0.5).to(h.dtype) * written
        cell = (written.cumsum(1) - 1).clamp(0, C - 1).long()  # the cell each written token wrote
        ends = h.new_zeros(B, C).scatter_add(1, cell, end)
        operands = calls_.operand_segments(tape.mem, tape.length.argmax(-1), ends, K + 1)
        words = mask * (1 - written)
        if not cfg.call_separators:
            words = words * (~list_separators(written, mask)).to(words.dtype)
        # the encoder's words: each word piece is one word, at its first character (ncl.computer.word_encoder),
        # so a long word does not outweigh a symbol such as +
        program_words = None if program_h is None else words * (program_h != 0).any(-1).to(words.dtype)
        if cfg.word_view == "pretrained" and word_h is not None:
            words = words * (word_h != 0).any(-1).to(words.dtype)
        inputs = ChainInputs(h if word_h is None else word_h, mask, end, words, end_tokens, operands, max_steps,
                             program_h, program_words)
        logits, pi, chain = self._calls(inputs)
        heads = PromptHeads(cfg.reader, pi[:, 0], None, None, None, gate_logit, None, digit_logits,
                            ChainHeads(pi, chain.pointers, logits.halt, end_logit, chain.calls, chain.program,
                                       chain.args, chain.call_steps, chain.segments.cells.argmax(-1),
                                       chain.segments.length, logits.step, logits.nest, logits.join,
                                       logits.window, inputs))
        return ComputerState(heads, chain.r0, chain.mem, tape.written, chain.steps, chain.unhalted, chain.run_steps,
                             first_read)

    def _calls(self, inputs: ChainInputs, force: torch.Tensor | None = None, grad: bool = True):
        """The call heads on ``inputs`` (:class:`~ncl.computer.outputs.ChainInputs`) and the chain they choose:
        ``(CallLogits, pi (B,K,P), ChainOutput)``. ``force``: step ends forced (:class:`CallHeads`); ``grad``:
        whether the answer's gradient may reach the pointers and halting (as the config says) or nowhere."""
        cfg, K = self.config, self.config.calls
        logits = self.call_heads(inputs.h, inputs.mask, inputs.ends, K + 1, K, inputs.words, inputs.tokens, force,
                                 inputs.program_h, inputs.program_words)
        pi = torch.softmax(logits.program, -1)
        chain = calls_.run_chain(lambda p, r, m: self.run_machine(p, r, m, inputs.max_steps), pi, logits.pointers,
                                 logits.halt, inputs.operands, cfg.machine.registers,
                                 grad and cfg.answer_grad_to("pointers"), grad and cfg.answer_grad_to("halt"),
                                 self.contracts)
        return logits, pi, chain

    def decode_under_contracts(self, on: bool = True) -> "NeuralComputer":
        """From now on, choose each call's program and arguments together, the most likely call whose tape holds
        as many numbers as its program reads (:mod:`ncl.computer.contracts`); ``on=False``: each head's own
        argmax again (the default). A decoding rule for evaluation, built from the library's contracts: its
        choices are one-hot, so no gradient reaches the heads through them. Needs a chain (``config.calls``).
        Returns ``self``."""
        if not self.config.calls:
            raise ValueError("decode_under_contracts: this computer makes one call per prompt (config.calls = 0)")
        self.contracts = contract_table(self.program_names, self.config.machine.cells) if on else None
        return self

    @torch.no_grad()
    def chain_with_steps(self, inputs: ChainInputs, rows: torch.Tensor, force: torch.Tensor) -> calls_.ChainOutput:
        """The chain of the rows ``rows (R,)`` of ``inputs`` (a forward's ``heads.prompt.chain.inputs``) run
        again, its heads and all, with step ends forced: ``force (R,T)`` long, 1 where a step ends, 0 where none
        does, −1 where the step-end gate decides. Without gradients: the step search of
        :mod:`ncl.training.search` asks which step ends make the chain print an example's answer."""
        if not self.config.calls:
            raise ValueError("chain_with_steps: this computer makes one call per prompt (config.calls = 0)")
        if rows.dim() != 1 or force.shape != (len(rows), inputs.h.shape[1]):
            raise ValueError(f"force must be (R, T) = {(len(rows), inputs.h.shape[1])} for rows (R,), got "
                             f"rows {tuple(rows.shape)} and force {tuple(force.shape)}")
        sub = ChainInputs(inputs.h[rows], inputs.mask[rows], inputs.ends[rows], inputs.words[rows],
                          None if inputs.tokens is None else tuple(t[rows] for t in inputs.tokens),
                          calls_.Segments(*(x[rows] for x in inputs.operands)), inputs.max_steps,
                          *(None if x is None else x[rows] for x in (inputs.program_h, inputs.program_words)))
        return self._calls(sub, force, grad=False)[2]

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor, read_mask: torch.Tensor,
                state: ComputerState | None = None, max_steps: int | None = None,
                input_ids: torch.Tensor | None = None, token_states: torch.Tensor | None = None,
                word_states: torch.Tensor | None = None,
                program_states: torch.Tensor | None = None) -> ComputerOutput:
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
            token_states: (B, T, d) the tokens' own embeddings, which the read and digit pointers' gates
                (:meth:`readout`) and the local write gates (:meth:`write_tape`) read; None: the hidden states.
            word_states: (B, T, d) the hidden states a chain's heads pool the step's words from (with
                ``word_view="collapsed"``, those of the prompt with its numbers collapsed, gathered back to the
                prompt's columns: :class:`~ncl.augmented.AugmentedLlama`); None: the hidden states.
            program_states: (B, T, d) with ``word_view="hybrid"``, the states a chain's program head pools the
                step's words from (the pretrained encoder's, zero at a token that starts no word piece); None:
                ``word_states``.

        Returns:
            :class:`~ncl.computer.ComputerOutput`.
        """
        return self.forward_incremental(hidden, attention_mask, read_mask, state, max_steps, input_ids,
                                        token_states=token_states, word_states=word_states,
                                        program_states=program_states)[0]

    def forward_incremental(self, hidden: torch.Tensor, attention_mask: torch.Tensor, read_mask: torch.Tensor,
                            state: ComputerState | None = None, max_steps: int | None = None,
                            input_ids: torch.Tensor | None = None, pointers: readout_.Pointers | None = None,
                            token_states: torch.Tensor | None = None,
                            word_states: torch.Tensor | None = None, program_states: torch.Tensor | None = None
                            ) -> tuple[ComputerOutput, readout_.Pointers]:
        """:meth:`forward`, and the readout's :class:`~ncl.computer.readout.Pointers` after the last position.

        With ``pointers`` (those an earlier call returned, and its ``state``), ``hidden (B,T,d)`` holds only the
        positions after that call's, and the readout continues from them (:meth:`readout`): a decoder adds one
        token at a time without reading the earlier ones again.
        """
        B, T, d = hidden.shape
        if attention_mask.shape != (B, T) or read_mask.shape != (B, T):
            raise ValueError(f"attention_mask and read_mask must be (B, T) = {(B, T)}, got "
                             f"{tuple(attention_mask.shape)} and {tuple(read_mask.shape)}")
        for name, states in (("token_states", token_states), ("word_states", word_states),
                             ("program_states", program_states)):
            if states is not None and states.shape != hidden.shape:
                raise ValueError(f"{name} must be (B, T, d) = {(B, T, d)}, got {tuple(states.shape)}")
        if program_states is not None and self.config.word_view != "hybrid":
            raise ValueError(f"program_states: only with word_view='hybrid', got {self.config.word_view!r}")
        if self.config.digit_tokens and state is None and (input_ids is None or input_ids.shape != (B, T)):
            raise ValueError(f"digit_tokens: forward needs input_ids of shape (B, T) = {(B, T)}")
        if pointers is not None and state is None:
            raise ValueError("pointers continue the readout of a finished run: pass its state too")
        mask = attention_mask.to(hidden.dtype)
        read = read_mask.to(hidden.dtype) * mask
        h = self.norm(hidden)
        tokens = None if token_states is None else self.norm(token_states)
        if state is None:
            words = None if word_states is None else \
                self._pieces(word_states) if self.config.word_view == "pretrained" else self.norm(word_states)
            program = None if program_states is None else \
                self._pieces(program_states) if self.config.program_norm else program_states
            state = self.prompt_run(h, mask, read, input_ids, max_steps, tokens, words, program)
        out = self.readout(h, read, state, pointers, tokens)
        heads = Heads(state.heads, writer=self.config.writer, read_logit=out.read_logit,
                      digit_gate_logit=out.digit_gate_logit, print_r0=out.print_r0, print_cell=out.print_cell,
                      r0=state.r0, mem=state.mem)
        return ComputerOutput(out.readout, state.steps, state.unhalted, state.run_steps, heads, state), out.pointers

    def _pieces(self, states: torch.Tensor) -> torch.Tensor:
        """The pretrained encoder's ``states (B,T,d)`` normalised, a token holding no word piece's start still
        zero (it has no state there, and stays none: :meth:`_chain_run`)."""
        return self.norm(states) * (states != 0).any(-1, keepdim=True).to(states.dtype)


def check_library(image, machine):
    """``image`` if it can be a computer's library: a :class:`~ncl.machine.Program` with ``entries`` (name →
    entry line; ``ncl.Library(...).image(machine)`` gives one) compiled for ``machine``; else ValueError."""
    entries = getattr(image, "entries", None)
    if not isinstance(entries, dict) or not entries:
        raise ValueError("library: needs an 'entries' dict (name -> entry line), as ncl.Library(...).image() gives")
    if image.config != machine:
        raise ValueError(f"library: compiled for {image.config}, the computer's machine is {machine}")
    return image


__all__ = ["NeuralComputer", "check_library"]
