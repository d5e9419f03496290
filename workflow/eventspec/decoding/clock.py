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
