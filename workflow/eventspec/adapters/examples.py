"""Store batches as adapter training examples: inputs, targets and masks per level.

Store convention: h_v[t] (``verifier_hidden``) produces token t;
``drafter_hidden_tf[t]`` has read the same text prefix (verifier tokens < t).

- Prefill adapters (L1-L4): input drafter[t] (teacher-forced or free-running),
  target h_v[t], token t.
- Decode heads predict the next position: at head position t the inputs are
  ``drafter_hidden_tf[t+1]`` (the drafter after reading tokens <= t),
  ``verifier_hidden[t]`` and the embedding of token t; the target is h_v[t+1]
  and token t+1; B1E reads ``drafter_hidden_tf[0]`` (the drafter after its
  prompt, before any answer token) once per pair. L5's alignment output is trained against the verifier state
  of its input's text prefix, which is the same h_v[t+1].
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import safe_open

from ..features import FeatureBatch
from .errors import AdapterError


@dataclass
class Example:
    inputs: dict  # keyword arguments of the adapter's forward
    target: torch.Tensor  # [B, W, Dv] float32
    tokens: torch.Tensor  # [B, W] verifier tokens the target produces
    mask: torch.Tensor  # [B, W] bool


def module_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def example(batch: FeatureBatch, model: torch.nn.Module, embedding: torch.Tensor | None) -> Example:
    """The batch as ``model``'s example, on the model's device (``embedding``, when read, must be there too)."""
    device = module_device(model)
    verifier = batch.verifier.to(device).float()
    tokens, mask = batch.tokens.to(device), batch.mask.to(device)
    if model.kind == "prefill":
        return Example({"drafter_hidden": batch.drafter.to(device).float()}, verifier, tokens, mask)
    inputs = {}
    if "drafter" in model.uses:
        inputs["drafter_hidden"] = batch.drafter[:, 1:].to(device).float()
    if "drafter_prompt" in model.uses:  # the drafter's state after its prompt: one vector per pair
        inputs["drafter_prompt"] = batch.drafter[:, 0].to(device).float()
    if "verifier" in model.uses:
        inputs["verifier_hidden"] = verifier[:, :-1]
    if model.use_token_embedding:
        inputs["token_embeds"] = embedding[tokens[:, :-1].clamp(min=0)]
    return Example(inputs, verifier[:, 1:], tokens[:, 1:], mask[:, 1:])


def run(model: torch.nn.Module, ex: Example) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(prediction, alignment output or None) of ``model`` on ``ex``."""
    if model.kind == "decode" and "drafter" in model.uses:
        return model.forward_with_alignment(**ex.inputs)
    return model(**ex.inputs), None


def load_verifier_embedding(model_dir: str | Path) -> torch.Tensor:
    """The verifier's input embedding table [V, Dv] (float32) from its safetensors files."""
    model_dir = Path(model_dir)
    files = sorted(model_dir.glob("*.safetensors"))
    for path in files:
        with safe_open(str(path), framework="pt") as f:
            for key in f.keys():
                if key.endswith("embed_tokens.weight") and "vision" not in key:
                    return f.get_tensor(key).to(torch.float32)
    raise AdapterError(f"{model_dir}: no '*embed_tokens.weight' in {len(files)} safetensors file(s) "
                       "(use_token_embedding needs the verifier's input embedding)")
