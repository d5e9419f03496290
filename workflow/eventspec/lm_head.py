"""Stage 0: the verifier's LM head as a standalone safetensors file, for offline token metrics.

The head is read straight from the checkpoint's safetensors (through
``model.safetensors.index.json`` when the weights are sharded), one tensor,
without building the model: at 7B scale that is a 32000 x 4096 matrix instead
of ~14 GB of weights in host memory.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .models.loading import ModelLoadError, resolve_checkpoint

LM_HEAD_KEYS = ("lm_head.weight", "language_model.lm_head.weight")
"""Where the head lives: transformers v5 layout first, then the layout of the published
Video-LLaVA-7B-hf files (``language_model.*``, converted by transformers on load)."""
TIED_EMBEDDING_KEYS = (
    "model.language_model.embed_tokens.weight",
    "language_model.model.embed_tokens.weight",
    "model.embed_tokens.weight",
)
"""The input embedding, which is the head when the config ties them."""


def weight_files(checkpoint: Path) -> dict[str, Path]:
    """Tensor name -> safetensors file holding it, from the index or the single weights file."""
    index = checkpoint / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text())["weight_map"]
        return {name: checkpoint / file for name, file in weight_map.items()}
    single = checkpoint / "model.safetensors"
    if not single.is_file():
        raise ModelLoadError(f"{checkpoint}: no model.safetensors or model.safetensors.index.json")
    with safe_open(single, "pt") as f:
        return {name: single for name in f.keys()}


def ties_embeddings(checkpoint: Path) -> bool:
    config = json.loads((checkpoint / "config.json").read_text())
    text = config.get("text_config") or {}
    return bool(text.get("tie_word_embeddings", config.get("tie_word_embeddings", False)))


def read_lm_head(checkpoint: str | Path) -> torch.Tensor:
    """The LM head weight [vocab, hidden] in its stored dtype, read as one tensor from the safetensors files."""
    checkpoint = resolve_checkpoint(checkpoint, "models.verifier.path")
    if not (checkpoint / "config.json").is_file():
        raise ModelLoadError(f"models.verifier.path: {checkpoint} is not a checkpoint directory (no config.json)")
    files = weight_files(checkpoint)
    keys = LM_HEAD_KEYS + (TIED_EMBEDDING_KEYS if ties_embeddings(checkpoint) else ())
    for key in keys:
        if key in files:
            with safe_open(files[key], "pt") as f:
                return f.get_tensor(key)
    raise ModelLoadError(f"{checkpoint}: no LM head in its safetensors (looked for {', '.join(keys)})")


def extract_lm_head(model_cfg: dict, out: str | Path) -> dict:
    """Write ``weight`` [vocab, hidden] (float32) with its dims and source in the metadata."""
    weight = read_lm_head(model_cfg["path"]).to(torch.float32).contiguous()
    vocab, hidden = weight.shape
    meta = {"vocab_size": str(vocab), "hidden_size": str(hidden), "source": str(model_cfg["path"])}
    save_file({"weight": weight}, str(out), metadata=meta)
    return meta
