"""Reader for DSEC-layout sequences (real DSEC and the toy world alike).

Layout of one sequence directory::

    events/left/events.h5        events/{x,y,p,t}, ms_to_idx, t_offset
    images/left/rectified/%06d.png
    images/timestamps.txt        one µs timestamp per line, clock of t_offset + events/t

Events are sliced by time the way DSEC's EventSlicer does: ``ms_to_idx[i]`` is
the index of the first event with ``t >= i*1000`` (relative to ``t_offset``), so
a slice needs only a short binary search at each end instead of scanning ``t``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401  (registers the Blosc filter used by DSEC files)
import numpy as np
from PIL import Image, UnidentifiedImageError


class DataError(ValueError):
    """Bad input data; the message names the file, sequence or window."""


@dataclass(frozen=True)
class Events:
    """Events of one time slice; ``t`` is absolute µs (t_offset already added)."""

    x: np.ndarray
    y: np.ndarray
    p: np.ndarray
    t: np.ndarray

    def __len__(self) -> int:
        return len(self.t)


class EventSlicer:
    """Time slicing of one ``events.h5`` through ``ms_to_idx``."""

    def __init__(self, path: str | Path, fallback_resolution: tuple[int, int] = (640, 480)):
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(f"{self.path}: events file missing")
        try:
            self._h5 = h5py.File(self.path, "r")
            events = self._h5["events"]
            self._x, self._y, self._p, self._t = (events[k] for k in ("x", "y", "p", "t"))
            self.ms_to_idx = np.asarray(self._h5["ms_to_idx"], dtype=np.int64)
            self.t_offset = int(self._h5["t_offset"][()])
        except (OSError, KeyError) as err:
            raise DataError(f"{self.path}: not a readable DSEC events file ({err})") from err
        self.width = int(events.attrs.get("width", fallback_resolution[0]))
        self.height = int(events.attrs.get("height", fallback_resolution[1]))
        n = len(self._t)
        if not (len(self._x) == len(self._y) == len(self._p) == n):
            raise DataError(f"{self.path}: events/x,y,p,t have different lengths")
        self.t_covered = self.t_offset + 1000 * max(len(self.ms_to_idx) - 1, 0)
        """End of the recording as ``ms_to_idx`` spans it (DSEC writes one entry per recorded ms)."""

    def close(self) -> None:
        self._h5.close()

    def __enter__(self) -> "EventSlicer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __len__(self) -> int:
        return len(self._t)

    def index_range(self, t_start_us: int, t_end_us: int) -> tuple[int, int]:
        """Indices [i0, i1) of the events with absolute time in [t_start_us, t_end_us)."""
        t0 = t_start_us - self.t_offset
        t1 = t_end_us - self.t_offset
        return self._first_index_at_or_after(t0), self._first_index_at_or_after(t1)

    def _first_index_at_or_after(self, t_rel: int) -> int:
        """Index of the first event with t >= t_rel, narrowed through ms_to_idx."""
        n = len(self._t)
        if t_rel <= 0:
            return 0
        ms = t_rel // 1000
        if ms >= len(self.ms_to_idx):
            return n
        lo = int(self.ms_to_idx[ms])
        hi = int(self.ms_to_idx[ms + 1]) if ms + 1 < len(self.ms_to_idx) else n
        return self._search(lo, hi, t_rel)

    def _search(self, lo: int, hi: int, t_rel: int) -> int:
        return lo + int(np.searchsorted(self._t[lo:hi], t_rel, side="left"))

    def get_events(self, t_start_us: int, t_end_us: int) -> Events:
        """Events with absolute time in [t_start_us, t_end_us), validated."""
        i0, i1 = self.index_range(t_start_us, t_end_us)
        ev = Events(
            x=np.asarray(self._x[i0:i1]),
            y=np.asarray(self._y[i0:i1]),
            p=np.asarray(self._p[i0:i1]),
            t=np.asarray(self._t[i0:i1], dtype=np.int64) + self.t_offset,
        )
        self._validate(ev, t_start_us, t_end_us)
        return ev

    def _validate(self, ev: Events, t0: int, t1: int) -> None:
        where = f"{self.path} [{t0}, {t1}) µs"
        if len(ev) and (ev.x.max() >= self.width or ev.y.max() >= self.height):
            raise DataError(
                f"{where}: event outside the {self.width}x{self.height} sensor "
                f"(max x={int(ev.x.max())}, max y={int(ev.y.max())})"
            )
        if len(ev) > 1 and np.any(np.diff(ev.t) < 0):
            raise DataError(f"{where}: event timestamps are not monotonic")
        if len(ev) and not np.isin(ev.p, (0, 1)).all():
            raise DataError(f"{where}: polarity values other than 0/1")


class Sequence:
    """One DSEC-layout sequence: event slicer, frame timestamps and frames."""

    def __init__(self, path: str | Path, fallback_resolution: tuple[int, int] = (640, 480)):
        self.path = Path(path)
        self.name = self.path.name
        if not self.path.is_dir():
            raise DataError(f"{self.path}: sequence directory missing")
        self.events = EventSlicer(self.path / "events/left/events.h5", fallback_resolution)
        self.frame_timestamps = read_timestamps(self.path / "images/timestamps.txt")
        self.frame_dir = self.path / "images/left/rectified"

    def close(self) -> None:
        self.events.close()

    def __enter__(self) -> "Sequence":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def frame_path(self, index: int) -> Path:
        return self.frame_dir / f"{index:06d}.png"

    def read_frame(self, index: int) -> np.ndarray:
        """Frame ``index`` as RGB uint8 [H, W, 3]."""
        return read_png(self.frame_path(index), "RGB", f"frame missing (sequence {self.name})")

    def frames_in(self, t_start_us: int, t_end_us: int) -> np.ndarray:
        """Indices of the frames with timestamp in [t_start_us, t_end_us)."""
        ts = self.frame_timestamps
        return np.flatnonzero((ts >= t_start_us) & (ts < t_end_us))

    @property
    def t_start(self) -> int:
        """First instant covered by both frames and the event recording."""
        return max(int(self.frame_timestamps[0]), self.events.t_offset)

    @property
    def t_end(self) -> int:
        """End of the time covered by both frames (the last lasts one frame period) and the event recording."""
        ts = self.frame_timestamps
        end = int(ts[-1] + (np.median(np.diff(ts)) if len(ts) > 1 else 0))
        return min(end, self.events.t_covered)


def read_timestamps(path: Path) -> np.ndarray:
    """Frame timestamps (µs, int64); must be strictly increasing."""
    if not path.is_file():
        raise DataError(f"{path}: timestamps file missing")
    try:
        ts = np.loadtxt(path, dtype=np.int64, ndmin=1)
    except ValueError as err:
        raise DataError(f"{path}: unreadable timestamps ({err})") from err
    if len(ts) == 0:
        raise DataError(f"{path}: no timestamps")
    bad = np.flatnonzero(np.diff(ts) <= 0)
    if len(bad):
        raise DataError(f"{path}: timestamps not increasing at line {int(bad[0]) + 2}")
    return ts


def window_starts(t_start: int, t_end: int, window_us: int) -> list[int]:
    """Start times of the back-to-back windows of ``window_us`` inside [t_start, t_end]."""
    n = math.floor((t_end - t_start) / window_us)
    return [t_start + i * window_us for i in range(max(n, 0))]


def list_sequences(root: str | Path, split: str, names: list[str] | None = None) -> list[Path]:
    """Sequence directories of ``<root>/<split>``: the given names or every directory, sorted."""
    split_dir = Path(root) / split
    if names is not None:
        paths = [split_dir / n for n in names]
        missing = [str(p) for p in paths if not p.is_dir()]
        if missing:
            raise DataError(f"sequence directories missing: {', '.join(missing)}")
        return paths
    if not split_dir.is_dir():
        raise DataError(f"{split_dir}: split directory missing")
    paths = sorted(p for p in split_dir.iterdir() if p.is_dir())
    if not paths:
        raise DataError(f"{split_dir}: no sequences")
    return paths


def read_png(path: Path, mode: str, missing: str) -> np.ndarray:
    """The PNG at ``path`` as a uint8 array in PIL ``mode``; DataError naming the file if missing or corrupt."""
    if not path.is_file():
        raise DataError(f"{path}: {missing}")
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert(mode))
    except (OSError, UnidentifiedImageError) as err:
        raise DataError(f"{path}: corrupt PNG ({err})") from err
