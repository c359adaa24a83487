"""Key/value cache for incremental, block-causal decoding with the AC predictor.

The predictor's sequence is a run of equal-size time steps (``2 + N`` tokens each: action, state,
N frame tokens). Under the block-causal mask, keys and values of steps <= t never change once
computed, so predicting step t+1 only needs the new step's tokens plus the cached keys/values of
all earlier steps. Each layer keeps ``k, v`` of shape (B, heads, L, head_dim) with
``L = num_steps * tokens_per_step``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class KVCache:
    """Per-layer keys and values of all steps processed so far.

    ``append`` never writes into existing tensors (it concatenates), so a shallow ``copy`` or a
    ``truncated`` view of a cache can be extended independently of the original.
    """

    depth: int
    tokens_per_step: int
    keys: list[Tensor | None] = field(default_factory=list)
    values: list[Tensor | None] = field(default_factory=list)
    num_steps: int = 0
    # False: a read-only view (see ``read_only``): ``append`` returns past + new keys/values
    # without storing them and ``advance`` does not count, so nothing is kept after a forward
    store: bool = True

    def __post_init__(self) -> None:
        if self.depth < 1 or self.tokens_per_step < 1:
            raise ValueError(
                f"depth and tokens_per_step must be >= 1, got {self.depth}, {self.tokens_per_step}"
            )
        if not self.keys:
            self.keys = [None] * self.depth
            self.values = [None] * self.depth

    @property
    def batch_size(self) -> int:
        """Batch size of the cached tensors (0 while empty)."""
        return 0 if self.keys[0] is None else int(self.keys[0].shape[0])

    def append(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Add one layer's new keys/values; returns all keys/values of that layer.

        Args:
            layer: block index.
            k, v: (B, heads, L_new, head_dim) for the new tokens.

        Returns:
            (k_all, v_all): (B, heads, L_old + L_new, head_dim).
        """
        old_k, old_v = self.keys[layer], self.values[layer]
        if old_k is not None:
            if old_k.shape[0] != k.shape[0]:
                raise ValueError(
                    f"cache batch {old_k.shape[0]} != new batch {k.shape[0]}; call expand() first"
                )
            k = torch.cat([old_k, k], dim=2)
            v = torch.cat([old_v, v], dim=2)
        if self.store:
            self.keys[layer], self.values[layer] = k, v
        return k, v

    def advance(self, steps: int) -> None:
        """Record that ``steps`` new time steps were appended to every layer."""
        if self.store:
            self.num_steps += steps

    def read_only(self) -> KVCache:
        """A view for a last step whose keys/values no later step needs (the last step of a
        rollout): the step attends to the cached past as usual, but its own keys and values
        are dropped layer by layer instead of being kept until the cache goes (for the
        published predictor at 800 samples that is 24 layers x 2 x 800 x 258 x 1024 values,
        ~20 GB in bf16)."""
        return KVCache(
            self.depth, self.tokens_per_step, list(self.keys), list(self.values),
            self.num_steps, store=False,
        )  # fmt: skip

    def copy(self) -> KVCache:
        """Shallow copy: shares tensors, independent lists (safe because append concatenates)."""
        return KVCache(
            self.depth, self.tokens_per_step, list(self.keys), list(self.values), self.num_steps,
            store=self.store,
        )  # fmt: skip

    def truncated(self, num_steps: int) -> KVCache:
        """A cache holding only the first ``num_steps`` steps (views, no copy)."""
        if not 0 < num_steps <= self.num_steps:
            raise ValueError(f"num_steps must be in [1, {self.num_steps}], got {num_steps}")
        length = num_steps * self.tokens_per_step
        keys = [k[:, :, :length] for k in self.keys]
        values = [v[:, :, :length] for v in self.values]
        return KVCache(self.depth, self.tokens_per_step, keys, values, num_steps)

    def expand(self, samples: int) -> KVCache:
        """Broadcast a cache over ``samples`` per batch element: B -> B * samples.

        Row ``b * samples + s`` of the result is row ``b`` of this cache (the order of a
        (B, S) flatten). Uses ``expand`` + ``reshape`` (one copy per layer, no recompute).
        """
        if samples < 1:
            raise ValueError(f"samples must be >= 1, got {samples}")

        def rep(t: Tensor | None) -> Tensor | None:
            if t is None:
                return None
            b = t.shape[0]
            return t[:, None].expand(b, samples, *t.shape[1:]).reshape(b * samples, *t.shape[1:])

        keys = [rep(k) for k in self.keys]
        values = [rep(v) for v in self.values]
        return KVCache(self.depth, self.tokens_per_step, keys, values, self.num_steps)
