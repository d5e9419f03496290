"""Where drafts come from, in the verifier's token space.

- ``propose_from_adapter``: drafter hidden -> prefill adapter (L1-L4) -> the
  verifier's LM head -> token (prefill hiding);
- ``propose_own_token``: the drafter's own greedy token (token-level SD, the
  seeds' failed baseline), never an id outside the shared vocabulary
  (EventGPT's ``<ev_patch>`` = 32000 is Video-LLaVA's ``<image>``);
- ``HeadDrafter``: a decode head (L5 / L5F / B1, EAGLE-style) predicting the
  verifier's next hidden state from its known states, token embeddings and the
  drafter's states; its own predictions stand in for unknown verifier states;
  it keeps its own KV cache, one new position per draft (``decoding.tree``
  grows EAGLE-2 draft trees on the same cache);
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


def reads_drafter(head: torch.nn.Module) -> bool:
    """Whether a decode head reads the drafter at all: its states per draft (L5, L5F) or once per pair (B1E)."""
    return bool(set(head.uses) & {"drafter", "drafter_prompt"})


CATCH_UP = 8
"""Known positions a cached head reads per call (padded to it, so a compiled step sees one shape)."""

COMPILED_VARIANTS = 64
"""Compiled variants of the head step one process may hold: per head (a benchmark loads several), the draft,
catch-up and tree widths, chain and tree masks. Dynamo's default (8) would send the rest back to eager."""


