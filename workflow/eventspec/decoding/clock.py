"""The benchmark's clock: ``time.perf_counter()`` at a point where the device has finished its queued work.

CUDA kernels run asynchronously: a timer read right after a launch stops
before the GPU does, so a prefill would come out short and its tail be booked
to whatever is timed next (waiting, decoding). ``now(device)`` synchronises a
CUDA device first; on a CPU it is the plain clock (nothing queued).
"""

from __future__ import annotations

import time

import torch


def now(device: torch.device | str | None = None) -> float:
    """``time.perf_counter()`` once ``device``'s queued work is done (CUDA: ``torch.cuda.synchronize``)."""
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


class Timeline:
    """Named instants of one timed run: the ``mark`` the benchmark hands the engine (``engine.decode``), so the
    algorithm reads no clock itself. ``marks`` holds (event, time) in order."""

    def __init__(self, device: torch.device | str | None = None):
        self.device = device
        self.marks: list[tuple[str, float]] = []

    def mark(self, event: str) -> float:
        t = now(self.device)
        self.marks.append((event, t))
        return t

    def rounds(self) -> list[tuple[float, float]]:
        """Per round (from a ``draft`` mark to the next round's ``draft`` or ``done``): (draft seconds, verify
        seconds)."""
        out, draft_at, verify_at = [], None, None
        for event, t in self.marks:
            if event in ("draft", "done") and draft_at is not None:
                out.append((verify_at - draft_at, t - verify_at))
                draft_at = None
            if event == "draft":
                draft_at = t
            elif event == "verify":
                verify_at = t
        return out
