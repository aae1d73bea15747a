"""Numbers as the computer reads them from any tokenizer, and the computer's own view of a batch.

A real tokenizer does not give every digit a token of its own: LLaMA3's byte-level BPE cuts ``"4071"`` into the
chunks ``"407"`` ``"1"``, GPT-2's writes ``" 4071"`` as one token with its space. The computer's tape holds one
digit per cell (:mod:`ncl.library.symbols`), so each token is read from its *text*: :func:`digit_table` gives
every id the cells it spells (a chunk of digits, the digits one per cell, a space beside them a separate
"not a digit" cell; any other token one "not a digit" cell). :func:`computer_view` then lays a batch out as the
computer expects it: the prompt's cells left-aligned so that every row's prompt ends in one column, followed by
the read positions, one per token.

The computer reads these cells with synthetic ids (:data:`DIGIT_IDS`: digit d is the id d, :data:`NOT_DIGIT` the
rest), whatever the tokenizer's ids are, so one ``ComputerConfig`` fits every tokenizer.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

NOT_DIGIT = 10  #: the synthetic id of a cell that is no digit (the tape writes it as ``SEP``)
DIGIT_IDS = tuple(range(10))  #: the synthetic ids of ``"0"``..``"9"`` in the computer's view
#: Synthetic ids for the tape's symbols (``ComputerConfig.symbol_tokens``): the readout then tells the symbols
#: apart; no token of the view carries them.
SYMBOL_IDS = tuple(range(11, 17))
_DIGITS = frozenset("0123456789")


def token_texts(tokenizer, vocab_size: int) -> list[str]:
    """The text of each id ``0..vocab_size-1`` alone (``""`` for an id the tokenizer does not have).

    ``tokenizer``: an ``ncl.tokenizers.Tokenizer``, a ``tokenizers.Tokenizer`` or a ``transformers`` tokenizer;
    anything with ``decode(list_of_ids)``.
    """
    if not hasattr(tokenizer, "decode"):
        raise ValueError(f"tokenizer must have a decode method (an ncl, tokenizers or transformers tokenizer), got "
                         f"{type(tokenizer).__name__}")
    texts = []
    for i in range(vocab_size):
        try:
            texts.append(tokenizer.decode([i]))
        except Exception:  # noqa: BLE001 - ids past a tokenizer's vocabulary raise different errors per library
            texts.append("")
    return texts


def encode_text(tokenizer, text: str) -> list[int]:
    """Token ids of ``text`` without special tokens (ncl, ``tokenizers`` or ``transformers`` tokenizers)."""
    if hasattr(tokenizer, "encode_raw"):
        return tokenizer.encode_raw(text)
    out = tokenizer.encode(text, add_special_tokens=False)
    return list(getattr(out, "ids", out))


def single_token(tokenizer, text: str, what: str) -> int:
    """The id of the one token that spells ``text``; ValueError naming ``what`` when it takes more or none."""
    ids = encode_text(tokenizer, text)
    if len(ids) != 1:
        raise ValueError(f"tokenizer: {what} {text!r} is not one token ({ids})")
    return ids[0]


def cells_of(text: str) -> list[int]:
    """The cells a token's text spells: ``"407"`` → ``[4, 0, 7]``, ``" 12"`` → ``[NOT_DIGIT, 1, 2]``, any text
    that is not digits between optional whitespace → ``[NOT_DIGIT]``."""
    core = text.strip()
    if not core or not set(core) <= _DIGITS:
        return [NOT_DIGIT]
    lead = [NOT_DIGIT] if text[:1].isspace() else []
    trail = [NOT_DIGIT] if text[-1:].isspace() else []
    return lead + [int(c) for c in core] + trail


def digit_table(tokenizer, vocab_size: int) -> torch.Tensor:
    """Every id's cells: (vocab_size, K) int64, row v = :func:`cells_of` the text of v, padded with −1; K is the
    longest.

    Raises:
        ValueError: no token of the tokenizer spells a digit (the computer could read no number).
    """
    if not isinstance(vocab_size, int) or vocab_size < 1:
        raise ValueError(f"vocab_size must be a positive int, got {vocab_size!r}")
    rows = [cells_of(t) for t in token_texts(tokenizer, vocab_size)]
    if not any(c < NOT_DIGIT for row in rows for c in row):
        raise ValueError("tokenizer: no token's text is made of the digits 0-9, so the computer cannot read numbers "
                         "through it; use a tokenizer that spells digits (byte-level BPE, a character tokenizer)")
    width = max(len(r) for r in rows)
    table = torch.full((vocab_size, width), -1, dtype=torch.int64)
    for v, row in enumerate(rows):
        table[v, :len(row)] = torch.tensor(row)
    return table


class View(NamedTuple):
    """The computer's layout of a batch (:func:`computer_view`), width W = prompt cells Wp + read positions R.

    ``source (B,W)``: the original position each column takes its hidden state from (0 where ``mask`` is 0);
    ``ids (B,W)``: the synthetic ids (:data:`DIGIT_IDS`, :data:`NOT_DIGIT`); ``mask (B,W)``: 1 = a cell or a
    read position; ``read (B,W)``: 1 = a read position; ``first_read (B,)``: each row's first read position in
    the original layout; ``prompt_width``: Wp."""

    source: torch.Tensor
    ids: torch.Tensor
    mask: torch.Tensor
    read: torch.Tensor
    first_read: torch.Tensor
    prompt_width: int


def first_reads(attention_mask: torch.Tensor, read_mask: torch.Tensor) -> torch.Tensor:
    """Each row's first read position: (B,T) masks → (B,) int64; ValueError when a row has none, or no real token
    before it."""
    read = (read_mask.bool() & attention_mask.bool()).long()
    if not bool(read.any(1).all()):
        raise ValueError("read_mask: every row needs a read position (a position that predicts an answer token)")
    first = read.argmax(1)
    before = (attention_mask.bool() & (torch.arange(read.shape[1], device=read.device) < first[:, None])).any(1)
    if not bool(before.all()):
        raise ValueError("read_mask must leave at least one prompt token before each row's first read position")
    return first


def computer_view(input_ids: torch.Tensor, attention_mask: torch.Tensor, read_mask: torch.Tensor,
                  table: torch.Tensor) -> View:
    """Lay out a batch for the computer: ``input_ids``, ``attention_mask``, ``read_mask`` (B,T) and the
    :func:`digit_table` → :class:`View`.

    A row's prompt is its real tokens before its first read position; each gives its cells (a chunk of digits one
    cell per digit), left-aligned so every row's prompt ends in column Wp − 1. Its read positions follow, from
    its first read position to the end, one column each. Padding anywhere in the batch (left or right) is allowed.
    """
    B, T = input_ids.shape
    dev = input_ids.device
    first = first_reads(attention_mask, read_mask)
    cols = torch.arange(T, device=dev)
    prompt = attention_mask.bool() & (cols[None] < first[:, None])  # (B, T)
    cells = table.to(dev)[input_ids.clamp(0, table.shape[0] - 1)]  # (B, T, K)
    K = cells.shape[-1]
    valid = (cells >= 0) & prompt[..., None]
    cells, valid = cells.flatten(1), valid.flatten(1)  # (B, T·K), in reading order
    src = cols.repeat_interleave(K)[None].expand(B, -1)
    count = valid.sum(1)
    Wp = int(count.max())
    col = valid.long().cumsum(1) - 1 + (Wp - count)[:, None]
    R = int((T - first).max())
    W = Wp + R
    source = torch.zeros(B, W, dtype=torch.int64, device=dev)
    ids = torch.full((B, W), NOT_DIGIT, dtype=torch.int64, device=dev)
    mask = torch.zeros(B, W, dtype=torch.int64, device=dev)
    rows = torch.arange(B, device=dev)[:, None].expand(-1, valid.shape[1])
    source[rows[valid], col[valid]] = src[valid]
    ids[rows[valid], col[valid]] = cells[valid]
    mask[rows[valid], col[valid]] = 1
    # the read positions: column Wp + j holds original position first + j
    j = torch.arange(R, device=dev)
    pos = first[:, None] + j[None]
    inside = pos < T
    pos = pos.clamp(max=T - 1)
    real = inside & attention_mask.gather(1, pos).bool()
    source[:, Wp:] = torch.where(inside, pos, torch.zeros_like(pos))
    mask[:, Wp:] = real.long()
    read = torch.zeros_like(mask)
    read[:, Wp:] = real.long()
    return View(source, ids, mask, read, first, Wp)


def gather_view(hidden: torch.Tensor, view: View) -> torch.Tensor:
    """The hidden states in the view's layout: (B,T,d) → (B,W,d)."""
    return hidden.gather(1, view.source[..., None].expand(-1, -1, hidden.shape[-1]))


