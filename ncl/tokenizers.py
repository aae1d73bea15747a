"""Tokenizers: a small built-in one for the algorithmic tasks, and Hugging Face ``tokenizer.json`` files.

Both share one interface (``Tokenizer``): ``encode``, ``decode``, ``encode_batch`` (padded tensors for a model),
and the special-token ids ``pad_token_id``, ``bos_token_id``, ``eos_token_id``, ``unk_token_id``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Sequence

import torch

PAD, BOS, EOS, UNK, SEP = "<pad>", "<bos>", "<eos>", "<unk>", "<sep>"
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK, SEP)
DIGITS = "0123456789"
LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
PUNCTUATION = " \n+-*/%=<>()[]{},.:;?!_|&^~'\"#"
# Task words that get a token of their own when they stand alone (not inside a longer word).
WORDS = ("add", "sub", "mul", "div", "mod", "divmod", "gcd", "pow", "fib", "factorial", "sort", "reverse", "sum",
         "max", "min", "count", "search", "copy", "answer")

TOKENIZER_FILE = "tokenizer.json"
CHAR_TOKENIZER_TYPE = "ncl.CharTokenizer"


class Tokenizer:
    """The shared interface. Subclasses implement ``encode_raw``, ``decode``, ``vocab_size`` and the token/id
    maps, and set the ``*_token_id`` attributes (None where a tokenizer has no such token)."""

    pad_token_id: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    unk_token_id: int | None = None

    @property
    def vocab_size(self) -> int:
        """V: the number of ids (special tokens included)."""
        raise NotImplementedError

    def encode_raw(self, text: str) -> list[int]:
        """Token ids of ``text`` with no special tokens added."""
        raise NotImplementedError

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = False) -> str:
        """The text of ``ids`` (a list or a 1-D tensor), dropping special tokens on request."""
        raise NotImplementedError

    def encode(self, text: str, add_bos: bool = False, add_eos: bool = False) -> list[int]:
        """Token ids of ``text``, with the BOS / EOS id prepended / appended on request."""
        if not isinstance(text, str):
            raise ValueError(f"text must be a str, got {type(text).__name__}")
        ids = self.encode_raw(text)
        if add_bos:
            ids = [self._need("bos_token_id")] + ids
        if add_eos:
            ids = ids + [self._need("eos_token_id")]
        return ids

    def encode_batch(self, texts: Sequence[str], add_bos: bool = False, add_eos: bool = False,
                     padding_side: str = "left") -> tuple[torch.Tensor, torch.Tensor]:
        """Encode and pad a batch for a model.

        ``padding_side="left"`` suits generation (every prompt ends at the last column), ``"right"`` suits
        training.

        Returns:
            input_ids: (B, T) int64, padded with ``pad_token_id``; attention_mask: (B, T) int64, 1 = token.
        """
        if padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
        if isinstance(texts, str) or len(texts) == 0:
            raise ValueError("texts must be a non-empty sequence of str")
        rows = [self.encode(t, add_bos=add_bos, add_eos=add_eos) for t in texts]
        width = max(len(r) for r in rows)
        pad = self._need("pad_token_id") if any(len(r) < width for r in rows) else 0
        ids = torch.full((len(rows), width), pad, dtype=torch.int64)
        mask = torch.zeros((len(rows), width), dtype=torch.int64)
        for i, r in enumerate(rows):
            sl = slice(width - len(r), width) if padding_side == "left" else slice(0, len(r))
            ids[i, sl] = torch.tensor(r, dtype=torch.int64)
            mask[i, sl] = 1
        return ids, mask

    def decode_batch(self, ids, skip_special_tokens: bool = True) -> list[str]:
        """Decode every row of ``ids`` (B, T) (a tensor or lists)."""
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        return [self.decode(row, skip_special_tokens=skip_special_tokens) for row in ids]

    def _need(self, attr: str) -> int:
        value = getattr(self, attr)
        if value is None:
            raise ValueError(f"this tokenizer has no {attr.removesuffix('_id')}")
        return value


class CharTokenizer(Tokenizer):
    """A character-level tokenizer for the algorithmic tasks, with special tokens and whole-word task tokens.

    Every digit is its own token, so numbers are read digit by digit. Text is cut left to right: a special token
    written out (``"<eos>"``) first, then a task word (from ``words``) that stands alone (no letter or digit
    touches it on either side), then a single character. A character outside the vocabulary becomes ``<unk>``.
    ``decode(encode(s)) == s`` whenever every character of s is in the vocabulary.

    The default vocabulary (``CharTokenizer()``) has 5 special tokens (ids 0–4: pad, bos, eos, unk, sep),
    digits, ASCII letters, common punctuation, and ``WORDS``: fewer than 128 tokens, so it fits the ``tiny``
    preset.

    Args:
        chars: single characters of the vocabulary.
        words: whole-word tokens.
        special_tokens: special tokens, first; the first four must be pad, bos, eos and unk in that order.
    """

    def __init__(self, chars: str = DIGITS + LETTERS + PUNCTUATION, words: Sequence[str] = WORDS,
                 special_tokens: Sequence[str] = SPECIAL_TOKENS):
        special_tokens, words = list(special_tokens), list(words)
        if len(special_tokens) < 4:
            raise ValueError("special_tokens must start with pad, bos, eos and unk tokens")
        if any(len(c) != 1 for c in chars):
            raise ValueError("chars must be single characters")
        if any(not w or not w.isalpha() for w in words):
            raise ValueError(f"words must be alphabetic strings, got {words}")
        vocab = special_tokens + list(dict.fromkeys(chars)) + words
        if len(set(vocab)) != len(vocab):
            dup = sorted({t for t in vocab if vocab.count(t) > 1})
            raise ValueError(f"tokens appear twice in the vocabulary: {dup}")
        self.special_tokens, self.chars, self.words = special_tokens, "".join(dict.fromkeys(chars)), words
        self._id_to_token = vocab
        self._token_to_id = {t: i for i, t in enumerate(vocab)}
        self.pad_token_id, self.bos_token_id, self.eos_token_id, self.unk_token_id = range(4)
        self._specials_longest_first = sorted(special_tokens, key=len, reverse=True)
        self._words_longest_first = sorted(words, key=len, reverse=True)

    @property
    def vocab_size(self) -> int:
        return len(self._id_to_token)

    def token_to_id(self, token: str) -> int:
        """The id of ``token``; ValueError if it is not in the vocabulary."""
        if token not in self._token_to_id:
            raise ValueError(f"token {token!r} is not in the vocabulary")
        return self._token_to_id[token]

    def id_to_token(self, token_id: int) -> str:
        """The token string of ``token_id``."""
        if not 0 <= token_id < self.vocab_size:
            raise ValueError(f"token_id must be in [0, {self.vocab_size}), got {token_id}")
        return self._id_to_token[token_id]

    def encode_raw(self, text: str) -> list[int]:
        ids, i, n = [], 0, len(text)
        while i < n:
            token = self._match_at(text, i)
            if token is not None:
                ids.append(self._token_to_id[token])
                i += len(token)
            else:
                ids.append(self._token_to_id.get(text[i], self.unk_token_id))
                i += 1
        return ids

    def _match_at(self, text: str, i: int) -> str | None:
        if text[i] == "<":
            for tok in self._specials_longest_first:
                if text.startswith(tok, i):
                    return tok
        if i > 0 and text[i - 1].isalnum():
            return None  # a word token must not continue a longer word
        for word in self._words_longest_first:
            end = i + len(word)
            if text.startswith(word, i) and (end == len(text) or not text[end].isalnum()):
                return word
        return None

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = False) -> str:
        out = []
        for t in ids:
            t = int(t)
            if not 0 <= t < self.vocab_size:
                raise ValueError(f"ids must be in [0, {self.vocab_size}), got {t}")
            if skip_special_tokens and t < len(self.special_tokens):
                continue
            out.append(self._id_to_token[t])
        return "".join(out)

    def to_dict(self) -> dict:
        """A JSON-able description; ``CharTokenizer.from_dict`` rebuilds the same tokenizer."""
        return {"type": CHAR_TOKENIZER_TYPE, "chars": self.chars, "words": self.words,
                "special_tokens": self.special_tokens}

    @classmethod
    def from_dict(cls, data: dict) -> "CharTokenizer":
        if data.get("type") != CHAR_TOKENIZER_TYPE:
            raise ValueError(f"data must describe a {CHAR_TOKENIZER_TYPE}, got type {data.get('type')!r}")
        return cls(chars=data["chars"], words=data["words"], special_tokens=data["special_tokens"])

    def save(self, path) -> None:
        """Write ``to_dict()`` as JSON to ``path``."""
        with open(path, "w") as f:
            json.dump(self.to_dict(), f, indent=2)


class HFTokenizer(Tokenizer):
    """A Hugging Face fast tokenizer (a ``tokenizer.json``) behind the ``Tokenizer`` interface.

    ``encode`` adds no special tokens unless asked (``add_bos``/``add_eos``), whatever the file's post-processor
    would do; the ids otherwise equal ``tokenizers.Tokenizer.encode(text, add_special_tokens=False).ids``.

    Args:
        tokenizer: a ``tokenizers.Tokenizer``.
        bos_token, eos_token, pad_token, unk_token: the special tokens' strings (None if absent).
    """

    def __init__(self, tokenizer, bos_token: str | None = None, eos_token: str | None = None,
                 pad_token: str | None = None, unk_token: str | None = None):
        self.tokenizer = tokenizer
        for name, token in (("bos", bos_token), ("eos", eos_token), ("pad", pad_token), ("unk", unk_token)):
            token_id = None
            if token is not None:
                token_id = tokenizer.token_to_id(token)
                if token_id is None:
                    raise ValueError(f"{name}_token {token!r} is not in the tokenizer's vocabulary")
            setattr(self, f"{name}_token_id", token_id)

    @classmethod
    def from_file(cls, path) -> "HFTokenizer":
        """Load ``path``: a ``tokenizer.json`` file, or a directory holding one.

        Special tokens come from ``tokenizer_config.json`` or ``special_tokens_map.json`` beside it, if present.
        Nothing is downloaded.
        """
        from tokenizers import Tokenizer as _HFTokenizer  # an optional dependency (the [hf] extra)

        path = Path(path)
        file = path / TOKENIZER_FILE if path.is_dir() else path
        if not file.is_file():
            raise FileNotFoundError(f"no tokenizer file at {file} (ncl only reads local files)")
        specials: dict[str, str | None] = {}
        for extra in ("special_tokens_map.json", "tokenizer_config.json"):
            cfg = file.parent / extra
            if cfg.is_file():
                with open(cfg) as f:
                    data = json.load(f)
                for key in ("bos_token", "eos_token", "pad_token", "unk_token"):
                    value = data.get(key)
                    if isinstance(value, dict):
                        value = value.get("content")
                    if isinstance(value, str):
                        specials[key] = value
        return cls(_HFTokenizer.from_file(str(file)), **specials)

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    def token_to_id(self, token: str) -> int:
        token_id = self.tokenizer.token_to_id(token)
        if token_id is None:
            raise ValueError(f"token {token!r} is not in the vocabulary")
        return token_id

    def id_to_token(self, token_id: int) -> str:
        token = self.tokenizer.id_to_token(token_id)
        if token is None:
            raise ValueError(f"token_id {token_id} is not in the vocabulary")
        return token

    def encode_raw(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = False) -> str:
        return self.tokenizer.decode([int(t) for t in ids], skip_special_tokens=skip_special_tokens)


def load_tokenizer(path) -> Tokenizer:
    """Load a tokenizer from a local path.

    - a directory with a ``tokenizer.json`` (a Hugging Face checkpoint) or such a file → ``HFTokenizer``;
    - a JSON file written by ``CharTokenizer.save`` → ``CharTokenizer``.
    """
    path = Path(path)
    if path.is_dir():
        if (path / TOKENIZER_FILE).is_file():
            return HFTokenizer.from_file(path)
        raise FileNotFoundError(f"no {TOKENIZER_FILE} in {path}")
    if not path.is_file():
        raise FileNotFoundError(f"no tokenizer file at {path}")
    with open(path) as f:
        data = json.load(f)
    if isinstance(data, dict) and data.get("type") == CHAR_TOKENIZER_TYPE:
        return CharTokenizer.from_dict(data)
    return HFTokenizer.from_file(path)
