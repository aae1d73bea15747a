"""A key/value cache for incremental decoding."""

from __future__ import annotations

import torch


class KVCache:
    """Per-layer keys and values of the tokens seen so far, for incremental decoding.

    Under ``torch.no_grad`` the cache keeps a growing buffer per layer (capacity doubles when full) and writes new
    entries in place, so a decode step costs no copy of the past. With autograd on it concatenates instead, so
    gradients through earlier steps stay valid.

    Args:
        num_layers: L, the number of attention layers that will use the cache.
        capacity: initial buffer length S_max per layer (optional; grows as needed).

    Shapes:
        ``update(layer, k, v)``: k, v: (B, G, T, hd) new entries → (B, G, S, hd) all entries so far,
        S = ``length(layer)``.
    """

    def __init__(self, num_layers: int, capacity: int | None = None):
        if num_layers <= 0:
            raise ValueError(f"num_layers must be positive, got {num_layers!r}")
        self.num_layers = num_layers
        self.capacity = capacity
        self._keys: list[torch.Tensor | None] = [None] * num_layers
        self._values: list[torch.Tensor | None] = [None] * num_layers
        self._lengths = [0] * num_layers

    def length(self, layer: int = 0) -> int:
        """S: the number of cached positions of ``layer``."""
        return self._lengths[layer]

    def __len__(self) -> int:
        return self._lengths[0]

    def reset(self) -> None:
        """Forget everything (buffers are freed)."""
        self.__init__(self.num_layers, self.capacity)

    def keys(self, layer: int) -> torch.Tensor | None:
        """The cached keys of ``layer``: (B, G, S, hd), or None if empty."""
        k = self._keys[layer]
        return None if k is None else k[:, :, : self._lengths[layer]]

    def values(self, layer: int) -> torch.Tensor | None:
        """The cached values of ``layer``: (B, G, S, hd), or None if empty."""
        v = self._values[layer]
        return None if v is None else v[:, :, : self._lengths[layer]]

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append ``k``, ``v`` (B, G, T, hd) to ``layer`` and return all its keys and values (B, G, S, hd)."""
        if not 0 <= layer < self.num_layers:
            raise ValueError(f"layer must be in [0, {self.num_layers}), got {layer}")
        old, new = self._lengths[layer], k.shape[2]
        buf_k, buf_v = self._keys[layer], self._values[layer]
        if buf_k is not None and (buf_k.shape[:2] != k.shape[:2] or buf_k.shape[3] != k.shape[3]):
            raise ValueError(f"k has shape {tuple(k.shape)}, but layer {layer} caches "
                             f"{tuple(buf_k.shape[:2])} x S x {buf_k.shape[3]}")
        if torch.is_grad_enabled():
            # Functional path: in-place writes would invalidate tensors saved for backward.
            if buf_k is None:
                buf_k, buf_v = k, v
            else:
                buf_k = torch.cat((buf_k[:, :, :old], k), dim=2)
                buf_v = torch.cat((buf_v[:, :, :old], v), dim=2)
        else:
            if buf_k is None or buf_k.shape[2] < old + new:
                cap = max(old + new, 2 * (0 if buf_k is None else buf_k.shape[2]), self.capacity or 0)
                shape = (*k.shape[:2], cap, k.shape[3])
                grown_k, grown_v = k.new_empty(shape), v.new_empty(shape)
                if old:
                    grown_k[:, :, :old] = buf_k[:, :, :old]
                    grown_v[:, :, :old] = buf_v[:, :, :old]
                buf_k, buf_v = grown_k, grown_v
            buf_k[:, :, old: old + new] = k
            buf_v[:, :, old: old + new] = v
        self._keys[layer], self._values[layer] = buf_k, buf_v
        self._lengths[layer] = old + new
        return buf_k[:, :, : old + new], buf_v[:, :, : old + new]
