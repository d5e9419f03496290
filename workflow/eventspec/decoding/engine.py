"""Lossless greedy speculative decoding, batch 1, in small steps (gpt-fast's generate.py is the model).

``prefill`` (verifier; the drafter runs beside it, see ``concurrent``) ->
rounds of ``draft`` -> ``verify`` (one verifier forward over the pending token
and the drafts; accept the longest prefix equal to the verifier's argmax, plus
the bonus token; crop) -> until EOS or ``max_new_tokens``.

Why the output equals greedy decoding: the token after any accepted prefix is
the verifier's argmax given exactly that prefix, and the cache after a crop is
the cache of that prefix (``track.crop``). In exact arithmetic a k-token
forward equals k one-token forwards; in floating point they can round
differently (different GEMM shapes), so a token can flip only where the
verifier's top two logits are within rounding of each other. ``check_lossless``
states the rule the benchmark asserts: tokens must equal ``vl_baseline``'s;
a first difference is tolerated only at a position where the baseline's own
top-2 logit margin is below the dtype's rounding tolerance (a tie: both
answers are greedy answers of the verifier); it is then counted and reported,
and any other difference fails the job naming the sample. In float32 on CPU
the toy run has had no tie divergences; in float16/bfloat16 on a GPU the same
rule applies with the wider tolerance in ``TIE_TOLERANCE``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from ..models.backend import Backend, PrefillInputs
from .static_step import StaticStep
from .track import Track, crop, forward, prefill

TIE_TOLERANCE = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}
"""Relative logit margin under which two tokens count as tied (about 2^-17 / 2^-9 / 2^-6 of the logit)."""


class LosslessError(AssertionError):
    """Speculative output differs from the verifier's greedy output (not at a tie)."""


@dataclass
class Round:
    drafted: int  # drafts verified in this round
    accepted: int  # drafts accepted (the bonus token not counted)
    draft_s: float  # time spent drafting for this round (0 for drafts made during the prefill)
    verify_s: float  # the verifier forward (pending token + drafts), acceptance and crop
    from_prefill: bool = False


@dataclass
class Generated:
    tokens: list[int]
    prefill_s: float  # verifier prepare + vision + prefill
    total_s: float
    rounds: list[Round] = field(default_factory=list)
    margins: list[float] = field(default_factory=list)  # baseline only: top-2 logit margin of every token
    early_drafts: int = 0  # drafts made during the verifier's prefill
    early_accepted: int = 0  # of them, accepted
    drafter_prefill_s: float = 0.0
    early_draft_s: float = 0.0
    wait_s: float = 0.0  # waiting for the drafter after the verifier's prefill ended
    drafter_start_s: float = 0.0  # from the start to the drafter beginning its job (process wake-up, transfer)
    drafter_return_s: float = 0.0  # from its drafts being ready to the main process holding them

    @property
    def decode_s(self) -> float:
        return self.total_s - self.prefill_s

    @property
    def verifier_forwards(self) -> int:
        """Verifier passes that produced tokens: the prefill and one per round."""
        return 1 + len(self.rounds)


def accept_length(drafts: list[int], targets: list[int]) -> int:
    """Longest prefix of ``drafts`` equal to the verifier's argmax ``targets``."""
    n = 0
    while n < len(drafts) and drafts[n] == targets[n]:
        n += 1
    return n


def verify(verifier: Track, pending: int, drafts: list[int]) -> tuple[int, int]:
    """One forward over ``[pending] + drafts``; crop the rejected ones; return (accepted count, bonus token)."""
    _, logits = forward(verifier, [pending, *drafts])
    targets = logits.argmax(-1).tolist()
    accepted = accept_length(drafts, targets)
    crop(verifier, len(verifier.read) - len(drafts) + accepted)
    return accepted, targets[accepted]


def emit(answer: list[int], tokens: list[int], eos: int, max_new_tokens: int) -> bool:
    """Append ``tokens`` up to EOS or the length limit; True when the answer is complete."""
    for token in tokens:
        answer.append(token)
        if token == eos or len(answer) >= max_new_tokens:
            return True
    return False


def top2_margin(logits: torch.Tensor) -> float:
    top = logits.topk(2).values
    return float((top[0] - top[1]) / top[0].abs().clamp(min=1.0))


