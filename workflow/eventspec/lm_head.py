"""Stage 0: the verifier's LM head as a standalone safetensors file, for offline token metrics."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from .models.verifier import load_verifier


def extract_lm_head(model_cfg: dict, out: str | Path) -> dict:
    """Write ``weight`` [vocab, hidden] (float32) with its dims and source in the metadata."""
    backend = load_verifier(model_cfg["path"], model_cfg["dtype"], "none", "cpu")
    weight = backend.lm_head.weight.detach().to(torch.float32).contiguous()
    vocab, hidden = weight.shape
    meta = {"vocab_size": str(vocab), "hidden_size": str(hidden), "source": str(model_cfg["path"])}
    save_file({"weight": weight}, str(out), metadata=meta)
    return meta
