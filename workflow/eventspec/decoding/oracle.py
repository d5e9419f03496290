"""Oracle adapters: the verifier's own hidden states of a known answer, behind the adapter contract.

``OraclePrefill``: output[t] = h_v[t]; ``OracleHead``: output[t] = h_v[t + 1]
(zero rows past the answer, whose tokens the verifier rejects); ``sign=-1``
negates them so that no draft is ever the verifier's token. The benchmark's
``oracle`` configuration uses them for the engine's ceiling on a machine
(perfect drafts, no head cost); the tests use them for the all-accepted and
all-rejected cases.
"""

from __future__ import annotations

import torch
from torch import nn

from ..models.backend import Backend, PrefillInputs, teacher_forced_hidden


def _rows(table: torch.Tensor, start: int, n: int) -> torch.Tensor:
    """table[start : start + n] with zero rows past its end, as [1, n, D]."""
    out = torch.zeros(n, table.shape[1], dtype=table.dtype, device=table.device)
    avail = table[start : start + n]
    out[: len(avail)] = avail
    return out[None]


class OraclePrefill(nn.Module):
    level, kind = "oracle", "prefill"

    def __init__(self, table: torch.Tensor, sign: float = 1.0):
        super().__init__()
        self.register_buffer("table", sign * table)

    def forward(self, drafter_hidden):
        return _rows(self.table, 0, drafter_hidden.shape[1]).to(drafter_hidden.dtype)


class OracleHead(nn.Module):
    level, kind = "oracle", "decode"

    def __init__(self, table: torch.Tensor, uses=("verifier",), use_token_embedding: bool = True, sign: float = 1.0):
        super().__init__()
        self.uses, self.use_token_embedding = set(uses), use_token_embedding
        self.register_buffer("table", sign * table)

    def forward(self, drafter_hidden=None, verifier_hidden=None, token_embeds=None):
        given = next(x for x in (drafter_hidden, verifier_hidden, token_embeds) if x is not None)
        return _rows(self.table, 1, given.shape[1]).to(given.dtype)


def answer_hidden(verifier: Backend, inputs: PrefillInputs, tokens: list[int]) -> torch.Tensor:
    """The verifier's h_v [T, D] along ``tokens`` (teacher-forced, one forward), on its device in its LM head's
    dtype (the float32 copy ``teacher_forced_hidden`` returns on the CPU is exact: the states were in that dtype)."""
    hidden = teacher_forced_hidden(verifier, inputs, torch.tensor([tokens]))[0]
    return hidden.to(verifier.device, verifier.lm_head.weight.dtype)
