"""The verifier's forward over a static KV cache, eager or compiled: the step a GPU user's peer runs.

transformers' ``generate(cache_implementation="static")`` compiles its decode
step on CUDA; speculative decoding that verifies with an eager forward over a
growing DynamicCache loses to it (DESIGN §8, issue numbers: 7.0 ms per token
compiled against 21.3 eager at 7B). ``StaticStep`` gives the engine the same
kind of step: one ``StaticCache`` per verifier, allocated once at its largest
size (``allocate``, before any timing: a compiled graph keeps the cache
tensors' addresses, so a reallocation would recompile and, on CUDA, re-record),
and an optional ``torch.compile`` of "model forward + LM head"
(``mode="reduce-overhead"`` on CUDA, which adds CUDA graphs; inductor's
default on CPU).

Widths: a forward of n tokens runs at the smallest of a few fixed ``buckets``
>= n (1, powers of two, the largest width), padded with copies of the last
token; the padding's outputs are dropped and its cache rows cropped away, so
the graphs recorded are one per bucket and ``warm`` records every bucket
before timing. Threads: dynamo guards on ``torch.get_num_threads()`` (its
GLOBAL_STATE guard, torch 2.13), so a step compiled at 2 threads and called at
1 compiles 1-thread inductor kernels of its own (tested); each thread count a
configuration uses is warmed.

Cropping a static cache is moving its write position back: entries past it
are masked by the causal mask (keys longer than the query position) and
overwritten by the next forward. transformers 5.23's ``StaticLayer.update``
writes at its ``cumulative_length`` counter and ignores ``cache_position``, so
``crop`` sets that counter (a test pins this behaviour of the pinned version).
"""

from __future__ import annotations

import torch
from transformers import StaticCache

from ..models.backend import Backend


def buckets(widest: int) -> list[int]:
    """The padded verify widths: 1, the powers of two below ``widest``, and ``widest``."""
    out, width = [1], 2
    while width < widest:
        out.append(width)
        width *= 2
    return sorted(set(out + [widest]))


class StaticStep:
    """One verifier's reusable static cache and its forward (``compile``: torch.compile-d, CUDA graphs on CUDA)."""

    def __init__(self, backend: Backend, compile: bool = False, widest: int = 1):
        self.backend = backend
        self.cache: StaticCache | None = None
        self.cache_len = 0
        self.compiled = compile
        self.buckets = buckets(widest)
        self.graphed = compile and backend.device.type == "cuda"
        self.forward = torch.compile(self._forward, mode="reduce-overhead" if self.graphed else None) if compile \
            else self._forward

    def _forward(self, ids: torch.Tensor, positions: torch.Tensor, cache: StaticCache):
        out = self.backend.model.model(input_ids=ids, position_ids=positions, cache_position=positions[0],
                                       past_key_values=cache, use_cache=True)
        hidden = out.last_hidden_state[0]
        return hidden, self.backend.logits(hidden)

    def allocate(self, length: int) -> None:
        """The one cache, holding ``length`` positions (the longest prompt, answer and padded verify of a run)."""
        self.cache_len = length
        self.cache = StaticCache(config=self.backend.model.config.get_text_config(), max_cache_len=length)

    def fresh_cache(self, length: int) -> StaticCache:
        """The cache emptied; ValueError if it cannot hold ``length`` positions (allocate it once, larger)."""
        if self.cache is None:
            self.allocate(length)
        if length > self.cache_len:
            raise ValueError(f"the static cache holds {self.cache_len} positions, {length} needed: allocate it at the "
                             "run's largest size before timing (a reallocation recompiles)")
        if self.cache.is_initialized:
            self.cache.reset()
        return self.cache

    def bucket(self, n: int) -> int:
        return next((b for b in self.buckets if b >= n), n)

    def __call__(self, ids: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Hidden states [n, D] and float32 logits [n, V] of ``ids`` [1, n] at ``positions`` [1, n]; the cache
        then holds them at ``positions`` (the padding cropped)."""
        n = ids.shape[1]
        width = self.bucket(n)
        if width > n:
            ids = torch.cat([ids, ids[:, -1:].expand(1, width - n)], 1)
            positions = positions[0, 0] + torch.arange(width, device=positions.device)[None]
        hidden, logits = self.forward(ids, positions, self.cache)
        if width > n:
            self.crop(positions[0, 0] + n)  # a 0-d tensor: no host sync
        if self.graphed or width > n:  # a CUDA graph's outputs are overwritten by its next replay
            return hidden[:n].clone(), logits[:n].clone()
        return hidden, logits

    def crop(self, length: int | torch.Tensor) -> None:
        """Next forward writes at ``length``: positions past it are masked, then overwritten."""
        for layer in self.cache.layers:
            layer.cumulative_length.fill_(length)

    @torch.no_grad()
    def warm(self, start: int) -> None:
        """One forward of every bucket at ``start`` (the cache holds a prompt of that length), then the write
        position back at ``start``: compiles (and on CUDA records) every width before timing."""
        for width in self.buckets:
            ids = torch.zeros(1, width, dtype=torch.long, device=self.backend.device)
            self.forward(ids, start + torch.arange(width, device=self.backend.device)[None], self.cache)
            self.crop(start)
