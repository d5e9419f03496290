"""Writes one simulated sequence in the DSEC layout (plus the toy ground truth).

::

    <seq>/events/left/events.h5      events/{x,y,p,t}, ms_to_idx, t_offset (as DSEC)
    <seq>/images/left/rectified/%06d.png
    <seq>/images/timestamps.txt      absolute µs, same clock as t_offset + events/t
    <seq>/toy_ground_truth.json
    <seq>/toy_objects/left/%06d.png  per frame: 1 + id of the object at each pixel, 0 for none

Dtypes follow DSEC: x, y uint16; p uint8 (1 = ON); t uint32 µs relative to
``t_offset`` (int64 scalar, µs); ``ms_to_idx`` uint64. The events group also gets
``width``/``height`` attributes, which real DSEC lacks.

Output is byte-identical for identical input: HDF5 object timestamps are off and
PNGs carry no metadata.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import h5py
import hdf5plugin
import numpy as np
from PIL import Image

from eventspec.toyworld.layout import GROUND_TRUTH_PATH, OBJECT_MAPS_DIR
from eventspec.toyworld.simulator import EventBatch

EVENTS_PATH = Path("events/left/events.h5")
FRAMES_DIR = Path("images/left/rectified")
TIMESTAMPS_PATH = Path("images/timestamps.txt")

EVENT_CHUNK = 1 << 16
BLOSC_LEVEL = 5


@dataclass(frozen=True)
class SequenceData:
    """Everything written for one sequence. Times in ``events.t`` and ``frame_times_us`` are relative."""

    width: int
    height: int
    t_offset_us: int
    duration_us: int
    events: EventBatch
    frames: list[np.ndarray]
    frame_times_us: np.ndarray
    ground_truth: dict
    object_maps: list[np.ndarray]


def write_sequence(seq_dir: Path, data: SequenceData) -> None:
    """Write the sequence into ``seq_dir``: built next to it, then moved into place.

    An existing toy sequence there is replaced; any other existing directory is refused.
    """
    seq_dir = Path(seq_dir)
    if seq_dir.exists() and not (seq_dir / GROUND_TRUTH_PATH).is_file():
        raise FileExistsError(f"{seq_dir} exists and is not a toy sequence; not overwriting it")
    partial = seq_dir.with_name(f".{seq_dir.name}.partial")
    if partial.exists():
        shutil.rmtree(partial)
    write_events_h5(partial / EVENTS_PATH, data.events, data.t_offset_us, data.duration_us, data.width, data.height)
    write_frames(partial / FRAMES_DIR, data.frames)
    write_frames(partial / OBJECT_MAPS_DIR, data.object_maps)
    write_timestamps(partial / TIMESTAMPS_PATH, data.t_offset_us + np.asarray(data.frame_times_us, dtype=np.int64))
    write_json(partial / GROUND_TRUTH_PATH, data.ground_truth)
    if seq_dir.exists():
        shutil.rmtree(seq_dir)
    partial.rename(seq_dir)


def compute_ms_to_idx(t: np.ndarray, duration_us: int) -> np.ndarray:
    """DSEC's millisecond index: ``ms_to_idx[ms]`` = index of the first event with ``t >= ms * 1000``.

    So ``t[ms_to_idx[ms] - 1] < ms * 1000 <= t[ms_to_idx[ms]]`` (where the indices exist).
    It covers every millisecond up to the end of the sequence, also when the last
    event comes earlier (entries past it equal the number of events), so any window
    inside the sequence can be sliced.
    """
    last_us = max(int(duration_us), int(t[-1]) if t.size else 0)
    ms = np.arange(last_us // 1000 + 1, dtype=np.int64)
    return np.searchsorted(t, ms * 1000, side="left").astype(np.uint64)


def write_events_h5(
    path: Path, events: EventBatch, t_offset_us: int, duration_us: int, width: int, height: int
) -> None:
    if events.t.size and (np.any(np.diff(events.t) < 0) or events.t[0] < 0):
        raise ValueError("events must be sorted by time and not before t_offset")
    if events.t.size and events.t[-1] > np.iinfo(np.uint32).max:
        raise ValueError("sequence too long for uint32 microsecond timestamps")
    path.parent.mkdir(parents=True, exist_ok=True)
    compression = hdf5plugin.Blosc(cname="zstd", clevel=BLOSC_LEVEL, shuffle=hdf5plugin.Blosc.SHUFFLE)
    with h5py.File(path, "w") as f:
        group = f.create_group("events")
        group.attrs["width"] = np.int64(width)
        group.attrs["height"] = np.int64(height)
        columns = {
            "x": events.x.astype(np.uint16),
            "y": events.y.astype(np.uint16),
            "p": events.p.astype(np.uint8),
            "t": events.t.astype(np.uint32),
        }
        for name, values in columns.items():
            _write_chunked(group, name, values, compression)
        _write_chunked(f, "ms_to_idx", compute_ms_to_idx(events.t, duration_us), compression)
        f.create_dataset("t_offset", data=np.int64(t_offset_us), track_times=False)


def _write_chunked(parent: h5py.Group, name: str, values: np.ndarray, compression: hdf5plugin.Blosc) -> None:
    parent.create_dataset(
        name,
        data=values,
        chunks=(EVENT_CHUNK,),
        maxshape=(None,),
        track_times=False,
        **compression,
    )


def write_frames(directory: Path, frames: list[np.ndarray]) -> None:
    """uint8 frames (RGB or single-channel) as ``%06d.png``."""
    directory.mkdir(parents=True, exist_ok=True)
    for index, frame in enumerate(frames):
        image = Image.fromarray(np.ascontiguousarray(frame, dtype=np.uint8))
        image.save(directory / f"{index:06d}.png", format="PNG", compress_level=1)


def write_timestamps(path: Path, timestamps_us: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{int(t)}\n" for t in timestamps_us))


def write_json(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1) + "\n")
