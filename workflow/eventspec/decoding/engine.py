"""Lossless greedy speculative decoding, batch 1, in small steps (gpt-fast's generate.py is the model).

``track.prefill`` (the caller's: the drafter may run beside it, see
``concurrent``) -> ``decode``: rounds of ``speculative_round`` (draft ->
verify: one verifier forward over the pending token and the drafts; accept the
longest prefix equal to the verifier's argmax, plus the bonus token; crop) ->
until EOS or ``max_new_tokens``. ``greedy_decode`` is the one-token loop of the
baseline.

The verifier never waits for the drafter: when its prefill ends first, ``decode``
goes on (rounds without drafts, or with drafts from a source that does not read
the drafter) and polls ``arrival`` once per round; drafts made during the
prefill are taken when they arrive, as far as they still continue the answer.

Nothing here reads a clock. The benchmark times from outside: it passes a
``mark`` callback (``clock.Timeline.mark``) that the driver calls at round
boundaries (``"draft"``, ``"verify"``, ``"done"``); the default does nothing.

The seam for draft trees: a draft source's ``draft(track, answer, k)``
returns a chain (a ``list`` of token ids) or a tree object. ``verify_drafts``
is the one dispatch: a list goes through ``verify``; anything else must offer
``tree.verify(track, pending) -> (accepted tokens, bonus)`` (e.g. by calling
``decoding.tree.verify_tree(track, pending, tree)``, which verifies every node
in one forward and leaves the verifier's track holding exactly the accepted
path) and ``len(tree)`` (its node count, the drafts it verified). The driver
and the benchmark's records need nothing else.

Why the output equals greedy decoding: the token after any accepted prefix is
the verifier's argmax given exactly that prefix, and the cache after a crop is
the cache of that prefix (``track.crop``). In exact arithmetic a k-token
forward equals k one-token forwards; in floating point they can round
differently (different GEMM shapes), so a token can flip only where the
verifier's top logits are within rounding of each other: ``lossless`` states
and checks the rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from .track import Track, crop, forward

Mark = Callable[[str], None]


def no_mark(event: str) -> None:
    """The default ``mark``: decoding untimed."""


@dataclass(frozen=True)
class Round:
    """What one speculative round did (the benchmark's per-pair records keep these three numbers)."""

    drafted: int  # drafts verified (chain length, or a tree's node count)
    accepted: int  # drafts accepted (the bonus token not counted)
    from_prefill: bool = False  # the drafts were made during the verifier's prefill


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


def verify_drafts(verifier: Track, pending: int, drafts) -> tuple[list[int], int]:
    """The accepted drafts and the bonus token: a chain (list) through ``verify``, a tree through its own
    ``verify`` (module docstring)."""
    if isinstance(drafts, list):
        accepted, bonus = verify(verifier, pending, drafts)
        return drafts[:accepted], bonus
    return drafts.verify(verifier, pending)


def speculative_round(verifier: Track, source, answer: list[int], k: int, mark: Mark = no_mark) -> tuple[Round, list[int]]:
    """One round after ``answer`` (the verifier has read all of it but its last token): up to ``k`` drafts from
    ``source`` (none when ``source`` is None or ``k`` is 0), verified; returns the round and the new tokens
    (accepted drafts, then the bonus)."""
    mark("draft")
    drafts = source.draft(verifier, answer, k) if source is not None and k > 0 else []
    mark("verify")
    accepted, bonus = verify_drafts(verifier, answer[-1], drafts)
    return Round(len(drafts), len(accepted)), [*accepted, bonus]


def prefill_round(verifier: Track, answer: list[int], early: list[int], mark: Mark = no_mark) -> tuple[Round, list[int]]:
    """The first round on drafts made during the verifier's prefill (``early``, already trimmed to the room)."""
    mark("draft")
    mark("verify")
    accepted, bonus = verify_drafts(verifier, answer[-1], early)
    return Round(len(early), len(accepted), from_prefill=True), [*accepted, bonus]


def emit(answer: list[int], tokens: list[int], eos: int, max_new_tokens: int) -> bool:
    """Append ``tokens`` up to EOS or the length limit; True when the answer is complete."""
    for token in tokens:
        answer.append(token)
        if token == eos or len(answer) >= max_new_tokens:
            return True
    return False


def first_token(verifier: Track) -> int:
    return int(verifier.last_logits().argmax())


def continuing(drafts: list[int], answer: list[int]) -> list[int]:
    """The drafts past ``answer`` when they begin with it (drafts made during the prefill start at the answer's
    first token, which the prefill itself gives), else none."""
    n = len(answer)
    return list(drafts[n:]) if list(drafts[:n]) == answer else []


@torch.no_grad()
def decode(verifier: Track, max_new_tokens: int, eos: int, source=None, gamma: int = 0, early: list[int] = (),
           mark: Mark = no_mark, arrival: Callable[[], list[int] | None] | None = None) -> tuple[list[int], list[Round]]:
    """The answer after a prefilled ``verifier`` track, and its rounds: the prefill's own token, then a round
    on the ``early`` drafts (those made during the prefill; the first only re-checks the prefill's token),
    then rounds of up to ``gamma`` drafts from ``source``.

    ``arrival``: the drafter is still working; polled before each round, it returns None until the early drafts
    are there (and the drafter's state is ``source``'s). Until then a source reading the drafter drafts nothing:
    the rounds are one-token steps."""
    answer: list[int] = []
    rounds: list[Round] = []
    done = emit(answer, [first_token(verifier)], eos, max_new_tokens)
    early = continuing(early, answer)
    while not done:
        if arrival is not None and (arrived := arrival()) is not None:
            early, arrival = continuing(arrived, answer), None
        room = max_new_tokens - len(answer) - 1  # drafts that can still become tokens besides the bonus
        if early:
            done_round, tokens = prefill_round(verifier, answer, early[:room], mark)
            early = []
        else:
            ready = arrival is None or not getattr(source, "uses_drafter", False)
            done_round, tokens = speculative_round(verifier, source if ready else None, answer, min(gamma, room),
                                                   mark)
        rounds.append(done_round)
        done = emit(answer, tokens, eos, max_new_tokens)
    mark("done")
    return answer, rounds


@torch.no_grad()
def greedy_decode(verifier: Track, max_new_tokens: int, eos: int, mark: Mark = no_mark) -> list[int]:
    """Greedy decoding, one token per verifier forward, after a prefilled ``verifier`` track (the baseline).

    The next token stays on the verifier's device (``track.forward`` reads a tensor as the model's ids) and the
    host reads each token one step late: the EOS test of token t runs after token t + 1's forward is queued,
    so a CUDA device never idles on a per-token sync; the forward past EOS this costs is cropped away. No
    per-token ``mark``: a timer read would synchronise the device (the caller times the loop as a whole)."""
    answer: list[int] = []
    token = verifier.last_logits().argmax()
    while True:
        if len(answer) + 1 < max_new_tokens:  # another token may follow this one: queue its forward first
            _, logits = forward(verifier, token.view(1))
            following = logits[-1].argmax()
        answer.append(int(token))
        if answer[-1] == eos or len(answer) >= max_new_tokens:
            break
        token = following
    crop(verifier, len(answer) - 1)  # the track reads the answer but its last token, as after ``decode``
    mark("done")
    return answer
