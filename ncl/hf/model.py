"""``AugmentedModel``: a causal LM the user already has, with the differentiable computer between two of its
layers, behind ``transformers``' conventions (``forward(input_ids, attention_mask, labels)`` → ``.loss`` and
``.logits``; ``generate``).

The base model is not copied or rebuilt: a forward hook on layer ``split − 1`` (the embedding when ``split`` is
0) hands the hidden states after ``split`` layers to a :class:`~ncl.computer.NeuralComputer` and adds its readouts
to them, so they enter layer ``split``. A hook rather than a re-implementation of the decoder loop: the same code
then runs a ``transformers`` ``LlamaForCausalLM`` of any version (its masks, caches, attention kernels, PEFT
adapters) and an :class:`ncl.llama.LlamaForCausalLM`.

The computer reads each prompt token's digits from its text (:mod:`ncl.hf.tokens`), so BPE chunks of one to
three digits are read as the digits they spell. Its readout reaches the answer positions only; the prompt's
logits are the base model's.
"""

from __future__ import annotations

import inspect
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace

import torch
from torch import nn

from ncl.computer import ComputerConfig, ComputerOutput, NeuralComputer
from ncl.computer.config import DEFAULT_MACHINE
from ncl.computer.module import check_library
from ncl.hf import files
from ncl.hf.pointer import CopyHead
from ncl.hf import tokens as tokens_
from ncl.llama import LlamaForCausalLM as NclLlama
from ncl.llama import causal_lm_loss
from ncl.llama.generation import greedy_decode
from ncl.machine import MachineConfig

IGNORE_INDEX = -100
_MACHINE_KEYS = {f.name for f in fields(MachineConfig)}
_COMPUTER_KEYS = {f.name for f in fields(ComputerConfig)} - {"machine", "digit_tokens", "symbol_tokens"}


@dataclass
class AugmentedOutput:
    """What :meth:`AugmentedModel.forward` returns, in ``transformers``' manner: attributes, ``out["loss"]``,
    and ``out[0]`` (the first field that is not None, so a ``Trainer`` finds the loss).

    ``loss``: scalar next-token cross-entropy (labels given), else None; ``logits (B,T,V)``; ``computer``: the
    :class:`~ncl.computer.ComputerOutput` in the computer's own layout (None when it is switched off).
    """

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    computer: ComputerOutput | None = None

    def to_tuple(self) -> tuple:
        """The fields that are not None, in order."""
        return tuple(getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None)

    def __getitem__(self, key):
        return self.to_tuple()[key] if isinstance(key, int) else getattr(self, key)

    def keys(self) -> list[str]:
        """The names of the fields that are not None."""
        return [f.name for f in fields(self) if getattr(self, f.name) is not None]


@dataclass
class _Call:
    """What the hook needs about the call in progress (set by forward/generate, cleared after)."""

    kind: str  # "full": a whole sequence; "step": tokens after a cached prompt
    input_ids: torch.Tensor | None = None
    attention_mask: torch.Tensor | None = None
    read_mask: torch.Tensor | None = None
    state: object = None
    pointers: object = None
    max_steps: int | None = None
    out: ComputerOutput | None = None
    printed: tuple | None = None  # the copy's inputs at the original positions: print_r0, print_cell, read
    final: torch.Tensor | None = None  # the final norm's output (B,T,d), for the copy's gates
    embeds: torch.Tensor | None = None  # the token embeddings (B,T,d), which the pointer gates read