class HeadDrafter:
    """γ drafts per round from a decode head, none past a drafted EOS; ``adaptive`` > 0 stops a round once
    the head's top-1 probability through the verifier's LM head falls below it (EAGLE-2's confidence stop).

    A head with a ``step`` (L5, L5F, B1, B1E) keeps its own KV cache (``HeadCache``): per round it reads the
    positions the verifier has confirmed since the last round (their true states overwrite the slots the
    drafts used: the crop), then one position per draft. ``compile``: that step, head + verifier LM head,
    is one ``torch.compile``-d function of fixed shapes. A head that reads only the verifier (B1, B1E)
    drafts with no host sync: argmax, the adaptive stop's probabilities and the token history stay on the
    device until the round's drafts are read at once, and its round is one call of ``chain`` (the last catch-up
    chunk and every draft; compiled, one graph when ``gamma`` fixes the chain's length: a round with less room
    drafts ``gamma`` and keeps what fits). Heads without ``step`` (the oracles) re-run on the
    whole history per draft."""

    def __init__(self, head: torch.nn.Module, verifier_backend, adaptive: float = 0.0, compile: bool = False,
                 spare_slots: int = 0, gamma: int = 0):
        self.head = head
        self.gamma = gamma
        self.lm_head = verifier_backend.lm_head
        self.embed = verifier_backend.embed
        self.eos = verifier_backend.eos_token_id
        self.adaptive = adaptive
        self.uses_drafter = reads_drafter(head)
        self.drafter = None  # a drafter_states.DrafterStates
        self.drafter_reads = 0  # B1E: reads of the drafter's prompt state (once per pair)
        self.cached = hasattr(head, "step")
        if self.cached:
            from ..adapters.architectures import HeadCache

            self.cache = HeadCache(head, head.max_positions + CATCH_UP + max(spare_slots, gamma))
            self.slot_ids = torch.arange(self.cache.slots, device=_device(head))
            if compile:
                torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, COMPILED_VARIANTS)
            self.step = torch.compile(self._step, dynamic=False) if compile else self._step
            self.chain = torch.compile(self._chain, dynamic=False) if compile else self._chain
        else:
            self.predict = torch.compile(self._predict, dynamic=True) if compile else self._predict
        self.track: Track | None = None  # the verifier track of the pair being drafted for
        self.known = 0  # head positions whose slots hold the verifier's true states
        self.condition: torch.Tensor | None = None

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

    def _step(self, verifier_hidden, drafter_hidden, ids, positions, slots, visible, condition, cache):
        """The cached head over new positions, then the verifier's LM head: (predicted states [n, D], float32
        logits [n, V]). ``visible`` None: each position sees the slots up to its own (a chain)."""
        dtype = _dtype(self.head)
        if visible is None:
            visible = self.slot_ids <= slots[:, None]
        inputs = self.head.step_input(
            drafter_hidden=None if drafter_hidden is None else drafter_hidden.to(dtype),
            verifier_hidden=None if verifier_hidden is None else verifier_hidden.to(dtype), condition=condition)
        embeds = self.embed(ids).to(dtype) if self.head.use_token_embedding else None
        predicted = self.head.step(inputs, embeds, positions.clamp(max=self.head.max_positions - 1), slots, visible,
                                   cache)
        return predicted, self.lm_head(predicted.to(self.lm_head.weight.dtype)).float()

    def begin(self, verifier: Track) -> None:
        """A new pair (a new verifier track): the head's cache holds nothing of it; B1E reads the drafter's
        state after its prompt, once."""
        self.track, self.known, self.condition = verifier, 0, None
        if "drafter_prompt" in self.head.uses:
            self.drafter_reads += 1
            prompt_state = self.drafter.hidden_on(self.head, 0)[:1]
            self.condition = self.head.condition(prompt_state)

    def catch_up_chunks(self, verifier: Track, answer: list[int]) -> list[tuple]:
        """The head positions the verifier confirmed since the last round (the verifier's true states and the
        answer's tokens) as ``CATCH_UP``-padded step inputs ``(verifier_rows, drafter_rows, ids, slots, count)``,
        in order; the head then counts them as known (the caller runs them)."""
        if verifier is not self.track:
            self.begin(verifier)
        n = len(answer)
        if n > self.head.max_positions:
            from ..adapters.errors import AdapterError

            raise AdapterError(f"{self.head.level}: {n} answer positions exceed hyperparams.max_positions="
                               f"{self.head.max_positions}")
        device = self.slot_ids.device
        drafter_states = None
        if "drafter" in self.head.uses:  # the drafter after reading tokens <= t, for position t
            self.drafter.sync(answer)
            drafter_states = self.drafter.hidden_on(self.head, 1)
        chunks = []
        while True:
            start = min(self.known, n - 1)
            count = min(CATCH_UP, n - start)
            verifier_rows = torch.stack(verifier.hidden[start : start + count]).to(device)
            pad = CATCH_UP - count
            verifier_rows = torch.nn.functional.pad(verifier_rows, (0, 0, 0, pad))
            drafter_rows = None if drafter_states is None else torch.nn.functional.pad(
                drafter_states[start : start + count], (0, 0, 0, pad))
            ids = torch.tensor(answer[start : start + count] + [0] * pad, device=self.embed.weight.device)
            chunks.append((verifier_rows, drafter_rows, ids, self.slot_ids[start : start + CATCH_UP], count))
            self.known = start + count
            if self.known == n:
                return chunks

    def catch_up(self, verifier: Track, answer: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Write the head positions the verifier confirmed since the last round, ``CATCH_UP`` per padded call;
        return the last one's (predicted state, logits)."""
        for verifier_rows, drafter_rows, ids, slots, count in self.catch_up_chunks(verifier, answer):
            predicted, logits = self.step(verifier_rows, drafter_rows, ids, slots, slots, None, self.condition,
                                          self.cache)
        return predicted[count - 1], logits[count - 1]

    @torch.no_grad()
    def draft(self, verifier: Track, answer: list[int], k: int) -> list[int]:
        """Up to ``k`` drafts continuing ``answer``; the verifier has read all of it but its last token."""
        if self.cached:
            return self.draft_cached(verifier, answer, k)
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

    def round_inputs(self, verifier: Track, answer: list[int]) -> tuple:
        """The inputs of a compiled round (``chain``, ``tree.TreeDrafter.grow``) of a head reading only the
        verifier: the last catch-up chunk (verifier rows, ids, slots), its last real row and the answer length
        (0-d tensors: one graph for every round). Any earlier chunk (more than ``CATCH_UP`` new positions, rare)
        runs eagerly here, so a timed run never compiles."""
        *earlier, (verifier_rows, _, ids, slots, count) = self.catch_up_chunks(verifier, answer)
        for rows, _, chunk_ids, chunk_slots, _ in earlier:
            self._step(rows, None, chunk_ids, chunk_slots, chunk_slots, None, self.condition, self.cache)
        device = self.slot_ids.device
        return (verifier_rows, ids, slots, torch.tensor(count - 1, device=device),
                torch.tensor(len(answer), device=device))

    def after_known(self, verifier_rows, ids, catch_slots, last, condition, cache) -> tuple[torch.Tensor, torch.Tensor]:
        """The head over a catch-up chunk (``_step``'s inputs), then its row ``last`` (a 0-d tensor): the predicted
        state [1, D] and logits [V] after the last known position. The start of a compiled round."""
        predicted, logits = self._step(verifier_rows, None, ids, catch_slots, catch_slots, None, condition, cache)
        return predicted.index_select(0, last.view(1)), logits.index_select(0, last.view(1))[0]

    def _chain(self, verifier_rows, ids, catch_slots, last, n, condition, cache, length: int):
        """A round of a head reading only the verifier: the last catch-up chunk, then ``length`` greedy drafts at
        answer positions ``n``, ``n + 1``, ... (``n`` a 0-d tensor); their tokens and top-1 probabilities."""
        predicted, logits = self.after_known(verifier_rows, ids, catch_slots, last, condition, cache)
        tokens, confidence = [], []
        for i in range(length):
            tokens.append(logits.argmax(-1, keepdim=True))
            confidence.append(logits.softmax(-1).max(-1, keepdim=True).values)
            if i < length - 1:
                slot = (n + i).view(1)
                predicted, logits = self._step(predicted, None, tokens[-1], slot, slot, None, condition, cache)
                logits = logits[0]
        return torch.cat(tokens), torch.cat(confidence)

    def draft_cached(self, verifier: Track, answer: list[int], k: int) -> list[int]:
        """``draft`` on the head's KV cache: one new position per draft."""
        n = len(answer)
        room = min(k, self.head.max_positions - n + 1)
        if "drafter" not in self.head.uses:  # no host sync per draft: one call for the round
            if self.gamma and k > self.gamma:
                raise ValueError(f"{k} drafts asked of a head drafting chains of gamma={self.gamma}")
            tokens, confidence = self.chain(*self.round_inputs(verifier, answer), self.condition, self.cache,
                                            self.gamma or room)
            return self.stop(tokens.tolist()[:room], confidence.tolist()[:room] if self.adaptive else None)
        predicted, logits = self.catch_up(verifier, answer)
        tokens, confidence = [], []
        for i in range(room):  # the drafter reads each draft: its state is the next position's input
            token = logits.argmax(-1, keepdim=True)
            tokens.append(token)
            if self.adaptive:
                confidence.append(logits.softmax(-1).max(-1, keepdim=True).values)
            if i == k - 1 or int(token) == self.eos:
                break
            self.drafter.read([int(token)])
            drafter_row = self.drafter.hidden_on(self.head, -1)
            slot = self.slot_ids[n + i : n + i + 1]
            predicted, logits = self.step(predicted[None], drafter_row, token, slot, slot, None, self.condition,
                                          self.cache)
            predicted, logits = predicted[0], logits[0]
        return self.stop(torch.cat(tokens).tolist(), torch.cat(confidence).tolist() if self.adaptive else None)

    def stop(self, drafts: list[int], confidence: list[float] | None) -> list[int]:
        """The round's drafts up to the first EOS (kept) and, with ``adaptive``, before the first draft after the
        first whose confidence is below it."""
        if self.eos in drafts:
            drafts = drafts[: drafts.index(self.eos) + 1]
        if confidence is not None:
            low = next((i for i, p in enumerate(confidence[: len(drafts)]) if i and p < self.adaptive), None)
            drafts = drafts if low is None else drafts[:low]
        return drafts
