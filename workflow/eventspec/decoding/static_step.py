"""The verifier's forward over a static KV cache, eager or compiled: the step a GPU user's peer runs.

transformers' ``generate(cache_implementation="static")`` compiles its decode
step on CUDA; speculative decoding that verifies with an eager forward over a
growing DynamicCache loses to it (DESIGN §8, issue numbers: 7.0 ms per token
compiled against 21.3 eager at 7B). ``StaticStep`` gives the engine the same
kind of step: one ``StaticCache`` per verifier, allocated once and reused for
every prompt (a compiled graph keeps the cache tensors' addresses), written at
the position the caller passes, and an optional ``torch.compile`` of
"model forward + LM head" (``mode="reduce-overhead"`` on CUDA, which adds
CUDA graphs; inductor's default on CPU). A k-token verify forward and a
1-token decode forward are two shapes; dynamo compiles each once.

Cropping a static cache is moving its write position back: entries past it
are masked by the causal mask (keys longer than the query position) and
overwritten by the next forward.
"""

from __future__ import annotations

import torch
from transformers import StaticCache

from ..models.backend import Backend

ROUND_TO = 256
"""Cache lengths are rounded up to a multiple of this, so prompts of similar lengths share one allocation."""


class StaticStep:
    """One verifier's reusable static cache and its forward (``compile``: torch.compile-d, CUDA graphs on CUDA)."""

    def __init__(self, backend: Backend, compile: bool = False):
        self.backend = backend
        self.cache: StaticCache | None = None
        self.cache_len = 0
        self.graphed = compile and backend.device.type == "cuda"
        self.forward = torch.compile(self._forward, mode="reduce-overhead" if self.graphed else None) if compile \
            else self._forward

    def _forward(self, ids: torch.Tensor, positions: torch.Tensor, cache: StaticCache):
        out = self.backend.model.model(input_ids=ids, position_ids=positions, cache_position=positions[0],
                                       past_key_values=cache, use_cache=True)
        hidden = out.last_hidden_state[0]
        return hidden, self.backend.logits(hidden)

    def fresh_cache(self, length: int) -> StaticCache:
        """The verifier's cache emptied, holding at least ``length`` positions (reallocated only when too short)."""
        if self.cache is None or self.cache_len < length:
            self.cache_len = -(-length // ROUND_TO) * ROUND_TO
            self.cache = StaticCache(config=self.backend.model.config.get_text_config(), max_cache_len=self.cache_len)
        elif self.cache.is_initialized:
            self.cache.reset()
        return self.cache

    def __call__(self, ids: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Hidden states [n, D] and float32 logits [n, V] of ``ids`` [1, n] at ``positions`` [1, n]."""
        hidden, logits = self.forward(ids, positions, self.cache)
        if self.graphed:  # a CUDA graph's outputs are overwritten by its next replay
            return hidden.clone(), logits.clone()
        return hidden, logits

    def crop(self, length: int) -> None:
        """Next forward writes at ``length``: positions past it are masked, then overwritten."""
        for layer in self.cache.layers:
            layer.cumulative_length.fill_(length)