def scatter_readout(readout: torch.Tensor, view: View, length: int) -> torch.Tensor:
    """The view's readouts back at their original positions: (B,W,d) → (B,length,d), zero outside the read
    positions."""
    B, W, d = readout.shape
    Wp = view.prompt_width
    t = torch.arange(length, device=readout.device)
    j = t[None] - view.first_read[:, None]  # (B, length): the read column of each original position
    ok = (j >= 0) & (j < W - Wp)
    idx = (Wp + j.clamp(0, W - Wp - 1))[..., None].expand(-1, -1, d)
    return torch.where(ok[..., None], readout.gather(1, idx), torch.zeros((), dtype=readout.dtype,
                                                                         device=readout.device))


def number_on_tape(cells: list[int]) -> list[int]:
    """The numbers a row of cells spells (digits between ``NOT_DIGIT`` cells), for checks and diagnostics."""
    out, cur = [], None
    for c in cells:
        if 0 <= c < NOT_DIGIT:
            cur = (cur or 0) * 10 + c
        elif cur is not None:
            out.append(cur)
            cur = None
    if cur is not None:
        out.append(cur)
    return out


__all__ = ["DIGIT_IDS", "NOT_DIGIT", "SYMBOL_IDS", "View", "cells_of", "computer_view", "digit_table",
           "encode_text", "first_reads", "gather_view", "number_on_tape", "scatter_readout", "single_token",
           "token_texts"]
