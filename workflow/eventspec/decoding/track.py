"""One model's batch-1 decoding state: the fast path the engine runs on.

A ``Track`` holds the KV cache of the prompt plus the answer tokens the model
has read, and the hidden state (and logits) after each of them. Batch 1 has no
padding, so a forward passes a position counter instead of a growing 2-D
attention mask. ``crop`` rolls cache, tokens, hidden states and logits back
together: the state after a crop is exactly the state a fresh prefill of the
kept text would give (tested), with no stale hidden state or logits. A
verifier track may run on a ``StaticStep`` (static cache, optionally a
compiled forward) instead of a DynamicCache; cropping it moves the cache's
write position back.

Hidden-state convention: ``hidden[i]`` is the final-normed state after the
prompt and ``read[:i]``; ``argmax(lm_head(hidden[i]))`` is the model's greedy
answer token ``i``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..models.backend import Backend, PrefillInputs
from .static_step import StaticStep


@dataclass
class Track:
    backend: Backend
    cache: object  # a transformers Cache (DynamicCache)
    prompt_len: int
    hidden: list[torch.Tensor]  # [D] per position: after the prompt, then after each read token
    logits: list[torch.Tensor | None]  # float32 [V] per position (None where not computed)
    read: list[int] = field(default_factory=list)
    step: StaticStep | None = None  # the verifier's static-cache (maybe compiled) forward; None: DynamicCache

    @property
    def length(self) -> int:
        """Positions in the cache."""
        return self.prompt_len + len(self.read)

    def last_logits(self) -> torch.Tensor:
        if self.logits[-1] is None:
            self.logits[-1] = self.backend.logits(self.hidden[-1])
        return self.logits[-1]


@torch.no_grad()
def prefill(backend: Backend, inputs: PrefillInputs, step: StaticStep | None = None, room: int = 0) -> Track:
    """Run one prompt (batch 1, visual tokens included); logits at its last position only. With ``step`` the
    prompt goes into its static cache, sized for ``room`` more positions."""
    if inputs.input_ids.shape[0] != 1:
        raise ValueError(f"the decoding engine runs batch 1, got a batch of {inputs.input_ids.shape[0]}")
    cache = None if step is None else step.fresh_cache(inputs.input_ids.shape[1] + room)
    state = backend.prefill(inputs, cache)
    return Track(backend, state.cache, state.length, [state.hidden[0]], [state.logits[0]], step=step)


@torch.no_grad()
def forward(track: Track, tokens: list[int] | torch.Tensor, logits: bool = True
            ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Append ``tokens`` (``read`` keeps them as given; the model reads ``Backend.embeddable`` ids: another
    model's ids it has no row for become its unk); return their hidden
    states [n, D] and float32 logits [n, V] (None if ``logits=False``). A 1-D tensor of ids already on the
    model's device is read without a host round trip (``read`` then holds 0-d tensors: the greedy loop)."""
    backend = track.backend
    ids = tokens.view(1, -1) if isinstance(tokens, torch.Tensor) else torch.tensor([tokens], dtype=torch.long,
                                                                                     device=backend.device)
    ids = backend.embeddable(ids)
    positions = torch.arange(track.length, track.length + len(tokens), device=backend.device)[None]
    if track.step is not None:
        hidden, all_logits = track.step(ids, positions)
        all_logits = all_logits if logits else None
    else:
        out = backend.model.model(input_ids=ids, position_ids=positions, past_key_values=track.cache, use_cache=True)
        hidden = out.last_hidden_state[0]
        all_logits = backend.logits(hidden) if logits else None
    track.read.extend(tokens)
    track.hidden.extend(hidden.unbind(0))
    track.logits.extend(all_logits.unbind(0) if logits else [None] * len(tokens))
    return hidden, all_logits


def crop(track: Track, n_read: int) -> None:
    """Keep the prompt and the first ``n_read`` answer tokens read."""
    if n_read < len(track.read):
        if track.step is not None:
            track.step.crop(track.prompt_len + n_read)
        else:
            track.cache.crop(-(len(track.read) - n_read))
        del track.read[n_read:], track.hidden[n_read + 1 :], track.logits[n_read + 1 :]


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def sync(track: Track, tokens: list[int], logits: bool = False) -> None:
    """Make ``track`` have read exactly ``tokens``: crop to the common prefix, read the rest in one forward."""
    keep = common_prefix(track.read, tokens)
    crop(track, keep)
    if len(tokens) > keep:
        forward(track, tokens[keep:], logits)