def computer_config(hidden_size: int, config: ComputerConfig | None = None, **options) -> ComputerConfig:
    """The computer's config for :func:`augment`: ``config`` (default: the digit tape, ``reader="cells"``,
    ``writer="cells"``) updated with ``options``, which may name any :class:`~ncl.computer.ComputerConfig` field
    or a :class:`~ncl.machine.MachineConfig` field (``n``, ``cells``, ``stack``, ...). The digits are always
    read from the token texts (:mod:`ncl.hf.tokens`)."""
    if not isinstance(hidden_size, int) or hidden_size < 1:
        raise ValueError(f"hidden_size must be a positive int, got {hidden_size!r}")
    if config is None:
        config = ComputerConfig(machine=DEFAULT_MACHINE, reader="cells", writer="cells")
    if not isinstance(config, ComputerConfig):
        raise ValueError(f"config must be a ComputerConfig, got {type(config).__name__}")
    unknown = set(options) - _MACHINE_KEYS - _COMPUTER_KEYS
    if unknown:
        raise ValueError(f"computer options: unknown {sorted(unknown)}; known: ComputerConfig's "
                         f"{sorted(_COMPUTER_KEYS)} and MachineConfig's {sorted(_MACHINE_KEYS)}")
    machine = replace(config.machine, **{k: v for k, v in options.items() if k in _MACHINE_KEYS})
    config = replace(config, machine=machine, **{k: v for k, v in options.items() if k in _COMPUTER_KEYS})
    if config.reader != "cells":
        raise ValueError(f"computer options: reader must be 'cells' (digits read from the token texts), got "
                         f"{config.reader!r}")
    if options.get("word_view", "context") != "context":
        raise ValueError("computer options: word_view must be 'context' here: the wrapped model has no second pass "
                         "over a collapsed prompt (ncl.augmented's)")
    symbols = tokens_.SYMBOL_IDS if config.writer == "cells" else ()
    # (the config's default word view is the collapsed one, which only ncl.augmented runs)
    return replace(config, digit_tokens=tokens_.DIGIT_IDS, symbol_tokens=symbols, word_view="context")


def install_library(computer: NeuralComputer, image) -> None:
    """Run ``image`` (a :class:`~ncl.machine.Program` with ``entries``: name → entry line, e.g.
    ``ncl.Library.image(config)``) in ``computer`` instead of the built-in library; the program head is new (one
    output per entry)."""
    entries = check_library(image, computer.config.machine).entries
    image.requires_grad_(computer.config.train_library)
    computer.library = image
    computer.program_names = list(entries)
    computer.entries = torch.tensor([entries[p] for p in computer.program_names],
                                    device=computer.entries.device)
    d = computer.program_head.in_features
    computer.program_head = nn.Linear(d, len(entries), device=computer.program_head.weight.device)


def _inner(model: nn.Module) -> nn.Module:
    """The causal LM under a PEFT wrapper (or the model itself)."""
    get = getattr(model, "get_base_model", None)
    return get() if callable(get) else model


def base_kind(model: nn.Module) -> str:
    """``"ncl"`` for an :class:`ncl.llama.LlamaForCausalLM`, ``"transformers"`` for a ``transformers`` causal LM
    with ``.model.layers`` and ``.model.embed_tokens`` (LLaMA and its relatives); ValueError otherwise."""
    inner = _inner(model)
    if isinstance(inner, NclLlama):
        return "ncl"
    body = getattr(inner, "model", None)
    if type(inner).__module__.startswith("transformers") and hasattr(body, "layers") and \
            hasattr(body, "embed_tokens"):
        return "transformers"
    raise ValueError(f"model must be a transformers LlamaForCausalLM or an ncl.llama.LlamaForCausalLM, got "
                     f"{type(model).__name__}")


