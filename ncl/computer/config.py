"""``ComputerConfig``: the sizes and options of :class:`~ncl.computer.NeuralComputer`.

The machine's own sizes (n, cells, registers, stack, ALU, sharpness, halt_eps) live in one place, the nested
:class:`~ncl.machine.MachineConfig`; this config adds what the heads, the program choice and the readouts need.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from ncl.library.symbols import TAPE_SYMBOLS
from ncl.machine import MachineConfig

MODES = ("mixture", "superposition")
TAPE_GATES = ("local", "context")
PROGRAM_READS = ("text", "last")
CALL_READS = ("text", "focus")  #: what a chain's program and pointer heads read (ncl.computer.call_heads)
#: the states a chain's heads pool its words from
WORD_VIEWS = ("collapsed", "context", "local", "pretrained", "hybrid")
#: the views whose program head pools the pretrained encoder's word pieces by their plain mean
ENCODER_VIEWS = ("pretrained", "hybrid")
#: What a config saved before a head option existed means (``tape_gates``, ``program_read``: the heads it
#: trained read the context; ``call_read``, ``end_lookahead``: a chain's heads read the focus, its operand-end
#: gate one token ahead; ``word_view``: the words' states read the prompt as written), and its weights fit only
#: those.
LEGACY_HEADS = {"tape_gates": "context", "program_read": "last", "call_read": "focus", "end_lookahead": 1,
                "word_view": "context"}
READERS = ("mlp", "digits", "cells")
WRITERS = ("embed", "digits", "cells")
PLACES = 4  #: digit positions a printed value may have (n <= 10**PLACES)
#: The decisions the answer's gradient can reach with ``answer_grad`` (``ComputerConfig.answer_grad_heads``): the
#: tape's write gates, the tape values a learned reader reads, the argument registers, the program mixture's
#: weights, the readout's pointer gates, and a chain's pointers (and the result cells later calls read) and halting
#: gates.
ANSWER_GRAD_HEADS = ("write", "values", "args", "program", "read", "pointers", "halt")

#: The computer's default machine: a 32-cell tape, 24 stack positions, and the library compiled at β = 120 (in
#: fp32 ``exp(−120)`` underflows to 0, so every field is exactly one-hot: see the package docstring).
DEFAULT_MACHINE = MachineConfig(n=128, cells=32, registers=8, stack=24, sharpness=120.0)

#: The machine fields a flat (pre-nesting) dict may hold at its top level.
_FLAT_MACHINE_KEYS = ("n", "cells", "registers", "stack", "alu", "sharpness", "halt_eps")


@dataclass(frozen=True)
class ComputerConfig:
    """Sizes and options of :class:`~ncl.computer.NeuralComputer`.

    Args:
        machine: the machine's sizes (:class:`~ncl.machine.MachineConfig`; default :data:`DEFAULT_MACHINE`).
            Its ``sharpness`` is the β the library is compiled at (120: exactly one-hot fields in fp32); a
            trainable library (``train_library=True``) should use a lower one.
        arg_registers: A, the argument registers r1..rA the heads set.
        arg_cells: how many leading tape cells the argument heads may pick from.
        mode: ``"mixture"`` or ``"superposition"`` (program choice).
        top_k: programs run per sample in ``"mixture"`` mode.
        min_prob: in ``"mixture"`` mode, candidates whose renormalised weight is below this are not run
            (they would contribute less than this to every readout).
        max_steps: step limit of a run (adaptive halting stops earlier).
        train_library: make the library's logits trainable.
        straight_through: hard forward values for gates, tape values and arguments (False: soft values).
        answer_grad: with ``straight_through``, whether the answer's gradient reaches the heads through those
            hard values and through the program mixture's weights. False: they are constants to the answer's
            loss, so only auxiliary labels (which act on the heads' logits) train the gates, the tape values,
            the arguments and the program choice, and the answer's gradient trains the LLaMA and the readout.
        answer_grad_heads: with ``answer_grad``, the decisions it reaches (:data:`ANSWER_GRAD_HEADS`, default
            all); the others are constants to the answer's loss, as with ``answer_grad=False``
            (docs/labels.md measures what it does on each).
        reader: how a token's tape value is read: ``"mlp"`` (a head maps the hidden state to a distribution over
            Z_n) or ``"digits"`` (heads say whether each token is a digit and which; a fixed base-10 recurrence
            ``acc ← 10·acc + digit`` on distributions over Z_n accumulates them, and a token's value is the
            number its preceding digits spell) or ``"cells"`` (the digit tape: each token written is one cell, its
            digit, or ``SEP`` (:mod:`ncl.library.symbols`) for a token that is not a digit, e.g. the space that
            ends a number; numbers of any length fit).
        writer: what the readouts carry: ``"embed"`` (learned embeddings of the r0 and tape-cell distributions)
            or ``"digits"`` (also the decimal digit of each under a digit pointer: it starts at the most
            significant digit, advances by a gate at each digit the answer writes and resets with the read
            pointer; past the last digit it reads "end"), so the decoder copies digits instead of recalling the
            spelling of every value; or ``"cells"`` (for answers on the digit tape: one answer token per cell,
            the cell's digit, or "end" for a symbol, which the decoder spells from the embedding).
        digit_tokens: ``()`` or the token ids of ``"0"``..``"9"`` (needs ``reader="digits"`` or ``"cells"``).
            When given, a prompt token's digit is the one its id spells (``forward`` then needs ``input_ids``)
            instead of a learned classification, so digits that never occur in training are read right; the
            gates that say where numbers end are still learned. :class:`~ncl.augmented.AugmentedLlama` uses the
            same ids to print the readout's digits (a copy distribution) and to embed every digit token alike.
        symbol_tokens: ``()`` or, with ``writer="cells"`` and ``digit_tokens``, the token ids that spell the
            digit tape's symbols ``SEP``, ``END``, ``MINUS``, ``LT``, ``EQ``, ``GT`` (cells 10..15,
            :mod:`ncl.library.symbols`; ``END`` is the end-of-sequence token). The readout then tells a symbol
            cell from the others, and the copy prints it like a digit, so where an answer ends is read off the
            tape instead of left to the decoder.
        tape_gates: what the gates that cut the prompt onto the tape read: ``"local"`` (a write gate the token
            and the one before it, since a token is written if it is a digit or the first non-digit after one;
            with ``calls``, an operand-end gate the token and the one after it, since a number ends an operand
            unless a digit follows, as in a list), so they hold on prompts longer than any trained on; or
            ``"context"`` (the hidden state; configs saved before this option existed read as this).
        program_read: what the program and argument heads of a single call read: ``"text"`` (attention over the
            prompt's tokens that the tape does not hold, its words, so that long numbers do not dilute them,
            and how many numbers the tape holds: one, two or more) or ``"last"`` (the last prompt token's
            hidden state; configs saved before this option existed read as this).
        calls: 0 (one call on the whole tape) or K >= 1: a chain of up to K calls (:mod:`ncl.computer.calls`),
            each with its own program, ``slots`` argument slots over segments (the empty one, up to K + 1 prompt
            operands, the earlier calls' results) and a halting gate. Needs ``reader="cells"``.
        slots: A, a chain's argument slots per call (a call's tape is its slots' segments, in order).
        call_read: what a chain's program and pointer heads read (:mod:`ncl.computer.call_heads`): ``"text"``
            (the step's words, pooled) or ``"focus"`` (the hidden state where the step ends).
        end_lookahead: how many tokens after it a chain's local operand-end gate reads (1 or 2): with 2, an
            edge list ``1 2, 3 4`` is one operand (a digit follows its comma within two tokens) and a list
            before ``, then`` ends one.
        step_reach: how many tokens after it the step-end gate of ``call_read="text"`` reads (2 or more): 2
            reads the comma of ``, then`` and ``, and then`` and the two characters after it; 8 reads on to the
            ``e`` of ``then``, which tells ``, and then`` from any other clause after a comma
            (:func:`~ncl.tasks.compose.chatter`; ``mix``'s default, docs/language.md).
        nesting: whether a chain can read its steps last first, for nested wording (``add 7 to the product of
            36 and 12``: :mod:`ncl.tasks.nested`): a second step-end gate then reads a wider window of tokens
            and also says whether a step end is nested, and a step's words carry their place among its
            operands (:mod:`ncl.computer.call_heads`). Needs ``call_read="text"``
            and ``tape_gates="local"``.
        call_separators: whether the step's words that a chain's heads pool (``call_read="text"``) include the
            separators inside the tape's lists, a word token between two written ones (the space after the
            comma of ``1 2, 3 4``; :func:`~ncl.computer.call_heads.list_separators`). Without them the pool does
            not drift with a list's length: at 4× an edge list's spaces outweighed the words that name the
            program in a model trained on 1 % of the labels, and ``ncl train`` leaves them out on a chain with
            scarce labels; with every label, leaving them out cost held-out wording (docs/labels.md), so
            ``True`` is the default, and what configs saved before this option existed trained with.
        word_view: the prompt whose states a chain's heads pool the step's words from (``call_read="text"``,
            with ``digit_tokens``; :class:`~ncl.augmented.AugmentedLlama` runs it): ``"collapsed"``, every number
            collapsed to one digit (:func:`~ncl.computer.call_heads.collapse_numbers`; a second pass of the
            layers below the computer, on a shorter prompt), so that a word's state is the same beside a number
            of any length (``"Tell me A minus B."`` with A 20 digits long ran ``long_compare``: docs/language.md),
            ``"context"``, the prompt as written (configs saved before this option existed), or ``"local"``,
            each token of the collapsed prompt read with its neighbours alone
            (:class:`~ncl.computer.call_heads.LocalWords`, a window of :data:`~ncl.computer.call_heads.NGRAM`
            tokens on either side): a word reads the same in any sentence, yet held-out wording did not gain
            beyond the spread between seeds, and one seed lost three-call problems (docs/language.md); or
            ``"pretrained"``, a frozen pretrained sentence encoder's states of the prompt, its numbers replaced,
            through one trained projection (:mod:`ncl.computer.word_encoder`; its weights are an optional
            install): the English that no trained template holds (docs/language.md); or ``"hybrid"``, the
            program head on the pretrained encoder's states and the argument pointers on the collapsed
            prompt's: the encoder reads the whole prompt both ways, so in a chain longer than any trained the
            pointers drifted on it where the collapsed prompt's did not (docs/language.md).
        word_dropout: in training, the share of a step's words that the program head's mean leaves out, drawn
            anew for each word and batch (``word_view`` ``"pretrained"`` or ``"hybrid"``, whose program head
            pools the plain mean), so that the program is read from more than one word: a held-out template is
            trained wording with a few words changed (docs/language.md). 0: every word.
        program_norm: with ``word_view="hybrid"``, whether the program head's word pieces pass through the
            computer's LayerNorm (shared with the LLaMA's states) before their mean: ``True`` for configs saved
            before this option existed; ``False`` (``mix``'s default) makes the head a linear map of the
            encoder's own mean over the step's pieces, and held-out wording no longer hangs on the norm's
            per-piece rescaling, which other heads train (docs/language.md).
    """

    machine: MachineConfig = DEFAULT_MACHINE
    arg_registers: int = 3
    arg_cells: int = 4
    mode: str = "mixture"
    top_k: int = 2
    min_prob: float = 1e-3
    max_steps: int = 2000
    train_library: bool = False
    straight_through: bool = True
    answer_grad: bool = True
    answer_grad_heads: tuple = ANSWER_GRAD_HEADS
    reader: str = "mlp"
    writer: str = "embed"
    digit_tokens: tuple = ()
    symbol_tokens: tuple = ()
    tape_gates: str = "local"
    program_read: str = "text"
    calls: int = 0
    slots: int = 2
    call_read: str = "text"
    end_lookahead: int = 2
    step_reach: int = 2
    nesting: bool = False
    call_separators: bool = True
    word_view: str = "collapsed"
    word_dropout: float = 0.0
    program_norm: bool = True

    def __post_init__(self):
        m = self.machine
        if not isinstance(m, MachineConfig):
            raise TypeError(f"ComputerConfig: machine must be a MachineConfig, got {type(m).__name__}")
        if self.mode not in MODES:
            raise ValueError(f"ComputerConfig: mode must be one of {MODES}, got {self.mode!r}")
        if m.cells > m.n:
            raise ValueError("ComputerConfig: machine.cells must be <= machine.n (the tape length is read as a value)")
        if not 1 <= self.arg_registers < m.registers:
            raise ValueError(f"ComputerConfig: arg_registers must be in 1..{m.registers - 1}")
        if not 1 <= self.arg_cells <= m.cells:
            raise ValueError("ComputerConfig: arg_cells must be in 1..machine.cells")
        if self.reader not in READERS:
            raise ValueError(f"ComputerConfig: reader must be one of {READERS}, got {self.reader!r}")
        if self.writer not in WRITERS:
            raise ValueError(f"ComputerConfig: writer must be one of {WRITERS}, got {self.writer!r}")
        if self.tape_gates not in TAPE_GATES:
            raise ValueError(f"ComputerConfig: tape_gates must be one of {TAPE_GATES}, got {self.tape_gates!r}")
        if self.program_read not in PROGRAM_READS:
            raise ValueError(f"ComputerConfig: program_read must be one of {PROGRAM_READS}, got "
                             f"{self.program_read!r}")
        if self.top_k < 1:
            raise ValueError("ComputerConfig: top_k must be >= 1")
        if self.calls < 0 or (self.calls and self.reader != "cells"):
            raise ValueError(f"ComputerConfig: calls must be >= 0 and needs reader='cells', got {self.calls} with "
                             f"reader={self.reader!r}")
        if self.slots < 1 or self.call_read not in CALL_READS or self.end_lookahead not in (1, 2):
            raise ValueError(f"ComputerConfig: slots must be >= 1, call_read one of {CALL_READS}, end_lookahead 1 "
                             f"or 2; got {self.slots}, {self.call_read!r}, {self.end_lookahead}")
        if not 2 <= self.step_reach <= 16 or (self.step_reach > 2 and self.call_read != "text"):
            raise ValueError(f"ComputerConfig: step_reach must be in 2..16, and 2 but with call_read='text'; got "
                             f"{self.step_reach}")
        if not 0 <= self.word_dropout < 1 or (self.word_dropout and self.word_view not in ENCODER_VIEWS):
            raise ValueError(f"ComputerConfig: word_dropout must be in [0, 1), and 0 but with word_view 'pretrained' "
                             f"or 'hybrid'; got {self.word_dropout} with {self.word_view!r}")
        if not self.program_norm and self.word_view != "hybrid":
            raise ValueError(f"ComputerConfig: program_norm=False needs word_view='hybrid', got {self.word_view!r}")
        if self.word_view not in WORD_VIEWS:
            raise ValueError(f"ComputerConfig: word_view must be one of {WORD_VIEWS}, got {self.word_view!r}")
        if self.nesting and (self.call_read != "text" or self.tape_gates != "local" or not self.calls):
            raise ValueError("ComputerConfig: nesting needs calls, call_read='text' and tape_gates='local'")
        if not set(self.answer_grad_heads) <= set(ANSWER_GRAD_HEADS):
            raise ValueError(f"ComputerConfig: answer_grad_heads must be among {ANSWER_GRAD_HEADS}, got "
                             f"{self.answer_grad_heads!r}")
        if self.digit_tokens and (len(self.digit_tokens) != 10 or self.reader not in ("digits", "cells")):
            raise ValueError("ComputerConfig: digit_tokens must hold the 10 ids of '0'..'9' and needs reader='digits' "
                             "or 'cells'")
        if self.symbol_tokens and (len(self.symbol_tokens) != len(TAPE_SYMBOLS) or self.writer != "cells"
                                   or not self.digit_tokens):
            raise ValueError(f"ComputerConfig: symbol_tokens must hold the {len(TAPE_SYMBOLS)} ids that spell the "
                             "tape's symbols and needs writer='cells' and digit_tokens")

    def answer_grad_to(self, head: str) -> bool:
        """Whether the answer's gradient reaches ``head``'s decision (:data:`ANSWER_GRAD_HEADS`)."""
        return self.answer_grad and head in self.answer_grad_heads

    def to_dict(self) -> dict:
        """Plain data (JSON-ready but for the ``digit_tokens`` tuple): the machine as a nested dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ComputerConfig":
        """The inverse of :meth:`to_dict`. Also reads the flat form (machine fields ``n``, ``cells``, ...,
        ``sharpness`` at the top level, as the config was before it nested a :class:`MachineConfig`); a field
        it does not know is ignored, one it lacks keeps its default, but for the head options of
        :data:`LEGACY_HEADS`, which it lacks only if saved before they existed."""
        d = dict(d)
        machine = d.pop("machine", None)
        flat = {k: d.pop(k) for k in _FLAT_MACHINE_KEYS if k in d}
        if machine is None:
            machine = asdict(DEFAULT_MACHINE) | flat
        if isinstance(machine, dict):
            machine = MachineConfig(**machine)
        known = {f.name for f in fields(cls)} - {"machine"}
        kwargs = LEGACY_HEADS | {k: v for k, v in d.items() if k in known}
        for key in ("digit_tokens", "symbol_tokens", "answer_grad_heads"):
            if key in kwargs:
                kwargs[key] = tuple(kwargs[key])  # JSON gives a list
        return cls(machine=machine, **kwargs)


__all__ = ["ANSWER_GRAD_HEADS", "CALL_READS", "ComputerConfig", "DEFAULT_MACHINE", "ENCODER_VIEWS", "LEGACY_HEADS",
           "MODES", "PLACES", "PROGRAM_READS", "READERS", "TAPE_GATES", "WORD_VIEWS", "WRITERS"]
