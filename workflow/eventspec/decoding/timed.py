"""The engine timed from outside: one run of a configuration on one pair -> ``Generated`` (tokens and times).

The engine (``engine.decode`` / ``greedy_decode``) reads no clock; these
functions wrap it in a ``clock.Timeline`` and read the times off its marks.
Timing covers the verifier's vision tower, prefill and decoding from its
tokenised, preprocessed inputs; the drafter's work runs beside the verifier's
prefill (worker) or after it (in process) and is timed where it runs. The
drafter's state reaching this process (the worker's hidden states it mirrors,
``drafter_states``) is booked as the drafter's return, when decoding takes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..models.backend import Backend, PrefillInputs
from .clock import Timeline, now
from .engine import Round, decode, greedy_decode
from .static_step import StaticStep
from .track import prefill


@dataclass
class Generated:
    tokens: list[int]
    prefill_s: float  # verifier vision + prefill (nan for transformers' generate)
    total_s: float
    rounds: list[Round] = field(default_factory=list)  # per verifier forward after the prefill
    round_s: list[tuple[float, float]] = field(default_factory=list)  # per round: (draft s, verify s)
    engine: bool = True  # decoded by our engine (False: transformers' generate, whose forwards we do not see)
    early_drafts: int = 0  # drafts made during the verifier's prefill
    early_accepted: int = 0  # of them, accepted (the first answer token, which the prefill produces, not counted)
    drafter_prefill_s: float = 0.0  # its preprocessing, vision and prefill
    drafter_prepare_s: float = 0.0  # of drafter_prefill_s, the preprocessing
    early_draft_s: float = 0.0
    wait_s: float = 0.0  # the verifier blocked on the drafter: reading its reply (in process: running its job)
    drafter_start_s: float = 0.0  # from the start to the drafter beginning its job (process wake-up, transfer)
    drafter_return_s: float = 0.0  # from its drafts being ready to this process holding them and its track
    bytes_between_processes: int = 0  # drafting's traffic with the drafter worker (drafter_states.Transfer)
    bytes_host_device: int = 0  # drafting's copies between host and device (drafter_states.Transfer)

    @property
    def decode_s(self) -> float:
        return self.total_s - self.prefill_s

    @property
    def verifier_forwards(self) -> int | None:
        """Verifier passes that produced tokens: the prefill and one per round (None: not seen)."""
        return 1 + len(self.rounds) if self.engine else None


@torch.no_grad()
def timed_greedy(verifier: Backend, inputs: PrefillInputs, max_new_tokens: int,
                 step: StaticStep | None = None) -> Generated:
    """``vl_baseline``: greedy decoding one token per forward (with ``step``: on its static cache). Its decode
    loop is timed as a whole (a per-token timer read would synchronise a GPU): each step is booked the mean."""
    clock = Timeline(verifier.device)
    t0 = clock.mark("start")
    track = prefill(verifier, inputs, step, max_new_tokens + 1)
    t1 = clock.mark("prefilled")
    tokens = greedy_decode(track, max_new_tokens, verifier.eos_token_id, clock.mark)
    total = clock.marks[-1][1] - t0
    steps = len(tokens) - 1
    return Generated(tokens, t1 - t0, total, [Round(0, 0)] * steps, [(0.0, (total - (t1 - t0)) / max(steps, 1))] * steps)


@torch.no_grad()
def timed_speculative(verifier: Backend, inputs: PrefillInputs, max_new_tokens: int, source=None, gamma: int = 0,
                      drafter=None, job=None, step: StaticStep | None = None) -> Generated:
    """Greedy decoding with drafts: from the drafter during the verifier's prefill (``drafter`` runs ``job``,
    in a worker or in-process), then ``gamma`` per round from ``source``. The verifier never waits for a drafter
    still busy when its prefill ends: decoding goes on and takes the drafter's reply when it is there
    (``engine.decode``'s ``arrival``); a reply that comes after the answer ends is collected untimed."""
    clock = Timeline(verifier.device)
    t0 = clock.mark("start")
    if drafter is not None:
        drafter.start(job)
    try:
        # room for the answer and the widest verify after it (a draft tree's padded width)
        track = prefill(verifier, inputs, step, max_new_tokens + 1 + getattr(source, "width", 0))
        t1 = clock.mark("prefilled")
    except BaseException:  # collect the job, so the next job's reply is not this one's
        if drafter is not None:
            drafter.finish()
        raise
    result = Generated([], t1 - t0, 0.0)
    arrived: list[tuple] = []  # (the drafter's reply, when it was asked for, when it was held)

    def arrival() -> list[int] | None:
        if not drafter.ready():
            return None
        asked = now(verifier.device)
        got = drafter.finish()
        if source is not None and source.uses_drafter:
            if got.states is None:
                raise ValueError("the draft source reads the drafter, but its job did not keep the drafter's state")
            source.drafter = got.states
        held = clock.mark("held")
        result.wait_s = max(got.done_at - asked, 0.0)  # in process: the job ran now; a worker's reply was there
        arrived.append((got, asked, held))
        return got.drafts

    if drafter is not None:
        drafter.halt()
    result.tokens, result.rounds = decode(track, max_new_tokens, verifier.eos_token_id, source, gamma, (),
                                          clock.mark, arrival if drafter is not None else None)
    result.total_s = clock.marks[-1][1] - t0
    result.round_s = clock.rounds()
    result.early_accepted = sum(r.accepted for r in result.rounds if r.from_prefill)
    if drafter is not None:
        if not arrived:  # the answer ended first: the reply is collected after the timing
            arrived.append((drafter.finish(), None, None))
        got, asked, held = arrived[0]
        result.drafter_start_s = got.started_at - t0
        # taking the reply: reading it (the worker's mirror of its states), once the drafter was done
        result.drafter_return_s = 0.0 if held is None else held - max(got.done_at, asked)
        result.drafter_prefill_s, result.early_draft_s = got.prefill_s, got.draft_s
        result.drafter_prepare_s = got.prepare_s
        result.early_drafts = len(got.drafts)
        # the per-round requests to a resident drafter add to its job's transfer as they go
        result.bytes_between_processes = got.transfer.between_processes
        result.bytes_host_device = got.transfer.host_device
    return result
