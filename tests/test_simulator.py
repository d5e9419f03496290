"""The event simulator on hand-made luminance sequences."""

import numpy as np
import pytest

from eventspec.toyworld.simulator import LOG_EPS, EventBatch, EventSimulator

H, W = 24, 32


def make_simulator(**overrides) -> EventSimulator:
    params = dict(
        height=H,
        width=W,
        contrast_pos=0.2,
        contrast_neg=0.2,
        contrast_spread=0.0,
        refractory_us=0,
        noise_rate_hz=0.0,
        rng=np.random.default_rng(0),
    )
    params.update(overrides)
    return EventSimulator(**params)


def run(simulator: EventSimulator, images: list[np.ndarray], step_us: int) -> EventBatch:
    simulator.reset(images[0], 0)
    return EventBatch.concatenate([simulator.step(img, i * step_us) for i, img in enumerate(images[1:], start=1)])


def textured(seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.1, 0.9, size=(H, W))


def moving_pattern(n_steps: int) -> list[np.ndarray]:
    """A smooth random texture sliding right by 0.3 px per step (linear interpolation)."""
    rng = np.random.default_rng(7)
    strip = rng.uniform(0.05, 0.95, size=(H, W + n_steps))
    images = []
    for i in range(n_steps):
        shift = 0.3 * i
        k, f = int(shift), shift - int(shift)
        images.append((1 - f) * strip[:, k : k + W] + f * strip[:, k + 1 : k + 1 + W])
    return images


def test_static_scene_gives_only_noise_at_the_configured_rate():
    rate, duration_s, step_us = 2.0, 10.0, 10_000
    images = [textured()] * (int(duration_s * 1e6 / step_us) + 1)
    events = run(make_simulator(noise_rate_hz=rate), images, step_us)
    expected = rate * H * W * duration_s
    assert abs(len(events) - expected) < 4 * np.sqrt(expected)
    assert 0.45 < events.p.mean() < 0.55
    assert len(run(make_simulator(noise_rate_hz=0.0), images, step_us)) == 0


@pytest.mark.parametrize("brighten", [True, False])
def test_brightness_change_gives_one_polarity_exactly_where_it_changed(brighten):
    low, high = 0.2, 0.8
    region = (slice(5, 15), slice(10, 20))
    images = []
    for level in np.linspace(low, high, 21) if brighten else np.linspace(high, low, 21):
        img = np.full((H, W), 0.5)
        img[region] = level
        images.append(img)
    events = run(make_simulator(), images, 2500)
    assert np.all(events.p == (1 if brighten else 0))
    counts = np.zeros((H, W), dtype=int)
    np.add.at(counts, (events.y, events.x), 1)
    crossings = int(np.log((high + LOG_EPS) / (low + LOG_EPS)) / 0.2)
    assert np.all(counts[region] == crossings)
    assert counts.sum() == crossings * counts[region].size


def test_crossing_times_interpolate_between_renders():
    start = np.full((H, W), 0.3)
    end = (start + LOG_EPS) * np.exp(1.05) - LOG_EPS  # log level rises by 1.05: four crossings of 0.25
    simulator = make_simulator(contrast_pos=0.25)
    simulator.reset(start, 10_000)
    events = simulator.step(end, 12_000)
    per_pixel = np.sort(events.t[(events.x == 3) & (events.y == 4)])
    expected = np.ceil(10_000 + 2_000 * np.array([0.25, 0.5, 0.75, 1.0]) / 1.05)
    np.testing.assert_array_equal(per_pixel, expected)


def test_doubling_the_threshold_roughly_halves_the_events():
    images = moving_pattern(60)
    n_small = len(run(make_simulator(contrast_pos=0.1, contrast_neg=0.1, contrast_spread=0.03), images, 2500))
    n_large = len(run(make_simulator(contrast_pos=0.2, contrast_neg=0.2, contrast_spread=0.03), images, 2500))
    assert n_small > 1000
    assert 0.4 < n_large / n_small < 0.6


def test_refractory_period_is_respected_including_noise():
    refractory = 1000
    images = [np.full((H, W), 0.01 * 1.8**i) for i in range(8)]  # every step: ~3 crossings per pixel
    events = run(make_simulator(refractory_us=refractory, noise_rate_hz=200.0), images, 2500)
    unfiltered = run(make_simulator(refractory_us=0, noise_rate_hz=200.0), images, 2500)
    assert 0 < len(events) < len(unfiltered)
    pixel = events.y.astype(int) * W + events.x
    order = np.lexsort((events.t, pixel))
    same_pixel = pixel[order][1:] == pixel[order][:-1]
    gaps = np.diff(events.t[order])[same_pixel]
    assert gaps.size > 0 and gaps.min() >= refractory


def test_events_are_sorted_inside_the_step_and_on_the_sensor():
    simulator = make_simulator(noise_rate_hz=20.0, contrast_spread=0.05, refractory_us=500)
    images = moving_pattern(30)
    simulator.reset(images[0], 1_000)
    for i, img in enumerate(images[1:], start=1):
        t_prev, t_now = 1_000 + (i - 1) * 2500, 1_000 + i * 2500
        batch = simulator.step(img, t_now)
        assert batch.x.dtype == np.uint16 and batch.y.dtype == np.uint16 and batch.p.dtype == np.uint8
        assert np.all(np.diff(batch.t) >= 0)
        assert np.all((batch.t > t_prev) & (batch.t <= t_now))
        assert np.all(batch.x < W) and np.all(batch.y < H)


def test_step_requires_reset_and_increasing_time():
    simulator = make_simulator()
    with pytest.raises(RuntimeError):
        simulator.step(textured(), 100)
    simulator.reset(textured(), 100)
    with pytest.raises(ValueError):
        simulator.step(textured(), 100)
