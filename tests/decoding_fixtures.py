"""Small modules meeting the ``eventspec.adapters`` contract, for engine tests (importable by the drafter worker).

- ``RandomPrefillAdapter`` / ``RandomHead``: untrained, per-position (so causal) layers;
- ``OraclePrefill`` / ``OracleHead``: return the verifier's true hidden states of one answer (all drafts
  accepted); with ``sign=-1`` the negated states, whose greedy token is never the verifier's (all rejected).
"""

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


def _rows(table: torch.Tensor, start: int, n: int) -> torch.Tensor:
    """table[start : start + n], zero rows past its end; [1, n, D]."""
    out = torch.zeros(n, table.shape[1], dtype=table.dtype)
    avail = table[start : start + n]
    out[: len(avail)] = avail
    return out[None]


class OraclePrefill(nn.Module):
    """output[t] = the verifier's h_v[t] of one known answer."""

    level, kind = "L4", "prefill"

    def __init__(self, table: torch.Tensor, sign: float = 1.0):
        super().__init__()
        self.register_buffer("table", sign * table)
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, drafter_hidden):
        return _rows(self.table, 0, drafter_hidden.shape[1]) * self.scale


class OracleHead(nn.Module):
    """output[t] = the verifier's h_v[t + 1] of one known answer."""

    kind = "decode"

    def __init__(self, table: torch.Tensor, uses=("verifier",), use_token_embedding=True, sign: float = 1.0):
        super().__init__()
        self.uses, self.use_token_embedding = set(uses), use_token_embedding
        self.level = "B1"
        self.register_buffer("table", sign * table)
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, drafter_hidden=None, verifier_hidden=None, token_embeds=None):
        given = next(x for x in (drafter_hidden, verifier_hidden, token_embeds) if x is not None)
        return _rows(self.table, 1, given.shape[1]) * self.scale
