"""Untrained modules meeting the ``eventspec.adapters`` contract, for engine tests (importable by the drafter
worker): per-position layers, so causal. The oracles live in ``eventspec.decoding.oracle``."""

import torch
from torch import nn


class RandomPrefillAdapter(nn.Module):
    level, kind = "L1", "prefill"

    def __init__(self, dd: int, dv: int, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.proj = nn.Linear(dd, dv)

    def forward(self, drafter_hidden):
        return self.proj(drafter_hidden)


class RandomHead(nn.Module):
    kind = "decode"

    def __init__(self, uses: set, use_token_embedding: bool, dd: int, dv: int, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.uses, self.use_token_embedding = set(uses), use_token_embedding
        self.level = "L5F" if len(self.uses) == 2 else ("L5" if "drafter" in self.uses else "B1")
        self.d = nn.Linear(dd, dv)
        self.v = nn.Linear(dv, dv)
        self.e = nn.Linear(dv, dv)

    def forward(self, drafter_hidden=None, verifier_hidden=None, token_embeds=None):
        parts = []
        if "drafter" in self.uses:
            parts.append(self.d(drafter_hidden))
        if "verifier" in self.uses:
            parts.append(self.v(verifier_hidden))
        if self.use_token_embedding:
            parts.append(self.e(token_embeds))
        return torch.stack(parts).sum(0)
