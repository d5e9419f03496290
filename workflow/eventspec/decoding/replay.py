"""Acceptance replay: drafts that the verifier accepts exactly as a recorded run's did.

Random weights at real shapes accept nothing, so a real-shaped benchmark would only ever time rejections.
``ReplayDrafter`` knows the verifier's own greedy answer (``vl_baseline``'s, computed before the timed run, as
the oracle's is) and a recorded trace's decode rounds ``(drafted, accepted)``. Round i drafts the next
``drafted`` answer tokens with the token at position ``accepted`` replaced by another one, so the verifier
(lossless: its argmax after the true prefix is the answer's next token) accepts exactly ``accepted`` drafts and
emits its bonus token. The wall time of such a run is a measurement at real shapes with the recorded
acceptance; ``profiling.project`` predicts the same from a profile (the two should agree).

After the recorded rounds run out (the replayed answer is longer), the rounds repeat from the first. A round
whose drafts would pass the answer's end drafts up to it (the engine bounds ``k`` by what is left).
``per_draft``: a callable run once per draft (a real-shaped head's step), so a decode head's cost is paid as it
would be, while the drafts stay the replayed ones.
"""

from __future__ import annotations

from .track import Track


def corrupt(token: int, vocab_size: int) -> int:
    """A token that is not ``token`` (the next id, wrapping)."""
    return (token + 1) % vocab_size


class ReplayDrafter:
    """The engine's draft source (``draft(track, answer, k) -> list[int]``) replaying ``rounds``."""

    uses_drafter = False

    def __init__(self, answer: list[int], rounds: list[tuple[int, int]], vocab_size: int, per_draft=None):
        if not rounds:
            raise ValueError("acceptance replay needs at least one recorded round")
        if any(not 0 <= a <= d for d, a in rounds):
            raise ValueError(f"recorded rounds must have 0 <= accepted <= drafted: {rounds}")
        self.answer, self.rounds, self.vocab_size = list(answer), list(rounds), vocab_size
        self.per_draft = per_draft  # optional callable run once per draft: a real head's cost, its output unused
        self.calls = 0

    def draft(self, verifier: Track, answer: list[int], k: int) -> list[int]:
        drafted, accepted = self.rounds[self.calls % len(self.rounds)]
        self.calls += 1
        start = len(answer)
        drafts = self.answer[start : start + min(drafted, k)]
        for _ in drafts if self.per_draft is not None else ():
            self.per_draft()
        if accepted < len(drafts):
            drafts[accepted] = corrupt(drafts[accepted], self.vocab_size)
        return drafts


def decode_rounds(trace: dict) -> list[tuple[int, int]]:
    """A trace record's decode-phase rounds (drafts made during the prefill left out)."""
    return [(d, a) for d, a, early in trace["rounds"] if not early]
