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
verifier's top two logits are within rounding of each other.

``check_answer`` states the rule the benchmark asserts, on the whole answer:
teacher-force the answer through the verifier (the prompt's prefill, then
one forward over the whole answer, outside the timing: the answer is read as
text, as decoding reads it) and require every token to be the argmax at its
position given its own prefix, or within the dtype's tie tolerance
(``TIE_TOLERANCE``) of it; where the answer first leaves ``vl_baseline``'s,
its token must be the baseline's runner-up at a genuine tie of the baseline's
own top-2 logits (both continuations are then greedy answers). The answer must
end at EOS or at the length limit. Tolerated ties are counted; anything else
fails naming the configuration, sample, position, both tokens and the margin.
In float32 on CPU the toy run has had no tie divergences; in float16/bfloat16
on a GPU the same rule applies with the wider tolerance.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..models.backend import Backend, PrefillInputs
from .clock import now
from .static_step import StaticStep
from .track import Track, crop, forward, prefill
from .tree import DraftTree, verify_tree

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
    runner_up: list[int] = field(default_factory=list)  # baseline only: the second-best token at every position
    early_drafts: int = 0  # drafts made during the verifier's prefill
    early_accepted: int = 0  # of them, accepted by a verify round (the first answer token, which the prefill
    # produces anyway, not counted)
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


def logit_margin(logits: torch.Tensor, token: int) -> float:
    """How far ``token``'s logit lies below the top one, relative to the top logit's size (at least 1)."""
    top = logits.max()
    return float((top - logits[token]) / top.abs().clamp(min=1.0))


def runner_up(logits: torch.Tensor, token: int) -> int:
    """The best token other than the emitted ``token``: at an exact tie, the other tied token (``topk``'s order
    among equal logits is unspecified, so its second index can be the emitted token itself)."""
    others = logits.clone()
    others[token] = float("-inf")
    return int(others.argmax())


@torch.no_grad()
def baseline_generate(verifier: Backend, inputs: PrefillInputs, max_new_tokens: int,
                      step: StaticStep | None = None) -> Generated:
    """``vl_baseline``: greedy decoding one token per verifier forward, recording each token's top-2 margin
    (with ``step``: on its static cache, eager or compiled)."""
    device = verifier.device
    t0 = now(device)
    track = prefill(verifier, inputs, step, max_new_tokens + 1)
    t1 = now(device)
    result = Generated([], t1 - t0, 0.0)
    while not emit(result.tokens, [int(track.last_logits().argmax())], verifier.eos_token_id, max_new_tokens):
        t = now(device)
        forward(track, result.tokens[-1:])
        result.rounds.append(Round(0, 0, 0.0, now(device) - t))
    result.total_s = now(device) - t0
    # after timing (not the baseline's work): what a tie at each position would have been between
    result.runner_up = [runner_up(logits, token) for logits, token in zip(track.logits, result.tokens)]
    result.margins = [logit_margin(logits, r) for logits, r in zip(track.logits, result.runner_up)]
    return result


@torch.no_grad()
def speculative_generate(
    verifier: Backend, inputs: PrefillInputs, max_new_tokens: int, source=None, gamma: int = 0,
    drafter=None, job=None, drafter_backend: Backend | None = None, step: StaticStep | None = None,
) -> Generated:
    """Greedy decoding with drafts: from the drafter during the verifier's prefill (``drafter`` runs ``job``,
    in a worker or in-process), then ``gamma`` per round from ``source`` (``TokenDrafter`` / ``HeadDrafter``).
    With ``step`` the verifier runs on its static cache (eager or compiled)."""
    device = verifier.device
    t0 = now(device)
    if drafter is not None:
        drafter.start(job)
    try:
        track = prefill(verifier, inputs, step, max_new_tokens + 1 + getattr(source, "width", 0))
        t1 = now(device)
    finally:  # collect the job even if the prefill failed, so the next job's reply is not this one's
        got = drafter.finish() if drafter is not None else None
    result = Generated([], t1 - t0, 0.0)
    early = []
    if got is not None:
        held = now(device)
        result.wait_s = held - t1
        result.drafter_start_s, result.drafter_return_s = got.started_at - t0, held - got.done_at
        result.drafter_prefill_s, result.early_draft_s = got.prefill_s, got.draft_s
        result.early_drafts, early = len(got.drafts), got.drafts
        if source is not None and source.uses_drafter:
            if got.state is None:
                raise ValueError("the draft source reads the drafter, but its job did not return the drafter's state")
            source.drafter = got.track(drafter_backend)
    eos = verifier.eos_token_id
    answer: list[int] = []
    done = emit(answer, [int(track.last_logits().argmax())], eos, max_new_tokens)
    # the first draft only checks the prefill's own first token: the rest are verified if it matches
    early = early[1:] if early and early[0] == answer[0] else []
    while not done:
        room = max_new_tokens - len(answer) - 1  # drafts that can still become tokens besides the bonus
        t = now(device)
        from_prefill = bool(early)
        if early:
            drafts, early = early[:room], []
        elif source is not None and gamma > 0 and room > 0:
            drafts = source.draft(track, answer, min(gamma, room))
        else:
            drafts = []
        t_drafted = now(device)
        if isinstance(drafts, DraftTree):  # EAGLE-2 draft tree (decoding.tree)
            path, bonus = verify_tree(track, answer[-1], drafts)
            accepted, tokens = len(path), [*path, bonus]
        else:
            accepted, bonus = verify(track, answer[-1], drafts)
            tokens = [*drafts[:accepted], bonus]
        done = emit(answer, tokens, eos, max_new_tokens)
        result.rounds.append(Round(len(drafts), accepted, 0.0 if from_prefill else t_drafted - t,
                                   now(device) - t_drafted, from_prefill))
        if from_prefill:
            result.early_accepted += accepted
    result.total_s = now(device) - t0
    result.tokens = answer
    return result


