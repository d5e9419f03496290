"""Stage ``prepare_samples``: cut sequences into windows and build the sample store.

Per window (the verifier's clip) the store holds the drafter input (EventGPT's
event images of the drafter's own event window inside the clip, drawn as
``event_images`` draws them), the verifier input (evenly spaced RGB frames of the
whole clip), identifiers, and the reference
answers of the question set (empty where no ground truth exists, as for DSEC).
Toy sequences also give each window its objects (JSON) and, per chosen frame,
the map of which object each pixel shows (``object_maps``), which the toy
models learn to see from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from . import store
from .dsec import DataError, Sequence, list_sequences, read_png, window_starts
from .event_images import pad_to_sensor, render_event_chunks
from .event_window import place_event_window
from .questions import answers, load_question_set, window_ground_truth
from .toyworld.layout import GROUND_TRUTH_PATH, OBJECT_MAPS_DIR

SHARD_ROWS = 16
"""Windows per committed write, at most; fewer when their images would exceed ``WRITE_BYTES``."""
WRITE_BYTES = 256 << 20
"""Bound on the bytes of one write batch (a 1440x1080 DSEC window of 8 frames is 37 MB)."""


@dataclass(frozen=True)
class Window:
    """A verifier clip ``[t_start_us, t_end_us)`` and the drafter's event window ``[event_start_us, event_end_us)``
    inside it."""

    sequence: str
    index: int
    t_start_us: int
    t_end_us: int
    event_start_us: int
    event_end_us: int


def sensor_event_images(events, width: int, height: int, n_chunks: int) -> np.ndarray:
    """``[C, height, width, 3]``: the chunk images of ``events``, each padded white to the sensor size."""
    images = render_event_chunks(events.x, events.y, events.p, n_chunks)
    return np.stack([pad_to_sensor(image, width, height) for image in images])


def evenly_spaced(indices: np.ndarray, n: int) -> np.ndarray:
    """``n`` evenly spaced entries of ``indices`` (first and last included)."""
    return indices[np.linspace(0, len(indices) - 1, n).round().astype(int)]


def windows_of(seq: Sequence, window_us: int, event_window_us: int, event_window_at: str) -> list[Window]:
    starts = window_starts(seq.t_start, seq.t_end, window_us)
    return [
        Window(seq.name, i, t0, t0 + window_us, *place_event_window(t0, t0 + window_us, event_window_us, event_window_at))
        for i, t0 in enumerate(starts)
    ]


def read_window(seq: Sequence, w: Window, num_frames: int, n_chunks: int) -> dict:
    """Event images, frames and ids of one window, validated."""
    where = f"sequence {seq.name} window {w.index} [{w.t_start_us}, {w.t_end_us}) µs"
    ev = seq.events.get_events(w.event_start_us, w.event_end_us)
    if len(ev) == 0:
        raise DataError(f"{seq.events.path}: {where} has no events in its event window [{w.event_start_us}, {w.event_end_us}) µs")
    frame_ids = seq.frames_in(w.t_start_us, w.t_end_us)
    if len(frame_ids) < num_frames:
        raise DataError(f"{seq.frame_dir}: {where} has {len(frame_ids)} frames, needs {num_frames}")
    chosen = evenly_spaced(frame_ids, num_frames)
    return {
        "event_images": sensor_event_images(ev, seq.events.width, seq.events.height, n_chunks),
        "frames": np.stack([seq.read_frame(int(i)) for i in chosen]),
        "frame_index": chosen.astype(np.int32),
        "num_events": len(ev),
    }


def load_ground_truth(seq_dir: Path) -> dict | None:
    path = seq_dir / GROUND_TRUTH_PATH
    return json.loads(path.read_text()) if path.is_file() else None


def read_object_maps(seq_dir: Path, frame_index: np.ndarray) -> np.ndarray:
    """The toy object maps [F, H, W] of the chosen frames."""
    return np.stack(
        [read_png(seq_dir / OBJECT_MAPS_DIR / f"{int(i):06d}.png", "L", "toy object map missing") for i in frame_index]
    )


def store_layout(
    width: int, height: int, frame_shape: tuple, n_frames: int, n_chunks: int, n_questions: int, toy: bool
) -> dict:
    spec = store.ArraySpec
    toy_arrays = {"object_maps": spec((n_frames, *frame_shape[:2]), np.uint8), "objects": spec((), str, SHARD_ROWS)}
    return (toy_arrays if toy else {}) | {
        "event_images": spec((n_chunks, height, width, 3), np.uint8),
        "frames": spec((n_frames, *frame_shape), np.uint8),
        "frame_index": spec((n_frames,), np.int32, SHARD_ROWS),
        "t_start_us": spec((), np.int64, SHARD_ROWS),
        "t_end_us": spec((), np.int64, SHARD_ROWS),
        "event_t_start_us": spec((), np.int64, SHARD_ROWS),
        "event_t_end_us": spec((), np.int64, SHARD_ROWS),
        "num_events": spec((), np.int64, SHARD_ROWS),
        "window": spec((), np.int32, SHARD_ROWS),
        "sequence": spec((), str, SHARD_ROWS),
        "answers": spec((n_questions,), str, SHARD_ROWS),
    }


def write_rows(layout: dict) -> int:
    """Windows per committed write: ``SHARD_ROWS``, or fewer so that one batch stays under ``WRITE_BYTES``."""
    row_bytes = sum(int(np.prod(spec.row_shape, dtype=np.int64)) * np.dtype(spec.dtype).itemsize
                    for spec in layout.values() if spec.dtype is not str)
    return int(np.clip(WRITE_BYTES // max(row_bytes, 1), 1, SHARD_ROWS))


def prepare_samples(config: dict, split: str, out: str | Path) -> Path:
    """Write ``out`` (a sample store) for one split; return its path."""
    data, scfg = config["data"], config["samples"]
    questions = load_question_set(scfg["questions"], scfg["max_questions"])
    seq_dirs = list_sequences(data["root"], split, data["sequences"].get(split))
    resolution = tuple(data["event_resolution"])
    window_us, event_window_us = scfg["window_ms"] * 1000, scfg["event_window_ms"] * 1000
    with Sequence(seq_dirs[0], resolution) as first:
        frame_shape = first.read_frame(0).shape
        width, height = first.events.width, first.events.height
    toy = load_ground_truth(seq_dirs[0]) is not None
    layout = store_layout(width, height, frame_shape, scfg["num_frames"], scfg["event_chunks"], len(questions), toy)
    identity = {"stage": "samples", "split": split, "data": data, "samples": scfg}
    batch_rows = write_rows(layout)
    group = store.open_for_writing(out, layout, identity, batch_rows, resume=False)
    group.attrs.update(
        {
            "questions": [{"qid": q.qid, "text": q.text} for q in questions],
            "sensor_resolution": [width, height],
        }
    )
    pending: list[dict] = []
    limit = scfg["max_windows"]
    n_written = 0
    progress = tqdm(seq_dirs, desc=f"samples[{split}]", unit="seq")
    for seq_dir in progress:
        with Sequence(seq_dir, resolution) as seq:
            gt = load_ground_truth(seq_dir)
            if (gt is not None) != toy:
                raise DataError(f"{seq_dir}: {'has' if gt else 'lacks'} {GROUND_TRUTH_PATH}, unlike {seq_dirs[0]}")
            for w in windows_of(seq, window_us, event_window_us, scfg["event_window_at"]):
                if limit >= 0 and n_written + len(pending) >= limit:
                    break
                row = read_window(seq, w, scfg["num_frames"], scfg["event_chunks"])
                if row["frames"].shape[1:] != frame_shape:
                    raise DataError(f"{seq.frame_dir}: frame size {row['frames'].shape[1:]} differs from {frame_shape}")
                wgt = window_ground_truth(gt, w.t_start_us, w.t_end_us) if gt else None
                row.update(
                    t_start_us=w.t_start_us,
                    t_end_us=w.t_end_us,
                    event_t_start_us=w.event_start_us,
                    event_t_end_us=w.event_end_us,
                    window=w.index,
                    sequence=w.sequence,
                    answers=np.array(answers(questions, wgt), dtype=object),
                )
                if toy:
                    row.update(
                        object_maps=read_object_maps(seq_dir, row["frame_index"]), objects=json.dumps(wgt["objects"])
                    )
                pending.append(row)
                if len(pending) == batch_rows:
                    n_written = store.append_rows(group, _stack(pending, layout))
                    pending = []
    if pending:
        n_written = store.append_rows(group, _stack(pending, layout))
    if n_written == 0:
        raise DataError(f"{data['root']}/{split}: no windows of {scfg['window_ms']} ms")
    return store.finish(out, kind="sample")


def _stack(rows: list[dict], layout: dict) -> dict:
    stacked = {}
    for name, spec in layout.items():
        values = [r[name] for r in rows]
        stacked[name] = np.array(values, dtype=object) if spec.dtype is str else np.stack(values).astype(spec.dtype)
    return stacked
