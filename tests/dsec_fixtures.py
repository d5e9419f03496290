"""Hand-made DSEC-layout sequences for reader and sample tests."""

from __future__ import annotations

from pathlib import Path

import h5py
import hdf5plugin
import numpy as np
from PIL import Image


def ms_to_idx(t: np.ndarray, n_ms: int) -> np.ndarray:
    """DSEC's definition: entry i is the index of the first event with t >= i*1000."""
    return np.searchsorted(t, np.arange(n_ms) * 1000, side="left").astype(np.uint64)


def write_events(path: Path, x, y, p, t, t_offset: int, width: int | None = 32, height: int | None = 24, n_ms=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.asarray(t, dtype=np.uint32)
    n_ms = n_ms if n_ms is not None else int(t.max() // 1000) + 2 if len(t) else 1
    blosc = hdf5plugin.Blosc(cname="zstd", clevel=5, shuffle=hdf5plugin.Blosc.SHUFFLE)
    with h5py.File(path, "w") as f:
        ev = f.create_group("events")
        for name, values, dtype in (("x", x, np.uint16), ("y", y, np.uint16), ("p", p, np.uint8), ("t", t, np.uint32)):
            ev.create_dataset(name, data=np.asarray(values, dtype=dtype), chunks=True, **blosc)
        if width is not None:
            ev.attrs["width"], ev.attrs["height"] = width, height
        f.create_dataset("ms_to_idx", data=ms_to_idx(np.asarray(t, dtype=np.int64), n_ms))
        f.create_dataset("t_offset", data=np.int64(t_offset))


def write_frames(seq: Path, timestamps, width: int = 32, height: int = 24):
    frames = seq / "images/left/rectified"
    frames.mkdir(parents=True, exist_ok=True)
    for i, _ in enumerate(timestamps):
        img = np.full((height, width, 3), i * 10 % 256, dtype=np.uint8)
        Image.fromarray(img).save(frames / f"{i:06d}.png")
    (seq / "images/timestamps.txt").write_text("".join(f"{int(ts)}\n" for ts in timestamps))


def make_sequence(root: Path, name: str = "seq_a", split: str = "train", duration_ms: int = 2000, t_offset: int = 10**9,
                  rate_per_ms: int = 3, width: int = 32, height: int = 24, frame_period_us: int = 50_000, seed: int = 0):
    """A sequence with ``rate_per_ms`` events every ms and frames every ``frame_period_us``."""
    rng = np.random.default_rng(seed)
    n = duration_ms * rate_per_ms
    t = np.sort(rng.integers(0, duration_ms * 1000, n))
    seq = root / split / name
    write_events(seq / "events/left/events.h5", rng.integers(0, width, n), rng.integers(0, height, n),
                 rng.integers(0, 2, n), t, t_offset, width, height, n_ms=duration_ms + 1)
    write_frames(seq, t_offset + np.arange(0, duration_ms * 1000, frame_period_us), width, height)
    return seq
