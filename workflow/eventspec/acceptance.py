"""When a drafted hidden state counts as accepted, shared by training's held-out scores and Stage 3.

Cosine proxy: accepted at tau when ``cos >= tau`` (0.90 counts at tau = 0.90,
as in the seeds' worked example). Token-exact: the predicted state's greedy
token through the verifier LM head is the verifier's token. Padding (mask
False) is never accepted. Kept apart from the evaluation's other metrics so
that editing those does not retrain adapters.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

THRESHOLDS = (0.80, 0.85, 0.90, 0.95)


def cosine(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-position cosine similarity [B, T] of [B, T, D] predictions and targets."""
    return F.cosine_similarity(pred.float(), target.float(), dim=-1, eps=1e-6)


def accepted(cos: torch.Tensor, mask: torch.Tensor, tau: float) -> torch.Tensor:
    """Positions accepted at ``tau``: cos >= tau on valid positions only."""
    return (cos >= tau) & mask


def token_matches(pred: torch.Tensor, lm_head: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Positions whose predicted state's greedy token (through the verifier LM head) is the verifier's token."""
    return ((pred.float() @ lm_head.T).argmax(-1) == tokens) & mask