class AugmentedModel(nn.Module):
    """A causal LM with a :class:`~ncl.computer.NeuralComputer` after layer ``split`` (module docstring).

    Build one with :func:`augment` (or :meth:`from_pretrained`). The base model is the caller's object: its
    weights are shared, and ``freeze_base`` / ``lora`` change its ``requires_grad`` flags in place.

    Args:
        base: a ``transformers`` ``LlamaForCausalLM`` (or a PEFT model around one) or an
            ``ncl.llama.LlamaForCausalLM``.
        tokenizer: its tokenizer (ncl, ``tokenizers`` or ``transformers``); the digit reader reads its texts.
        config: the computer's :class:`~ncl.computer.ComputerConfig` (:func:`computer_config`).
        library: None (the built-in library) or an image with ``entries`` / an object with
            ``image(machine_config)`` (``ncl.Library``).
        split: layers before the computer, 0..L (default L // 2, at least 1).
        freeze_base: no gradient to the base model's weights.
        lora: None, or a ``peft.LoraConfig`` (or a dict of its fields): the base is trained through LoRA
            adapters only (``peft`` needed).
        copy: the output at read positions is the pointer-generator mixture of :mod:`ncl.hf.pointer` (the cell
            the readout carries copied onto the token that spells it); ``logits`` are then log-probabilities.

    Attributes:
        computer_enabled: False runs the base model alone (its logits exactly); True by default.
    """

    def __init__(self, base: nn.Module, tokenizer, config: ComputerConfig | None = None, library=None,
                 split: int | None = None, freeze_base: bool = False, lora=None, copy: bool = False):
        super().__init__()
        self.kind = base_kind(base)
        inner = _inner(base)
        body = inner.model
        layers = len(body.layers)
        hidden = body.embed_tokens.embedding_dim
        split = max(1, layers // 2) if split is None else split
        if not isinstance(split, int) or not 0 <= split <= layers:
            raise ValueError(f"split must be an int in 0..{layers} (layers before the computer), got {split!r}")
        self.split = split
        if lora is not None:
            base = _with_lora(base, lora)
        elif freeze_base:
            base.requires_grad_(False)
        self.base = base
        self.tokenizer = tokenizer
        self.register_buffer("digit_table", tokens_.digit_table(tokenizer, body.embed_tokens.num_embeddings),
                             persistent=False)
        self.computer = NeuralComputer(hidden, config or computer_config(hidden))
        if library is not None:
            install_library(self.computer, library.image(self.computer.config.machine)
                            if hasattr(library, "image") and callable(library.image) else library)
        self.has_user_library = library is not None
        self.library_source = getattr(library, "source", None)  # text, kept to be saved beside the image
        self.computer_enabled = True
        # transformers 5.x renames past_key_values to cache (the old name warns, then goes)
        self._cache_arg = "cache" if "cache" in inspect.signature(inner.forward).parameters else "past_key_values"
        self._call: _Call | None = None
        target = body.embed_tokens if split == 0 else body.layers[split - 1]
        # registered first: with split 0 both hooks are on embed_tokens, and the capture must come first
        self._embed_hook = body.embed_tokens.register_forward_hook(self._capture_embeds)
        self._hook = target.register_forward_hook(self._inject)
        self.copy_head = None
        if copy:
            if self.computer.config.writer != "cells":
                raise ValueError("copy needs the computer's writer='cells' (the readout's cell classes)")
            self.copy_head = CopyHead(hidden, tokenizer)
            self._norm_hook = body.norm.register_forward_hook(self._capture)

    # --- the hook ------------------------------------------------------------------------------------------
    def _inject(self, module, args, output):
        call = self._call
        if call is None or not self.computer_enabled:
            return output
        h = output[0] if isinstance(output, tuple) else output
        dtype = self.computer.norm.weight.dtype  # the machine runs in the computer's dtype (fp32: see ncl.computer)
        # the pointer gates read the token alone (NeuralComputer.readout); none captured: inputs_embeds were given
        embeds = call.embeds if call.embeds is not None and call.embeds.shape == h.shape else None
        if call.kind == "step":
            B, T, _ = h.shape
            ones = torch.ones(B, T, dtype=torch.long, device=h.device)
            out, call.pointers = self.computer.forward_incremental(
                h.to(dtype), ones, ones, state=call.state, max_steps=call.max_steps, pointers=call.pointers,
                token_states=None if embeds is None else embeds.to(dtype))
            readout = out.readout
        else:
            view = tokens_.computer_view(call.input_ids, call.attention_mask, call.read_mask, self.digit_table)
            out, call.pointers = self.computer.forward_incremental(
                tokens_.gather_view(h.to(dtype), view), view.mask, view.read, state=call.state,
                max_steps=call.max_steps, input_ids=view.ids,
                token_states=None if embeds is None else tokens_.gather_view(embeds.to(dtype), view))
            readout = tokens_.scatter_readout(out.readout, view, h.shape[1])
        call.out = out
        if self.copy_head is not None:
            heads = out.heads
            if call.kind == "step":
                call.printed = (heads.print_r0, heads.print_cell, torch.ones_like(heads.print_r0[..., 0]))
            else:
                T = h.shape[1]
                call.printed = tuple(tokens_.scatter_readout(x, view, T) for x in
                                     (heads.print_r0, heads.print_cell, view.read[..., None].to(dtype)))
                call.printed = (*call.printed[:2], call.printed[2][..., 0])
        h = h + readout.to(h.dtype)
        return (h, *output[1:]) if isinstance(output, tuple) else h

    def _capture_embeds(self, module, args, output):
        if self._call is not None:
            self._call.embeds = output

    def _capture(self, module, args, output):
        if self._call is not None:
            self._call.final = output

    def _copied(self, logits: torch.Tensor, call: _Call | None) -> torch.Tensor:
        """The copy mixture (:mod:`ncl.hf.pointer`) on the last ``logits.shape[1]`` positions of the call."""
        if self.copy_head is None or call is None or call.printed is None:
            return logits
        keep = slice(-logits.shape[1], None)
        r0, cell, read = (x[:, keep] for x in call.printed)
        return self.copy_head(logits, call.final[:, keep], r0, cell, read)

    @contextmanager
    def _calling(self, call: _Call | None):
        self._call = call
        try:
            yield call
        finally:
            self._call = None

    def _base_logits(self, input_ids, attention_mask, position_ids=None, past=None, cache=None, last=False):
        if self.kind == "ncl":
            return self.base(input_ids, attention_mask=attention_mask, position_ids=position_ids, cache=cache,
                             logits_to_keep=int(last)).logits, None
        kwargs = {"logits_to_keep": 1} if last else {}
        if past is not None:
            kwargs[self._cache_arg] = past
        out = self.base(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                        use_cache=past is not None or cache is not None, **kwargs)
        return out.logits, getattr(out, self._cache_arg, None)

    # --- forward -------------------------------------------------------------------------------------------
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, read_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, max_steps: int | None = None,
                num_items_in_batch=None) -> AugmentedOutput:
        """Logits of every position, and the loss with ``labels``.

        Args:
            input_ids: (B, T) int64; any padding (left or right), marked by ``attention_mask``.
            attention_mask: (B, T), 1 = token (default all ones).
            labels: (B, T) int64, ``transformers``' convention: the loss predicts ``labels[:, t+1]`` at t and
                skips −100. The answer is where the labels start: each row's read positions are the position
                before its first label and every one after it.
            read_mask: (B, T) the read positions, instead of reading them off ``labels``; without both, each
                row's last real token is its only read position (the prompt is everything before it).
            position_ids: (B, T), passed to the base model.
            max_steps: the machine's step limit (default the config's).
            num_items_in_batch: accepted for ``transformers.Trainer``; unused.

        Returns:
            :class:`AugmentedOutput`: ``loss`` (scalar or None), ``logits (B,T,V)``, ``computer``.
        """
        input_ids, attention_mask = _check_ids(input_ids, attention_mask)
        if labels is not None and labels.shape != input_ids.shape:
            raise ValueError(f"labels must have the shape of input_ids {tuple(input_ids.shape)}, got "
                             f"{tuple(labels.shape)}")
        call = None
        if self.computer_enabled:
            read = read_positions(input_ids, attention_mask, labels, read_mask)
            call = _Call("full", input_ids, attention_mask, read, max_steps=max_steps)
        with self._calling(call):
            logits, _ = self._base_logits(input_ids, attention_mask, position_ids)
        logits = self._copied(logits, call)
        loss = causal_lm_loss(logits, labels) if labels is not None else None
        return AugmentedOutput(loss, logits, call.out if call is not None else None)

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                 max_new_tokens: int = 32, eos_token_id: int | list[int] | None = None,
                 pad_token_id: int | None = None, use_cache: bool = True,
                 max_steps: int | None = None) -> torch.Tensor:
        """Greedy decoding, ``transformers``' ``generate(input_ids, attention_mask, max_new_tokens)``:
        ``input_ids (B,P)`` left-padded prompts → (B, P + N), N ≤ ``max_new_tokens`` (fewer when every row
        ended with ``eos_token_id``, default the tokenizer's; finished rows are filled with ``pad_token_id``).

        The prompt runs once with the machine (the last prompt token is the first read position); each later
        token runs alone against the KV cache and continues the readout from the carried pointers.
        ``use_cache=False`` recomputes the sequence at every token (the machine still runs once): the reference.
        """
        input_ids, attention_mask = _check_ids(input_ids, attention_mask)
        if not bool(attention_mask[:, -1].bool().all()):
            raise ValueError("generate: prompts must be left padded (attention_mask[:, -1] all 1)")
        if eos_token_id is None:
            eos_token_id = getattr(self.tokenizer, "eos_token_id", None)
        P = input_ids.shape[1]
        gen = {"state": None, "pointers": None, "past": None}

        def step(ids, mask, positions, cache):
            call = None
            if self.computer_enabled:
                if cache is not None and gen["state"] is not None:
                    call = _Call("step", state=gen["state"], pointers=gen["pointers"], max_steps=max_steps)
                else:
                    read = torch.zeros_like(mask)
                    read[:, P - 1:] = 1
                    call = _Call("full", ids, mask, read, state=gen["state"], max_steps=max_steps)
            with self._calling(call):
                logits, gen["past"] = self._base_logits(ids, mask, positions, past=gen["past"], cache=cache,
                                                        last=True)
            logits = self._copied(logits, call)
            if call is not None:
                gen["state"], gen["pointers"] = call.out.state, call.pointers
            return logits[:, -1]

        num_layers = len(_inner(self.base).model.layers)
        return greedy_decode(step, num_layers, input_ids, max_new_tokens, attention_mask=attention_mask,
                             eos_token_id=eos_token_id, pad_token_id=pad_token_id, use_cache=use_cache)

    def unhook(self) -> nn.Module:
        """Take the computer out of the base model (its hook removed) and return the base, as it was before
        :func:`augment` (its weights as trained since; ``freeze_base`` flags and LoRA adapters stay). This
        AugmentedModel then runs the base alone."""
        self._hook.remove()
        self._embed_hook.remove()
        if self.copy_head is not None:
            self._norm_hook.remove()
        self.computer_enabled = False
        return self.base

    # --- files ---------------------------------------------------------------------------------------------
    def save_pretrained(self, path) -> None:
        """Write the model to the directory ``path`` (:mod:`ncl.hf.files`): ``config.json``,
        ``model.safetensors``, the tokenizer's files, ``library.asm`` / ``library.json`` and the library's
        source. The directory appears complete or not at all."""
        files.save(path, self)

    @classmethod
    def from_pretrained(cls, path) -> "AugmentedModel":
        """The model :meth:`save_pretrained` wrote to ``path``: same weights, same logits. Runs no code from the
        files (the library is reassembled from its assembly, the weights are safetensors)."""
        saved = files.load(path)
        model = cls(saved.base, saved.tokenizer, config=saved.computer_config, library=saved.library,
                    split=saved.split, lora=saved.lora, copy=saved.copy)
        model.library_source = saved.library_source
        files.load_weights(model, saved.state, path)
        return model


