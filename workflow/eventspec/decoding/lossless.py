"""The lossless rule the benchmark asserts on every whole answer, and the tie tolerance it is measured with.

Rule: teacher-force the answer through the verifier (the prompt's prefill,
then one forward over the whole answer, outside the timing: the answer is read
as text, as decoding reads it); at every position the answer's token must be a
valid greedy token given its own prefix: its logit within the tie tolerance of
the top logit (``logit_margin``: the gap relative to the top logit's size, at
least 1). Any number of tokens within tolerance are valid (three near-equal
logits: any of the three), not only the top two. The answer must end at EOS or
at the length limit. Tolerated ties (token not the argmax) and divergences
from ``vl_baseline``'s answer are counted; anything else fails naming the
configuration, sample, position, both tokens and the margin.

Tolerance, measured (``calibrate``): on the warm-up pairs, the largest
relative gap between the logits of one forward over a whole answer (k tokens,
as a verify round reads them) and the one-token decode steps' logits of the
same answer, on this device and dtype. The tolerance is twice that, at least
the dtype's rounding floor (``TIE_FLOOR``), and must stay under the dtype's
bound (``TIE_BOUND``): a verifier whose k-token and one-token forwards differ by
more (8-bit bitsandbytes picks outlier columns per batch) is refused with a
``LosslessError`` instead of passing answers on a tolerance too wide to mean
greedy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

TIE_FLOOR = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}
"""Smallest relative tolerance per dtype (about 2^-17 / 2^-9 / 2^-6 of the logit): rounding of one GEMM."""
TIE_BOUND = {torch.float32: 1e-3, torch.float16: 2e-2, torch.bfloat16: 6e-2}
"""Largest measured gap accepted per compute dtype; past it the verifier is refused (``calibrate``)."""


class LosslessError(AssertionError):
    """Speculative output differs from the verifier's greedy output (not at a tie), or the tie tolerance cannot
    be calibrated."""


@dataclass(frozen=True)
class AnswerCheck:
    """What the whole-answer check tolerated in one answer."""

    ties: int  # positions whose token is not the teacher-forced argmax but within the tie tolerance of it
    diverges: bool  # the answer differs from vl_baseline's (valid only through ties)


def logit_margin(logits: torch.Tensor, token: int) -> float:
    """How far ``token``'s logit lies below the top one, relative to the top logit's size (at least 1)."""
    top = logits.max()
    return float((top - logits[token]) / top.abs().clamp(min=1.0))


def check_complete(label: str, tokens: list[int], eos: int, max_new_tokens: int) -> None:
    """An answer ends at its first EOS or at the length limit, and has at least one token."""
    ends = [i for i, token in enumerate(tokens) if token == eos]
    last = len(tokens) - 1
    if not tokens or len(tokens) > max_new_tokens or (ends and ends[0] != last) or (
            not ends and len(tokens) != max_new_tokens):
        raise LosslessError(f"{label}: the answer does not end at EOS ({eos}) or at {max_new_tokens} tokens: {tokens}")


def check_answer(label: str, logits: torch.Tensor, tokens: list[int], baseline: list[int], tolerance: float,
                 eos: int, max_new_tokens: int) -> AnswerCheck:
    """The whole-answer rule (module docstring) for ``tokens``, given the verifier's teacher-forced float32
    ``logits`` [T, V] along them; raise ``LosslessError`` naming ``label``, the position, both tokens and the
    margin."""
    check_complete(label, tokens, eos, max_new_tokens)
    ties = 0
    for t, (token, row) in enumerate(zip(tokens, logits)):
        best = int(row.argmax())
        gap = logit_margin(row, token)
        if token != best and gap > tolerance:
            raise LosslessError(f"{label}: token {t} is {token}, the verifier's argmax given its prefix is {best} "
                                f"(margin {gap:.3g} > tie tolerance {tolerance:g})")
        ties += token != best
    return AnswerCheck(ties, tokens != baseline)


def forward_gap(teacher_forced: torch.Tensor, stepwise: list[torch.Tensor]) -> float:
    """Largest relative gap between one forward's logits [T, V] and one-token steps' logits (same positions)."""
    gaps = [float(((a - b).abs().max()) / b.abs().max().clamp(min=1.0)) for a, b in zip(teacher_forced, stepwise)]
    return max(gaps, default=0.0)


def calibrate(gaps: list[float], dtype: torch.dtype, what: str) -> dict:
    """``settings.tie_tolerance``: the measured gaps (one per warm-up pair) -> the tolerance used, or
    ``LosslessError`` naming ``what`` (device, dtype, quantisation) when the gap exceeds the dtype's bound."""
    measured = max(gaps, default=0.0)
    bound = TIE_BOUND[dtype]
    if not gaps:
        raise LosslessError(f"{what}: no warm-up pair to measure the tie tolerance on (set benchmark.warmup >= 1)")
    if measured > bound:
        raise LosslessError(f"{what}: a k-token verify and one-token steps differ by {measured:.3g} (relative "
                            f"logit gap) on the warm-up pairs, over the bound {bound:g} for {dtype}: speculative "
                            "decoding cannot be checked lossless on this verifier (8-bit bitsandbytes picks outlier "
                            "columns per batch; use 4-bit, fp16/bf16 or fp32)")
    return {"measured": measured, "pairs": len(gaps), "floor": TIE_FLOOR[dtype], "bound": bound,
            "tolerance": max(2 * measured, TIE_FLOOR[dtype]), "dtype": str(dtype).removeprefix("torch."),
            "where": what}


def write_evidence(path: Path, failures: list[dict]) -> None:
    """Every failed answer (configuration, pair, position, tokens, margin in its message) as JSON at ``path``,
    an undeclared file that Snakemake keeps when it deletes a failed job's outputs."""
    path.write_text(json.dumps({"failures": failures}, indent=1) + "\n")
