"""One step-by-step interface over both models, and greedy generation built on it.

In the style of gpt-fast's generate.py: ``prefill`` runs the prompt (visual
tokens included) and returns a ``DecodeState``; ``forward`` appends any number
of tokens at once (one for decoding, several for verifying drafts); ``crop``
rolls the state back. Hidden-state convention: ``h[t]`` is the final-normed
last-layer state at the position whose logits produce token ``t``, so
``argmax(lm_head(h[t])) == token[t]`` under greedy decoding.

Batches are left-padded. Position ids follow the attention mask (pads get 0,
real tokens count from 0), exactly as transformers' ``generate`` does, so a
row decodes the same tokens alone or in a batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from transformers import DynamicCache


@dataclass
class PrefillInputs:
    """Tokenised, left-padded prompts plus the model's visual tensor."""

    input_ids: torch.Tensor  # [B, L]
    attention_mask: torch.Tensor  # [B, L]
    visual: dict[str, torch.Tensor]  # e.g. {"pixel_values_videos": [B, F, 3, S, S]}


@dataclass
class DecodeState:
    cache: DynamicCache
    attention_mask: torch.Tensor  # [B, positions in cache]
    hidden: torch.Tensor  # [B, D] at the last position
    logits: torch.Tensor  # [B, V] at the last position

    @property
    def length(self) -> int:
        return self.attention_mask.shape[1]


@dataclass
class Generation:
    tokens: torch.Tensor  # [B, T] int64, padded with pad_id after EOS / length
    hidden: torch.Tensor  # [B, T, D]: hidden[:, t] produced tokens[:, t]
    lengths: torch.Tensor  # [B] tokens generated, EOS included


class Backend:
    """A transformers multimodal causal LM (``model.model`` + ``model.lm_head``) driven step by step.

    ``model.model(...)`` must return ``last_hidden_state`` (final-normed) and
    ``past_key_values``; the visual tensor is passed on the prefill step only.
    """

    def __init__(self, model, tokenizer, device: str | torch.device = "cpu"):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.device = torch.device(device)

    @property
    def lm_head(self) -> torch.nn.Module:
        return self.model.get_output_embeddings()

    @property
    def embed(self) -> torch.nn.Module:
        return self.model.get_input_embeddings()

    @property
    def hidden_size(self) -> int:
        return self.lm_head.in_features

    @property
    def eos_token_id(self) -> int:
        return self.tokenizer.eos_token_id

    @property
    def pad_token_id(self) -> int:
        return self.tokenizer.pad_token_id

    def prompt(self, question: str) -> str:
        """The model's chat prompt for ``question``, visual placeholders expanded."""
        raise NotImplementedError

    def visual_inputs(self, visual: np.ndarray) -> dict[str, torch.Tensor]:
        """The model's visual keyword arguments for a batch of uint8 images [B, N, H, W, 3]."""
        raise NotImplementedError

    def prepare(self, visual: np.ndarray, questions: list[str]) -> PrefillInputs:
        """Left-padded inputs for B (window, question) pairs."""
        enc = self.tokenizer([self.prompt(q) for q in questions], return_tensors="pt", padding=True)
        return PrefillInputs(enc["input_ids"], enc["attention_mask"], self.visual_inputs(visual))

    def _run(self, input_ids, attention_mask, cache, visual=None) -> torch.Tensor:
        """Final-normed hidden states [B, n, D] of ``input_ids`` appended to ``cache``."""
        position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, -input_ids.shape[1] :]
        out = self.model.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=cache,
            use_cache=True,
            **(visual or {}),
        )
        return out.last_hidden_state

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """float32 logits of ``hidden`` [..., D] through the LM head (computed in the model's dtype)."""
        return self.lm_head(hidden).float()

    @torch.no_grad()
    def prefill(self, inputs: PrefillInputs) -> DecodeState:
        ids = inputs.input_ids.to(self.device)
        mask = inputs.attention_mask.to(self.device)
        visual = {k: v.to(self.device, self._visual_dtype()) for k, v in inputs.visual.items()}
        cache = DynamicCache(config=self.model.config.get_text_config())
        last = self._run(ids, mask, cache, visual)[:, -1]
        return DecodeState(cache, mask, last, self.logits(last))

    @torch.no_grad()
    def forward(
        self, tokens: torch.Tensor, state: DecodeState, logits: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Append ``tokens`` [B, n]; return their hidden states [B, n, D] and logits [B, n, V].

        With ``logits=False`` (teacher forcing reads hidden states only) no
        full-vocabulary logits are computed except at the last position, which
        keeps ``state`` ready for the next step; the second value is then None.
        """
        tokens = tokens.to(self.device)
        state.attention_mask = torch.cat([state.attention_mask, torch.ones_like(tokens)], dim=1)
        hidden = self._run(tokens, state.attention_mask, state.cache)
        all_logits = self.logits(hidden) if logits else None
        state.hidden = hidden[:, -1]
        state.logits = all_logits[:, -1] if logits else self.logits(state.hidden)
        return hidden, all_logits

    def crop(self, state: DecodeState, length: int) -> None:
        """Roll the state back to its first ``length`` positions (hidden/logits become stale)."""
        remove = state.length - length
        if remove > 0:
            state.cache.crop(-remove)
            state.attention_mask = state.attention_mask[:, :length]

    def _visual_dtype(self) -> torch.dtype:
        return next(p for p in self.model.parameters() if p.is_floating_point()).dtype


def decode_one_token(backend: Backend, token: torch.Tensor, state: DecodeState) -> None:
    backend.forward(token[:, None], state)


@torch.no_grad()
def greedy_generate(backend: Backend, inputs: PrefillInputs, max_new_tokens: int) -> Generation:
    """Greedy decoding until every row has produced EOS or ``max_new_tokens`` tokens."""
    state = backend.prefill(inputs)
    batch = inputs.input_ids.shape[0]
    tokens, hidden = [], []
    done = torch.zeros(batch, dtype=torch.bool, device=state.logits.device)
    lengths = torch.zeros(batch, dtype=torch.long, device=state.logits.device)
    for step in range(max_new_tokens):
        token = state.logits.argmax(-1)
        token = torch.where(done, torch.full_like(token, backend.pad_token_id), token)
        tokens.append(token)
        hidden.append(state.hidden)
        lengths += (~done).long()
        done |= token == backend.eos_token_id
        if done.all() or step == max_new_tokens - 1:
            break
        decode_one_token(backend, token, state)
    return Generation(torch.stack(tokens, 1).cpu(), torch.stack(hidden, 1).float().cpu(), lengths.cpu())


@torch.no_grad()
def teacher_forced_hidden(backend: Backend, inputs: PrefillInputs, tokens: torch.Tensor) -> torch.Tensor:
    """Hidden states [B, T, D] of ``backend`` reading ``tokens`` [B, T] after its prompt, in one forward.

    Position t has seen the prompt and tokens[:, :t], the same text prefix the
    model that produced ``tokens`` had seen when it produced token t.
    """
    state = backend.prefill(inputs)
    first = state.hidden[:, None]
    if tokens.shape[1] <= 1:
        return first.float().cpu()[:, : tokens.shape[1]]
    hidden, _ = backend.forward(tokens[:, :-1], state, logits=False)
    return torch.cat([first, hidden], dim=1).float().cpu()