def _with_lora(base: nn.Module, lora) -> nn.Module:
    """``base`` with LoRA adapters (peft), only they trainable."""
    try:
        import peft  # optional dependency (the [hf] extra)
    except ImportError as exc:
        raise ValueError("lora needs the peft package: pip install peft (or ncl[hf])") from exc
    if isinstance(lora, dict):
        lora = peft.LoraConfig(**lora)
    if not isinstance(lora, peft.LoraConfig):
        raise ValueError(f"lora must be a peft.LoraConfig or a dict of its fields, got {type(lora).__name__}")
    return peft.get_peft_model(base, lora)


def _check_ids(input_ids, attention_mask):
    if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2 or input_ids.dtype not in (torch.int64,
                                                                                                   torch.int32):
        raise ValueError(f"input_ids must be an int64 tensor of shape (B, T), got "
                         f"{getattr(input_ids, 'dtype', type(input_ids))} {tuple(getattr(input_ids, 'shape', ()))}")
    input_ids = input_ids.long()
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    elif attention_mask.shape != input_ids.shape:
        raise ValueError(f"attention_mask must have the shape of input_ids {tuple(input_ids.shape)}, got "
                         f"{tuple(attention_mask.shape)}")
    return input_ids, attention_mask.long()


def read_positions(input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor | None,
                   read_mask: torch.Tensor | None) -> torch.Tensor:
    """The read positions (B,T) of :meth:`AugmentedModel.forward`: ``read_mask``, or from each row's first label
    on (the position before it), or each row's last real token; all arguments (B,T)."""
    B, T = input_ids.shape
    cols = torch.arange(T, device=input_ids.device)
    if read_mask is not None:
        if read_mask.shape != (B, T):
            raise ValueError(f"read_mask must have shape {(B, T)}, got {tuple(read_mask.shape)}")
        return read_mask.long()
    if labels is not None:
        labelled = labels != IGNORE_INDEX
        if not bool(labelled[:, 1:].any(1).all()):
            raise ValueError("labels: every row needs an answer (a label other than -100 after its first token)")
        first = labelled[:, 1:].long().argmax(1)  # the position before the row's first label
        return (cols[None] >= first[:, None]).long() * attention_mask
    last = (attention_mask * cols[None]).argmax(1)
    return (cols[None] == last[:, None]).long()