@dataclass
class AnswerCheck:
    """What the whole-answer check tolerated in one answer."""

    ties: int  # positions whose token is not the teacher-forced argmax but within the tie tolerance of it
    tie_divergence: bool  # the answer leaves the baseline's at a genuine tie of the baseline's top-2 logits


def check_answer(label: str, logits: torch.Tensor, tokens: list[int], baseline: Generated, dtype: torch.dtype,
                 eos: int, max_new_tokens: int) -> AnswerCheck:
    """The whole-answer lossless rule (module docstring) for ``tokens``, given the verifier's teacher-forced
    float32 ``logits`` [T, V] along them (``Backend.teacher_forced_logits``); raise ``LosslessError`` naming
    ``label``, the position, both tokens and the margin."""
    check_complete(label, tokens, eos, max_new_tokens)
    tolerance = TIE_TOLERANCE[dtype]
    ties = 0
    for t, (token, row) in enumerate(zip(tokens, logits)):
        best = int(row.argmax())
        gap = logit_margin(row, token)
        if token != best and gap > tolerance:
            raise LosslessError(f"{label}: token {t} is {token}, the verifier's argmax given its prefix is {best} "
                                f"(margin {gap:.3g} > tie tolerance {tolerance:g})")
        ties += token != best
    first = next((i for i, (a, b) in enumerate(zip(tokens, baseline.tokens)) if a != b), None)
    if first is not None:
        check_tie_divergence(label, first, tokens[first], baseline, tolerance)
    elif len(tokens) != len(baseline.tokens):  # both complete, one a prefix of the other: cannot both be greedy
        raise LosslessError(f"{label}: {len(tokens)} tokens where vl_baseline has {len(baseline.tokens)}: {tokens} "
                            f"vs {baseline.tokens}")
    return AnswerCheck(ties, first is not None)


def check_complete(label: str, tokens: list[int], eos: int, max_new_tokens: int) -> None:
    """An answer ends at its first EOS or at the length limit, and has at least one token."""
    ends = [i for i, token in enumerate(tokens) if token == eos]
    last = len(tokens) - 1
    if not tokens or len(tokens) > max_new_tokens or (ends and ends[0] != last) or (
            not ends and len(tokens) != max_new_tokens):
        raise LosslessError(f"{label}: the answer does not end at EOS ({eos}) or at {max_new_tokens} tokens: {tokens}")


def check_tie_divergence(label: str, at: int, token: int, baseline: Generated, tolerance: float) -> None:
    """Leaving the baseline's answer at ``at`` is greedy only at a genuine tie: ``token`` must be the
    baseline's runner-up there, within the tie tolerance of its top token."""
    margin, second = baseline.margins[at], baseline.runner_up[at]
    if token != second or margin > tolerance:
        raise LosslessError(f"{label}: leaves vl_baseline at token {at}: {token} where vl_baseline has "
                            f"{baseline.tokens[at]} (its runner-up {second}, top-2 margin {margin:.3g}, "
                            f"tie tolerance {tolerance:g})")