@torch.no_grad()
def baseline_generate(verifier: Backend, inputs: PrefillInputs, max_new_tokens: int,
                      step: StaticStep | None = None) -> Generated:
    """``vl_baseline``: greedy decoding one token per verifier forward, recording each token's top-2 margin
    (with ``step``: on its static cache, eager or compiled)."""
    t0 = time.perf_counter()
    track = prefill(verifier, inputs, step, max_new_tokens + 1)
    t1 = time.perf_counter()
    result = Generated([], t1 - t0, 0.0)
    while not emit(result.tokens, [int(track.last_logits().argmax())], verifier.eos_token_id, max_new_tokens):
        t = time.perf_counter()
        forward(track, result.tokens[-1:])
        result.rounds.append(Round(0, 0, 0.0, time.perf_counter() - t))
    result.total_s = time.perf_counter() - t0
    result.margins = [top2_margin(logits) for logits in track.logits]  # after timing: not the baseline's work
    return result


@torch.no_grad()
def speculative_generate(
    verifier: Backend, inputs: PrefillInputs, max_new_tokens: int, source=None, gamma: int = 0,
    drafter=None, job=None, drafter_backend: Backend | None = None, step: StaticStep | None = None,
) -> Generated:
    """Greedy decoding with drafts: from the drafter during the verifier's prefill (``drafter`` runs ``job``,
    in a worker or in-process), then ``gamma`` per round from ``source`` (``TokenDrafter`` / ``HeadDrafter``).
    With ``step`` the verifier runs on its static cache (eager or compiled)."""
    t0 = time.perf_counter()
    if drafter is not None:
        drafter.start(job)
    try:
        track = prefill(verifier, inputs, step, max_new_tokens + 1)
        t1 = time.perf_counter()
    finally:  # collect the job even if the prefill failed, so the next job's reply is not this one's
        got = drafter.finish() if drafter is not None else None
    result = Generated([], t1 - t0, 0.0)
    early = []
    if got is not None:
        now = time.perf_counter()
        result.wait_s = now - t1
        result.drafter_start_s, result.drafter_return_s = got.started_at - t0, now - got.done_at
        result.drafter_prefill_s, result.early_draft_s = got.prefill_s, got.draft_s
        result.early_drafts, early = len(got.drafts), got.drafts
        if source is not None and source.uses_drafter:
            if got.state is None:
                raise ValueError("the draft source reads the drafter, but its job did not return the drafter's state")
            source.drafter = got.track(drafter_backend)
    eos = verifier.eos_token_id
    answer: list[int] = []
    done = emit(answer, [int(track.last_logits().argmax())], eos, max_new_tokens)
    if early and early[0] == answer[0]:
        result.early_accepted = 1
        early = early[1:]
    else:
        early = []
    while not done:
        room = max_new_tokens - len(answer) - 1  # drafts that can still become tokens besides the bonus
        t = time.perf_counter()
        from_prefill = bool(early)
        if early:
            drafts, early = early[:room], []
        elif source is not None and gamma > 0 and room > 0:
            drafts = source.draft(track, answer, min(gamma, room))
        else:
            drafts = []
        t_drafted = time.perf_counter()
        accepted, bonus = verify(track, answer[-1], drafts)
        done = emit(answer, [*drafts[:accepted], bonus], eos, max_new_tokens)
        result.rounds.append(Round(len(drafts), accepted, 0.0 if from_prefill else t_drafted - t,
                                   time.perf_counter() - t_drafted, from_prefill))
        if from_prefill:
            result.early_accepted += accepted
    result.total_s = time.perf_counter() - t0
    result.tokens = answer
    return result


def check_lossless(sample: str, baseline: Generated, tokens: list[int], dtype: torch.dtype) -> bool:
    """Raise ``LosslessError`` naming ``sample`` unless ``tokens`` equal the baseline's; return True when they
    differ only after a first difference at a tie of the baseline (see the module docstring)."""
    if tokens == baseline.tokens:
        return False
    first = next((i for i, (a, b) in enumerate(zip(tokens, baseline.tokens)) if a != b), None)
    tie = first is not None and baseline.margins[first] <= TIE_TOLERANCE[dtype]
    if not tie:
        where = f"at token {first}" if first is not None else f"lengths {len(tokens)} vs {len(baseline.tokens)}"
        raise LosslessError(f"{sample}: output differs from vl_baseline {where}: {tokens} vs {baseline.tokens}")
    return True