def augment(model: nn.Module, tokenizer, library=None, split: int | None = None, *, freeze_base: bool = False,
            lora=None, copy: bool = False, config: ComputerConfig | None = None,
            **computer_options) -> AugmentedModel:
    """``ncl.augment``: give a causal LM the differentiable computer.

    Args:
        model: a ``transformers`` ``LlamaForCausalLM`` (or a PEFT model around one) or an
            ``ncl.llama.LlamaForCausalLM``; shared, not copied.
        tokenizer: its tokenizer (ncl, ``tokenizers`` or ``transformers``): digits are read from its texts, so it
            must spell digits (ValueError otherwise).
        library: None (the built-in library), an ``ncl.Library`` or a library image.
        split: the computer reads the hidden states after this many layers; its readouts enter the next layer.
        freeze_base, lora: how the base model trains (:class:`AugmentedModel`).
        copy: the pointer-generator output (:mod:`ncl.hf.pointer`).
        config, computer_options: the computer's config (:func:`computer_config`), e.g. ``cells=64``,
            ``max_steps=500``.

    Returns:
        :class:`AugmentedModel`: ``model(input_ids (B,T), attention_mask (B,T), labels=(B,T))`` →
        ``.loss``, ``.logits (B,T,V)``; ``generate(input_ids (B,P), attention_mask, max_new_tokens)``.

    Example (a ``transformers.LlamaForCausalLM`` goes in the same way)::

        >>> import ncl
        >>> from ncl.llama import LlamaConfig, LlamaForCausalLM
        >>> from ncl.tokenizers import CharTokenizer
        >>> tok = CharTokenizer()
        >>> model = ncl.augment(LlamaForCausalLM(LlamaConfig.preset("tiny")), tok, split=2, max_steps=32)
        >>> ids, mask = tok.encode_batch(["add 4071 98 =", "sort 3 1 2 ="], add_bos=True)  # left padded
        >>> out = model(ids, mask)               # the last prompt token reads the computer
        >>> out.logits.shape                     # (B, T, V)
        torch.Size([2, 12, 128])
        >>> model.generate(ids, mask, max_new_tokens=3).shape[0]
        2
        >>> model.computer_enabled = False       # the base model alone
    """
    base_kind(model)  # an unsupported model is refused before any of its attributes is read
    hidden = _inner(model).model.embed_tokens.embedding_dim
    return AugmentedModel(model, tokenizer, computer_config(hidden, config, **computer_options), library=library,
                          split=split, freeze_base=freeze_base, lora=lora, copy=copy)


__all__ = ["AugmentedModel", "AugmentedOutput", "augment", "base_kind", "computer_config", "install_library",
           "read_positions"]
