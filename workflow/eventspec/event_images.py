"""EventGPT's event images: how an event stream becomes the pictures its CLIP tower reads.

As EventGPT's own inference draws them (github XduSyL/EventGPT, ``common/common.py``): the stream is cut into
``n`` chunks of ``N // n`` events each, the last chunk also taking the remainder; each chunk is drawn on a white
canvas of ``(y.max() + 1, x.max() + 1)`` pixels (so its size follows the chunk's events, not the sensor), every
pixel an event hit taking the colour of its latest event: polarity 0 blue (0, 0, 255), any other polarity red
(255, 0, 0).

The sample store keeps images of one shape, so each canvas is stored padded with white to the sensor size,
anchored at the top-left corner. Every event colours its pixel, so the canvas is the smallest top-left rectangle
holding every non-white pixel: ``event_canvas`` cuts it back out exactly. A chunk without events (fewer events
than chunks; EventGPT's code fails there) is a 1 x 1 white canvas.
"""

from __future__ import annotations

import numpy as np

WHITE = 255
BLUE = (0, 0, 255)
"""Polarity 0 (EventGPT: negative)."""
RED = (255, 0, 0)
"""Polarity 1 (EventGPT: positive; any polarity other than 0)."""


def chunk_bounds(n_events: int, n_chunks: int) -> list[tuple[int, int]]:
    """``[start, end)`` of each chunk: ``n_events // n_chunks`` events each, the remainder in the last."""
    per_chunk = n_events // n_chunks
    starts = [i * per_chunk for i in range(n_chunks)]
    return [(start, start + per_chunk) for start in starts[:-1]] + [(starts[-1], n_events)]


def canvas_size(x: np.ndarray, y: np.ndarray) -> tuple[int, int]:
    """``(height, width)`` of a chunk's canvas: up to its lowest and rightmost event (1 x 1 when it has none)."""
    if len(x) == 0:
        return 1, 1
    return int(y.max()) + 1, int(x.max()) + 1


def render_event_image(x: np.ndarray, y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """One chunk's image ``[height, width, 3]`` uint8 on its own canvas: white, each hit pixel coloured by the
    polarity of its latest event."""
    height, width = canvas_size(x, y)
    image = np.full((height * width, 3), WHITE, dtype=np.uint8)
    if len(x):
        pixel = y.astype(np.int64) * width + x.astype(np.int64)
        latest = np.full(height * width, -1, dtype=np.int64)
        np.maximum.at(latest, pixel, np.arange(len(pixel)))
        hit = np.flatnonzero(latest >= 0)
        negative = p[latest[hit]] == 0
        image[hit[negative]] = BLUE
        image[hit[~negative]] = RED
    return image.reshape(height, width, 3)


def render_event_chunks(x: np.ndarray, y: np.ndarray, p: np.ndarray, n_chunks: int) -> list[np.ndarray]:
    """The stream's ``n_chunks`` chunk images, each on its own canvas."""
    return [render_event_image(x[a:b], y[a:b], p[a:b]) for a, b in chunk_bounds(len(x), n_chunks)]


def pad_to_sensor(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """``image`` at the top-left of a white ``[height, width, 3]`` sensor-sized image (how the store keeps it)."""
    h, w = image.shape[:2]
    if h > height or w > width:
        raise ValueError(f"event image {w}x{h} exceeds the sensor's {width}x{height}: an event lies outside it")
    padded = np.full((height, width, 3), WHITE, dtype=np.uint8)
    padded[:h, :w] = image
    return padded


def event_canvas(padded: np.ndarray) -> np.ndarray:
    """The chunk image ``render_event_image`` drew, cut back out of its sensor-sized padding."""
    hit = (padded != WHITE).any(axis=-1)
    rows, cols = np.flatnonzero(hit.any(axis=1)), np.flatnonzero(hit.any(axis=0))
    if len(rows) == 0:
        return padded[:1, :1]
    return padded[: rows[-1] + 1, : cols[-1] + 1]
