"""Where drafts come from, in the verifier's token space.

- ``propose_from_adapter``: drafter hidden -> prefill adapter (L1-L4) -> the
  verifier's LM head -> token (prefill hiding);
- ``propose_own_token``: the drafter's own greedy token (token-level SD, the
  seeds' failed baseline), never an id outside the shared vocabulary
  (EventGPT's ``<ev_patch>`` = 32000 is Video-LLaVA's ``<image>``);
- ``HeadDrafter``: a decode head (L5 / L5F / B1, EAGLE-style) predicting the
  verifier's next hidden state from its known states, token embeddings and the
  drafter's states; its own predictions stand in for unknown verifier states
  and it re-runs on the short answer history each step (no head KV cache);
- ``TokenDrafter``: ``propose_own_token`` during decoding.

Adapters follow the ``eventspec.adapters`` contract: prefill adapters map
``drafter_hidden [B,T,Dd]`` to the verifier hidden at the same position;
decode heads take ``drafter_hidden`` / ``verifier_hidden`` / ``token_embeds``
(whichever ``.uses`` / ``.use_token_embedding`` name) and output at t the
predicted verifier hidden at t+1. Both are causal.

Devices: an adapter or head sits beside the verifier LM head it feeds, in the
verifier's dtype (``load_adapter(..., device, dtype)``); the drafter may run on
another device (two GPUs: drafter cuda:1, verifier cuda:0). Drafter states
reach the head's device once per round (``HeadDrafter``: the synced history
in one copy, then each new state once), so no call mixes devices. Decode-phase
sources read the drafter through ``drafter_states.DrafterStates`` (its track
in this process, or resident in the drafter worker).
"""

from __future__ import annotations

from typing import Callable

import torch

from .track import Track, forward


def _float_tensor(module: torch.nn.Module) -> torch.Tensor | None:
    return next((t for t in (*module.parameters(), *module.buffers()) if t.is_floating_point()), None)


def _dtype(module: torch.nn.Module) -> torch.dtype:
    """The module's float dtype (float32 for a module without float tensors)."""
    tensor = _float_tensor(module)
    return torch.float32 if tensor is None else tensor.dtype


def _device(module: torch.nn.Module) -> torch.device:
    """Where the module's tensors are (the CPU for a module without float tensors)."""
    tensor = _float_tensor(module)
    return torch.device("cpu") if tensor is None else tensor.device


def on_module(states: list[torch.Tensor], module: torch.nn.Module) -> torch.Tensor:
    """``states`` [D] stacked as [T, D] in ``module``'s dtype on its device: one copy across devices."""
    return torch.stack(states).to(_device(module), _dtype(module))


def greedy_token(logits: torch.Tensor) -> int:
    return int(logits.argmax(-1))


@torch.no_grad()
def propose_from_adapter(adapter: torch.nn.Module, lm_head: torch.nn.Module) -> Callable[[Track], int]:
    """Next draft from the drafter's answer-position states (the adapter re-runs on the whole short history)."""

    def propose(drafter: Track) -> int:
        predicted = adapter(on_module(drafter.hidden, adapter)[None])[0, -1]
        return greedy_token(lm_head(predicted.to(lm_head.weight.dtype)))

    return propose


def draftable_vocab(drafter, verifier_vocab: int | None = None) -> int:
    """How many ids the drafter may propose as its own tokens: its tokenizer's base vocabulary (tokens added on
    top, like EventGPT's ``<ev_patch>``, left out), within the verifier's base vocabulary where given."""
    own = drafter.tokenizer.vocab_size
    return own if verifier_vocab is None else min(own, verifier_vocab)


def propose_own_token(drafter: Track, vocab: int | None = None) -> int:
    """The drafter's greedy token among its first ``vocab`` ids (default ``draftable_vocab``)."""
    vocab = draftable_vocab(drafter.backend) if vocab is None else vocab
    return greedy_token(drafter.last_logits()[:vocab])


