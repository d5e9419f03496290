"""The inputs of the official-pipeline goldens (tests/goldens/eventgpt_official.json), rebuilt by the test and by
the command that made the goldens (tests/goldens/make_eventgpt_goldens.py): plain numpy, nothing of EventGPT's."""

from __future__ import annotations

import hashlib

import numpy as np

SEED = 20261207
WIDTH, HEIGHT = 640, 480
DURATION_US = 50_000
N_EVENTS = 40_000
N_CHUNKS = 5
PIXEL_PROBES = [(0, 0, 0), (0, 100, 200), (1, 168, 168), (2, 335, 335), (0, 17, 300), (1, 250, 3), (2, 60, 61),
                (1, 300, 150)]
"""(channel, row, column) of the CLIP pixel values kept per chunk."""
QUESTION = "Describe the scene in detail."


def synthetic_event_stream(seed: int = SEED) -> dict[str, np.ndarray]:
    """A seeded 640x480, 50 ms stream as EventGPT's ``.npy`` samples hold it (``x``, ``y``, ``p``, ``t`` in us,
    time-sorted): a bar sweeping right plus uniform noise, so chunks differ and canvases vary in size."""
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(0, DURATION_US, N_EVENTS))
    sweep = rng.random(N_EVENTS) < 0.7
    x = np.where(sweep, (t * (WIDTH - 40) // DURATION_US) + rng.integers(0, 40, N_EVENTS),
                 rng.integers(0, WIDTH, N_EVENTS))
    y = np.where(sweep, rng.integers(100, 400, N_EVENTS), rng.integers(0, HEIGHT, N_EVENTS))
    p = rng.integers(0, 2, N_EVENTS)
    return {"x": x.astype(np.uint16), "y": y.astype(np.uint16), "p": p.astype(np.uint8), "t": t.astype(np.int64)}


def image_digest(image: np.ndarray) -> str:
    """sha256 of an event image's shape and uint8 bytes."""
    image = np.ascontiguousarray(image, dtype=np.uint8)
    return hashlib.sha256(repr(image.shape).encode() + image.tobytes()).hexdigest()
