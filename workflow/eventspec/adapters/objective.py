"""What an adapter is trained on and scored by: masked losses and held-out metrics.

Loss per valid position: MSE + 0.5 * (1 - cos) against the verifier's hidden
state (the seeds'), plus ``align_weight`` times the same on a decode head's
same-prefix alignment output (L5's dual loss), plus ``ce_weight`` times the
cross-entropy of the frozen verifier LM head's logits against the verifier's
token (EAGLE's feature + 0.1 * CE). Acceptance counts a position as accepted
when cos >= threshold (so the seeds' worked example accepts 0.90 at tau = 0.90).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch.nn import functional as F

from ..acceptance import THRESHOLDS, cosine, token_matches
from ..acceptance import accepted as accepted_at


def feature_terms(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-position MSE (mean over dims) and cosine similarity."""
    return (pred - target).pow(2).mean(-1), cosine(pred, target)


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (values * mask).sum() / mask.sum().clamp(min=1)


def feature_loss(pred, target, mask) -> torch.Tensor:
    mse, cos = feature_terms(pred, target)
    return masked_mean(mse + 0.5 * (1 - cos), mask)


def token_ce(pred, tokens, mask, lm_head: torch.Tensor) -> torch.Tensor:
    logits = pred @ lm_head.T
    ce = F.cross_entropy(logits.flatten(0, 1), tokens.clamp(min=0).flatten(), reduction="none")
    return masked_mean(ce.view(tokens.shape), mask)


def total_loss(outputs, example, lm_head, ce_weight: float, align_weight: float) -> torch.Tensor:
    pred, aligned = outputs
    mask = example.mask.float()
    loss = feature_loss(pred, example.target, mask)
    if aligned is not None and align_weight:
        loss = loss + align_weight * feature_loss(aligned, example.target, mask)
    if ce_weight:
        loss = loss + ce_weight * token_ce(pred, example.tokens, mask, lm_head)
    return loss


@dataclass
class Scores:
    """Held-out sums over valid positions; ``summary`` turns them into the history's metrics.

    ``loss`` is the training objective (early stopping and ``best`` use it);
    ``feature_loss`` is MSE + 0.5 (1 - cos) of the prediction alone, comparable
    across adapters with and without the CE and alignment terms.
    """

    positions: int = 0
    loss: float = 0.0
    feature_loss: float = 0.0
    mse: float = 0.0
    cos: float = 0.0
    top1: int = 0
    accepted: dict = field(default_factory=lambda: {t: 0 for t in THRESHOLDS})

    def add(self, outputs, example, lm_head, ce_weight, align_weight) -> None:
        pred = outputs[0]
        mask = example.mask
        n = int(mask.sum())
        if n == 0:
            return
        mse, cos = feature_terms(pred, example.target)
        self.positions += n
        self.loss += float(total_loss(outputs, example, lm_head, ce_weight, align_weight)) * n
        self.feature_loss += float((mse + 0.5 * (1 - cos))[mask].sum())
        self.mse += float(mse[mask].sum())
        self.cos += float(cos[mask].sum())
        for t in THRESHOLDS:
            self.accepted[t] += int(accepted_at(cos, mask, t).sum())
        self.top1 += int(token_matches(pred, lm_head, example.tokens, mask).sum())

    def summary(self, prefix: str = "val_") -> dict:
        n = max(self.positions, 1)
        out = {"loss": self.loss / n, "feature_loss": self.feature_loss / n, "mse": self.mse / n, "cos": self.cos / n, "token_top1": self.top1 / n}
        out |= {f"accept_{round(t * 100)}": self.accepted[t] / n for t in THRESHOLDS}
        out["positions"] = self.positions
        return {prefix + k: v for k, v in out.items()}