@torch.no_grad()
def draft_while(
    drafter: Track, propose: Callable[[Track], int], k_max: int, should_stop: Callable[[], bool], feed_own: bool = False,
    eos: int | None = None,
) -> list[int]:
    """Drafts from ``drafter`` until ``k_max`` exist, one is ``eos`` or ``should_stop()`` (checked before every
    drafter step).

    Each draft is fed back to the drafter (``feed_own``: the drafter reads its
    own greedy token instead, keeping its own text as the seeds' variant did).
    """
    drafts: list[int] = []
    while len(drafts) < k_max and not should_stop():
        drafts.append(propose(drafter))
        if len(drafts) == k_max or drafts[-1] == eos or should_stop():
            break
        forward(drafter, [propose_own_token(drafter) if feed_own else drafts[-1]], logits=False)
    return drafts


class TokenDrafter:
    """Token-level SD: the drafter's own greedy tokens as drafts (needs a shared vocabulary)."""

    uses_drafter = True

    def __init__(self):
        self.drafter = None  # a drafter_states.DrafterStates

    def draft(self, verifier: Track, answer: list[int], k: int) -> list[int]:
        return self.drafter.own_drafts(answer, k)


class HeadDrafter:
    """γ drafts per round from a decode head, none past a drafted EOS; ``adaptive`` > 0 stops a round once
    the head's top-1 probability through the verifier's LM head falls below it (EAGLE-2's confidence stop).
    ``compile``: head + LM head run as one ``torch.compile``-d step (dynamic in the history length)."""

    def __init__(self, head: torch.nn.Module, verifier_backend, adaptive: float = 0.0, compile: bool = False):
        self.head = head
        self.predict = torch.compile(self._predict, dynamic=True) if compile else self._predict
        self.lm_head = verifier_backend.lm_head
        self.embed = verifier_backend.embed
        self.eos = verifier_backend.eos_token_id
        self.adaptive = adaptive
        self.uses_drafter = "drafter" in head.uses
        self.drafter = None  # a drafter_states.DrafterStates

    def _inputs(self, verifier_hidden: list[torch.Tensor], drafter_hidden: torch.Tensor | None,
                tokens: list[int]) -> dict:
        """The head's inputs; ``drafter_hidden`` [T, D] is already on the head (``on_module``)."""
        dtype = _dtype(self.head)
        inputs = {}
        if "verifier" in self.head.uses:
            inputs["verifier_hidden"] = torch.stack(verifier_hidden)[None].to(dtype)
        if "drafter" in self.head.uses:
            inputs["drafter_hidden"] = drafter_hidden[None]
        if self.head.use_token_embedding:
            ids = torch.tensor([tokens], device=self.embed.weight.device)
            inputs["token_embeds"] = self.embed(ids).to(dtype)
        return inputs

    def _predict(self, inputs: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """The head's predicted next verifier state and its float32 logits through the verifier's LM head."""
        predicted = self.head(**inputs)[0, -1]
        return predicted, self.lm_head(predicted.to(self.lm_head.weight.dtype)).float()

    @torch.no_grad()
    def draft(self, verifier: Track, answer: list[int], k: int) -> list[int]:
        """Up to ``k`` drafts continuing ``answer``; the verifier has read all of it but its last token."""
        known = list(verifier.hidden)  # h_v[0 .. len(answer)-1]
        tokens = list(answer)
        drafter_hidden = None
        if self.uses_drafter:
            self.drafter.sync(answer)
            drafter_hidden = self.drafter.hidden_on(self.head, 1)  # once per round
        drafts: list[int] = []
        while len(drafts) < k:
            predicted, logits = self.predict(self._inputs(known, drafter_hidden, tokens))
            if self.adaptive and drafts and logits.softmax(-1).max() < self.adaptive:
                break
            drafts.append(greedy_token(logits))
            if len(drafts) == k or drafts[-1] == self.eos:
                break
            known.append(predicted.to(known[0].dtype))
            tokens.append(drafts[-1])
            if self.uses_drafter:
                self.drafter.read([drafts[-1]])
                drafter_hidden = torch.cat([drafter_hidden, self.drafter.hidden_on(self.head, -1)])
        return drafts
