"""Event-camera simulator: the log-intensity contrast-threshold model (ESIM / v2e, simplified).

Each pixel remembers a reference log level. When a new luminance image arrives,
every crossing of ``reference + k * C+`` (ON) or ``reference - k * C-`` (OFF) since
the previous image becomes one event, time-stamped by linear interpolation of the
log level between the two images. Thresholds vary per pixel (fixed per sensor).
After an event the pixel is blind for the refractory period: crossings inside it
are lost, but the reference still moves past them, as a real pixel whose reset
swallows the change. Background activity adds Poisson noise events of random
polarity; they pass the same refractory filter and leave the reference alone.

Only the loop over images is in Python; everything per pixel is vectorised.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LOG_EPS = 0.01
"""Offset in log(I + eps): models the photoreceptor's dark current, so that very dark
pixels (night) respond with less contrast instead of amplifying tiny changes."""

MIN_THRESHOLD_FRACTION = 0.25
"""Per-pixel thresholds are clipped to at least this fraction of the nominal value,
so a wide spread cannot produce zero or negative thresholds."""


@dataclass(frozen=True)
class EventBatch:
    """Events sorted by time: x, y (uint16), t (int64, µs, same clock as the input), p (uint8, 1 = ON)."""

    x: np.ndarray
    y: np.ndarray
    t: np.ndarray
    p: np.ndarray

    def __len__(self) -> int:
        return int(self.t.size)

    @staticmethod
    def empty() -> EventBatch:
        return EventBatch(
            x=np.empty(0, np.uint16), y=np.empty(0, np.uint16), t=np.empty(0, np.int64), p=np.empty(0, np.uint8)
        )

    @staticmethod
    def concatenate(batches: list[EventBatch]) -> EventBatch:
        if not batches:
            return EventBatch.empty()
        return EventBatch(
            x=np.concatenate([b.x for b in batches]),
            y=np.concatenate([b.y for b in batches]),
            t=np.concatenate([b.t for b in batches]),
            p=np.concatenate([b.p for b in batches]),
        )


class EventSimulator:
    """Turns a stream of luminance images into events.

    Call :meth:`reset` with the first image (no events), then :meth:`step` with each
    following image and its timestamp. Events of one step lie in ``(t_prev, t_us]``.
    """

    def __init__(
        self,
        height: int,
        width: int,
        contrast_pos: float,
        contrast_neg: float,
        contrast_spread: float,
        refractory_us: int,
        noise_rate_hz: float,
        rng: np.random.Generator,
        log_eps: float = LOG_EPS,
    ) -> None:
        self.height = height
        self.width = width
        self.refractory_us = int(refractory_us)
        self.noise_rate_hz = float(noise_rate_hz)
        self.log_eps = log_eps
        self._rng = rng
        self._c_pos = _pixel_thresholds(contrast_pos, contrast_spread, height * width, rng)
        self._c_neg = _pixel_thresholds(contrast_neg, contrast_spread, height * width, rng)
        self._log_ref: np.ndarray | None = None
        self._log_prev: np.ndarray | None = None
        self._t_prev = 0
        self._last_event_t = np.full(height * width, np.iinfo(np.int64).min // 2, dtype=np.int64)

    def reset(self, luminance: np.ndarray, t_us: int) -> None:
        """Start (or restart) at this image: references = its log levels; no events."""
        log_level = self._log(luminance)
        self._log_ref = log_level.copy()
        self._log_prev = log_level
        self._t_prev = int(t_us)
        self._last_event_t.fill(np.iinfo(np.int64).min // 2)

    def step(self, luminance: np.ndarray, t_us: int) -> EventBatch:
        """Events caused by the change from the previous image to this one (at ``t_us``)."""
        if self._log_ref is None:
            raise RuntimeError("call reset() with the first image before step()")
        t_us = int(t_us)
        if t_us <= self._t_prev:
            raise ValueError(f"timestamps must increase: {t_us} after {self._t_prev}")
        log_new = self._log(luminance)
        pix, t, p = self._threshold_crossings(log_new, t_us)
        noise_pix, noise_t, noise_p = self._noise_events(t_us)
        pix = np.concatenate([pix, noise_pix])
        t = np.concatenate([t, noise_t])
        p = np.concatenate([p, noise_p])
        if self.refractory_us > 0 and pix.size:
            keep = self._refractory_keep(pix, t)
            pix, t, p = pix[keep], t[keep], p[keep]
        self._log_prev = log_new
        self._t_prev = t_us
        order = np.argsort(t, kind="stable")
        pix, t, p = pix[order], t[order], p[order]
        return EventBatch(
            x=(pix % self.width).astype(np.uint16),
            y=(pix // self.width).astype(np.uint16),
            t=t,
            p=p,
        )

    def _log(self, luminance: np.ndarray) -> np.ndarray:
        if luminance.shape != (self.height, self.width):
            raise ValueError(f"expected a {self.height}x{self.width} luminance image, got {luminance.shape}")
        return np.log(luminance.astype(np.float64).ravel() + self.log_eps)

    def _threshold_crossings(self, log_new: np.ndarray, t_us: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All ON and OFF crossings since the previous image; advances the references past them."""
        delta = log_new - self._log_ref
        n_on = np.floor(np.maximum(delta, 0.0) / self._c_pos).astype(np.int64)
        n_off = np.floor(np.maximum(-delta, 0.0) / self._c_neg).astype(np.int64)
        on = self._crossing_times(n_on, self._c_pos, log_new, t_us)
        off = self._crossing_times(n_off, -self._c_neg, log_new, t_us)
        self._log_ref += n_on * self._c_pos - n_off * self._c_neg
        pix = np.concatenate([on[0], off[0]])
        t = np.concatenate([on[1], off[1]])
        p = np.concatenate([np.ones(on[0].size, np.uint8), np.zeros(off[0].size, np.uint8)])
        return pix, t, p

    def _crossing_times(
        self, counts: np.ndarray, signed_threshold: np.ndarray, log_new: np.ndarray, t_us: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Pixel index and integer time of the k-th crossing (k = 1..count) of every pixel.

        Crossing k sits at level ``ref + k * C``; its time interpolates linearly between
        the previous and the new log level. Times are rounded up, so they stay in
        ``(t_prev, t_us]``.
        """
        pixels = np.flatnonzero(counts)
        if pixels.size == 0:
            return pixels, np.empty(0, np.int64)
        n = counts[pixels]
        pix = np.repeat(pixels, n)
        k = np.arange(pix.size) - np.repeat(np.cumsum(n) - n, n) + 1
        level = self._log_ref[pix] + k * signed_threshold[pix]
        start = self._log_prev[pix]
        fraction = np.clip((level - start) / (log_new[pix] - start), 0.0, 1.0)
        t = np.ceil(self._t_prev + fraction * (t_us - self._t_prev)).astype(np.int64)
        return pix, np.clip(t, self._t_prev + 1, t_us)

    def _noise_events(self, t_us: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Background activity: Poisson events at uniformly random pixels, times and polarities."""
        expected = self.noise_rate_hz * self.height * self.width * (t_us - self._t_prev) * 1e-6
        count = int(self._rng.poisson(expected)) if expected > 0 else 0
        pix = self._rng.integers(0, self.height * self.width, size=count)
        t = self._rng.integers(self._t_prev + 1, t_us + 1, size=count)
        p = self._rng.integers(0, 2, size=count).astype(np.uint8)
        return pix, t, p

    def _refractory_keep(self, pix: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Mask of events that fall outside the refractory period of the pixel's last kept event.

        Candidates are visited in rounds: round r takes the r-th earliest candidate of
        every pixel, so each round touches every pixel at most once and stays vectorised.
        The number of rounds is the largest number of candidates any pixel has in this step.
        """
        order = np.lexsort((t, pix))
        pix_sorted = pix[order]
        group_start = np.flatnonzero(np.r_[True, pix_sorted[1:] != pix_sorted[:-1]])
        sizes = np.diff(np.r_[group_start, pix_sorted.size])
        rank = np.arange(pix_sorted.size) - np.repeat(group_start, sizes)
        keep_sorted = np.zeros(pix_sorted.size, dtype=bool)
        t_sorted = t[order]
        for r in range(int(sizes.max())):
            idx = np.flatnonzero(rank == r)
            p_r, t_r = pix_sorted[idx], t_sorted[idx]
            ok = t_r - self._last_event_t[p_r] >= self.refractory_us
            keep_sorted[idx[ok]] = True
            self._last_event_t[p_r[ok]] = t_r[ok]
        keep = np.empty_like(keep_sorted)
        keep[order] = keep_sorted
        return keep


def _pixel_thresholds(nominal: float, spread: float, n_pixels: int, rng: np.random.Generator) -> np.ndarray:
    """Per-pixel thresholds ``nominal * (1 + N(0, spread))``, drawn once per sensor."""
    if nominal <= 0:
        raise ValueError(f"contrast thresholds must be positive, got {nominal}")
    thresholds = nominal * (1.0 + spread * rng.standard_normal(n_pixels))
    return np.maximum(thresholds, MIN_THRESHOLD_FRACTION * nominal)
