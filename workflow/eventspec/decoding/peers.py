"""Peers on the same verifier: transformers' own ``generate`` (greedy, dynamic or static cache), and
prompt-lookup decoding. Their tokens are checked against ``vl_baseline`` like ours.

Prompt lookup: ``generate(prompt_lookup_num_tokens=...)`` fails on Video-LLaVA in transformers 5.23 (the
n-gram match finds the visual placeholders, proposes ``<video>`` tokens as drafts, and the forward then
rejects the placeholder count: "Video features and video tokens do not match"). So the peer runs
transformers' own ``PromptLookupCandidateGenerator`` as a draft source in our engine, looking up n-grams in
the prompt's text tokens (visual placeholders removed) and the answer so far.

With ``cache_implementation="static"`` transformers compiles the decode step itself where its auto-compile
criteria hold (a CUDA device); on a CPU it runs the static cache eagerly.
"""

from __future__ import annotations

import torch

from ..models.backend import Backend, PrefillInputs
from .clock import now
from .timed import Generated


@torch.no_grad()
def hf_generate(verifier: Backend, inputs: PrefillInputs, max_new_tokens: int, cache: str = "dynamic") -> Generated:
    """Greedy ``generate`` (batch 1) with a dynamic or a static cache."""
    device = verifier.device
    dtype = next(p for p in verifier.model.parameters() if p.is_floating_point()).dtype
    kwargs = {"cache_implementation": "static"} if cache == "static" else {}
    t0 = now(device)
    out = verifier.model.generate(
        input_ids=inputs.input_ids.to(device),
        attention_mask=inputs.attention_mask.to(device),
        **{k: v.to(device, dtype) for k, v in inputs.visual.items()},
        max_new_tokens=max_new_tokens,
        do_sample=False,
        num_beams=1,
        eos_token_id=verifier.eos_token_id,
        pad_token_id=verifier.pad_token_id,
        **kwargs,
    )
    total = now(device) - t0
    tokens = out[0, inputs.input_ids.shape[1] :].tolist()
    return Generated(tokens, float("nan"), total, engine=False)


class PromptLookupDrafter:
    """Prompt-lookup drafts from transformers' ``PromptLookupCandidateGenerator`` (a draft source of the engine)."""

    uses_drafter = False

    def __init__(self, inputs: PrefillInputs, visual_token_id: int, max_ngram: int = 2):
        ids = inputs.input_ids[0]
        self.prompt = ids[ids != visual_token_id].tolist()
        self.max_ngram = max_ngram

    def draft(self, verifier_track, answer: list[int], k: int) -> list[int]:
        from transformers.generation.candidate_generator import PromptLookupCandidateGenerator

        text = torch.tensor([self.prompt + answer])
        lookup = PromptLookupCandidateGenerator(num_output_tokens=k, max_matching_ngram_size=self.max_ngram,
                                                max_length=text.shape[1] + k + 1)
        candidates, _ = lookup.get_candidates(text)
        return candidates[0, text.shape[1] :].tolist()
