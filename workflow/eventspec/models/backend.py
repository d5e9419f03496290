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

Pads never reach a model as content: every padding position (left padding of
prompts, the steps a finished row still takes, teacher-forced positions past
the verifier's answer) holds an id the model can embed (its pad token, else
its unk, else its EOS: Vicuna has no pad token) under attention mask 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from transformers import Cache, DynamicCache


@dataclass
class PrefillInputs:
    """Tokenised, left-padded prompts plus the model's visual tensor."""

    input_ids: torch.Tensor  # [B, L]
    attention_mask: torch.Tensor  # [B, L]
    visual: dict[str, torch.Tensor]  # e.g. {"pixel_values_videos": [B, F, 3, S, S]}


@dataclass
class DecodeState:
    cache: Cache
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
        """The id padding positions hold (masked out): the tokenizer's pad, else unk, else EOS."""
        tok = self.tokenizer
        return next(i for i in (tok.pad_token_id, tok.unk_token_id, tok.eos_token_id) if i is not None)

    @property
    def unk_token_id(self) -> int:
        """What a token this model has no entry for becomes when another model hands it over."""
        tok = self.tokenizer
        return tok.unk_token_id if tok.unk_token_id is not None else self.pad_token_id

    def embeddable(self, tokens: torch.Tensor, shared_vocab: int | None = None) -> torch.Tensor:
        """``tokens`` as ids this model can embed: an id outside ``shared_vocab`` (default: this model's
        embedding rows), e.g. Video-LLaVA's ``<image>`` 32000 or its pad 32002 for a 32000-id EventGPT,
        becomes this model's unk."""
        limit = self.embed.num_embeddings if shared_vocab is None else shared_vocab
        return torch.where((tokens >= 0) & (tokens < limit), tokens, self.unk_token_id)

    def prompt(self, question: str) -> str:
        """The model's chat prompt for ``question``, visual placeholders expanded."""
        raise NotImplementedError

    def prompt_ids(self, question: str) -> list[int]:
        """Token ids of the prompt for ``question``, BOS and one id per visual token included."""
        return self.tokenizer(self.prompt(question))["input_ids"]

    def visual_inputs(self, visual: np.ndarray) -> dict[str, torch.Tensor]:
        """The model's visual keyword arguments for a batch of uint8 images [B, N, H, W, 3]."""
        raise NotImplementedError

    def prepare(self, visual: np.ndarray, questions: list[str], windows: np.ndarray | None = None) -> PrefillInputs:
        """Left-padded inputs for B (window, question) pairs.

        ``visual`` holds each window once when pairs share windows: pair i reads ``visual[windows[i]]``
        (default: pair i reads window i), so a window asked several questions is preprocessed once.
        """
        input_ids, attention_mask = left_pad([self.prompt_ids(q) for q in questions], self.pad_token_id)
        inputs = self.visual_inputs(visual)
        if windows is not None:
            inputs = {k: v[torch.as_tensor(windows)] for k, v in inputs.items()}
        return PrefillInputs(input_ids, attention_mask, inputs)

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
    def prefill(self, inputs: PrefillInputs, cache: Cache | None = None) -> DecodeState:
        """Run the prompts into ``cache`` (default: a new DynamicCache; the engine passes a StaticCache)."""
        ids = inputs.input_ids.to(self.device)
        mask = inputs.attention_mask.to(self.device)
        visual = {k: v.to(self.device, self._visual_dtype()) for k, v in inputs.visual.items()}
        cache = DynamicCache(config=self.model.config.get_text_config()) if cache is None else cache
        last = self._run(ids, mask, cache, visual)[:, -1]
        return DecodeState(cache, mask, last, self.logits(last))

    @torch.no_grad()
    def teacher_forced_logits(self, inputs: PrefillInputs, tokens: list[int]) -> torch.Tensor:
        """float32 logits [T, V] at the positions that produce each of ``tokens`` (batch 1): the prompt's prefill,
        then one forward over ``tokens[:-1]``, so position t has read the prompt and tokens[:t]. The answer is
        read as text, as decoding reads it (an id equal to a visual placeholder is not spliced with the visual
        features). The benchmark's whole-answer lossless check reads them."""
        state = self.prefill(inputs)
        first = state.logits[0, None]  # before the forward moves the state on
        if len(tokens) <= 1:
            return first[: len(tokens)]
        _, logits = self.forward(torch.tensor([tokens[:-1]]), state)
        return torch.cat([first, logits[0]])

    @torch.no_grad()
    def forward(
        self, tokens: torch.Tensor, state: DecodeState, logits: bool = True, valid: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Append ``tokens`` [B, n]; return their hidden states [B, n, D] and logits [B, n, V].

        With ``logits=False`` (teacher forcing reads hidden states only) no
        full-vocabulary logits are computed except at the last position, which
        keeps ``state`` ready for the next step; the second value is then None.
        ``valid`` [B, n] (default all true) marks padding positions false: they
        are masked out of attention, now and in later steps.
        """
        tokens = tokens.to(self.device)
        mask = torch.ones_like(tokens) if valid is None else valid.to(self.device, tokens.dtype)
        state.attention_mask = torch.cat([state.attention_mask, mask], dim=1)
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


def left_pad(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``input_ids`` and ``attention_mask`` [B, L] of token-id lists, padded on the left with ``pad_id``.

    Done here rather than by the tokenizer: prompts carry ids the tokenizer never emits (EventGPT's
    placeholder), and a tokenizer without a pad token (Vicuna) cannot pad.
    """
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            ids[i, width - len(row) :] = torch.tensor(row, dtype=torch.long)
            mask[i, width - len(row) :] = 1
    return ids, mask


def decode_one_token(backend: Backend, token: torch.Tensor, state: DecodeState, valid: torch.Tensor | None = None) -> None:
    backend.forward(token[:, None], state, valid=None if valid is None else valid[:, None])


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
        decode_one_token(backend, token, state, ~done)
    return Generation(torch.stack(tokens, 1).cpu(), torch.stack(hidden, 1).float().cpu(), lengths.cpu())


def receivable_tokens(receiver: Backend, tokens: torch.Tensor, lengths: torch.Tensor, shared_vocab: int):
    """Another model's ``tokens`` [B, T] (valid up to ``lengths``) as ids ``receiver`` can embed, and the mask.

    An id outside the vocabulary both models share becomes the receiver's unk (``Backend.embeddable``);
    positions past ``lengths`` hold the receiver's pad id and are marked invalid.
    """
    valid = torch.arange(tokens.shape[1])[None, :] < lengths[:, None].to(tokens.device)
    return torch.where(valid, receiver.embeddable(tokens, shared_vocab), receiver.pad_token_id), valid


@torch.no_grad()
def teacher_forced_hidden(
    backend: Backend,
    inputs: PrefillInputs,
    tokens: torch.Tensor,
    lengths: torch.Tensor | None = None,
    shared_vocab: int | None = None,
) -> torch.Tensor:
    """Hidden states [B, T, D] of ``backend`` reading another model's ``tokens`` [B, T] after its prompt, in one forward.

    Position t has seen the prompt and tokens[:, :t], the same text prefix the
    model that produced ``tokens`` had seen when it produced token t. Tokens
    pass through ``receivable_tokens``; positions t >= lengths are padding
    (masked out; their hidden states are meaningless). Without ``lengths``
    every token is real; without ``shared_vocab`` the tokens are the
    backend's own (any id its embedding has).
    """
    state = backend.prefill(inputs)
    first = state.hidden[:, None]
    if tokens.shape[1] <= 1:
        return first.float().cpu()[:, : tokens.shape[1]]
    if lengths is None:
        lengths = torch.full((tokens.shape[0],), tokens.shape[1])
    if shared_vocab is None:
        shared_vocab = backend.embed.num_embeddings
    ids, valid = receivable_tokens(backend, tokens, lengths, shared_vocab)
    hidden, _ = backend.forward(ids[:, :-1], state, logits=False, valid=valid[:, :-1])
    return torch.cat([first, hidden], dim=1).float().cpu()
