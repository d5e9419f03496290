"""Generates the toy world: every sequence of every split, in the DSEC layout.

One sequence = sample a scene, render it at ``render_rate_hz``, feed each render's
luminance to the event simulator, keep every (render_rate / frame_rate)-th render
as an RGB frame (with a map of which object each pixel shows), and write it all
with :mod:`eventspec.toyworld.writer`.

Each sequence has its own seed, derived from the world seed, the split and the
index only, so sequences do not depend on how many others there are nor on the
order in which worker processes produce them.
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from tqdm import tqdm

from eventspec.toyworld.scene import Scene, luminance, sample_scene
from eventspec.toyworld.simulator import EventBatch, EventSimulator
from eventspec.toyworld.writer import SequenceData, write_sequence

SPLITS = ("train", "test")
DAY_FRAME_NOISE, NIGHT_FRAME_NOISE = 1.5, 4.0
"""Std of the frames' sensor noise in 8-bit units: dark frames are noisier."""
GAMMA = 2.2
T_OFFSET_RANGE_US = (10**10, 10**11)
"""A large, per-sequence clock offset (as in DSEC), so readers that forget it fail loudly."""


def sequence_name(split: str, index: int) -> str:
    return f"toy_{split}_{index:03d}"


def sequence_seed(world_seed: int, split: str, index: int) -> int:
    """The seed of one sequence, from the world seed, the split and the index alone."""
    state = np.random.SeedSequence([world_seed, SPLITS.index(split), index]).generate_state(2, dtype=np.uint32)
    return int(state[0]) << 32 | int(state[1])


def generate_toy_world(root: str | Path, toy_cfg: dict, *, workers: int | None = None) -> list[Path]:
    """Write ``<root>/train/<seq>/`` and ``<root>/test/<seq>/`` for all sequences; return the sequence dirs.

    ``workers`` processes generate sequences in parallel (default: the available
    CPUs); the output does not depend on it. Workers are spawned, so a script that
    calls this with workers > 1 needs the usual ``if __name__ == "__main__"`` guard.
    """
    jobs = _sequence_jobs(Path(root), toy_cfg)
    workers = max(1, min(workers or len(os.sched_getaffinity(0)), len(jobs)))
    with tqdm(total=len(jobs), desc="toy world", unit="seq", file=sys.stderr) as progress:
        if workers == 1:
            for seq_dir, name, seed in jobs:
                generate_sequence(seq_dir, name, toy_cfg, seed)
                progress.update()
        else:
            with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
                futures = [pool.submit(generate_sequence, seq_dir, name, toy_cfg, seed) for seq_dir, name, seed in jobs]
                for future in as_completed(futures):
                    future.result()
                    progress.update()
    return [seq_dir for seq_dir, _, _ in jobs]


def _sequence_jobs(root: Path, toy_cfg: dict) -> list[tuple[Path, str, int]]:
    """(directory, name, seed) of every sequence, train split first."""
    jobs = []
    for split in SPLITS:
        for index in range(toy_cfg["sequences"][split]):
            name = sequence_name(split, index)
            jobs.append((root / split / name, name, sequence_seed(toy_cfg["seed"], split, index)))
    return jobs


def generate_sequence(seq_dir: Path, name: str, toy_cfg: dict, seed: int) -> None:
    """Simulate one sequence and write it to ``seq_dir`` in the DSEC layout."""
    write_sequence(Path(seq_dir), simulate_sequence(name, toy_cfg, seed))


def simulate_sequence(name: str, toy_cfg: dict, seed: int) -> SequenceData:
    """Render, simulate events and collect frames and ground truth for one sequence (in memory)."""
    render_rate, frame_rate = toy_cfg["render_rate_hz"], toy_cfg["frame_rate_hz"]
    if render_rate % frame_rate:
        raise ValueError(f"render_rate_hz ({render_rate}) must be a multiple of frame_rate_hz ({frame_rate})")
    renders_per_frame = render_rate // frame_rate
    n_renders = round(toy_cfg["duration_s"] * render_rate)
    scene_rng, sensor_rng, frame_rng, clock_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4)
    )
    width, height = toy_cfg["width"], toy_cfg["height"]
    scene = sample_scene(
        scene_rng,
        width,
        height,
        toy_cfg["duration_s"],
        toy_cfg["night_fraction"],
        toy_cfg["max_objects"],
        street_seed=toy_cfg["seed"],
    )
    sim_cfg = toy_cfg["simulator"]
    simulator = EventSimulator(
        height,
        width,
        contrast_pos=sim_cfg["contrast_pos"],
        contrast_neg=sim_cfg["contrast_neg"],
        contrast_spread=sim_cfg["contrast_spread"],
        refractory_us=sim_cfg["refractory_us"],
        noise_rate_hz=sim_cfg["noise_rate_hz"],
        rng=sensor_rng,
    )
    frame_noise = NIGHT_FRAME_NOISE if scene.time_of_day == "night" else DAY_FRAME_NOISE

    batches: list[EventBatch] = []
    frames: list[np.ndarray] = []
    object_maps: list[np.ndarray] = []
    frame_times: list[int] = []
    for step in range(n_renders + 1):
        t_us = round(step * 1_000_000 / render_rate)
        image = scene.render(t_us * 1e-6)
        if step == 0:
            simulator.reset(luminance(image), t_us)
        else:
            batches.append(simulator.step(luminance(image), t_us))
        if step % renders_per_frame == 0 and step < n_renders:
            frames.append(to_frame(image, frame_rng, frame_noise))
            object_maps.append(scene.object_map(t_us * 1e-6))
            frame_times.append(t_us)

    t_offset = int(clock_rng.integers(*T_OFFSET_RANGE_US))
    frame_times_us = np.array(frame_times, dtype=np.int64)
    return SequenceData(
        width=width,
        height=height,
        t_offset_us=t_offset,
        duration_us=round(toy_cfg["duration_s"] * 1_000_000),
        events=EventBatch.concatenate(batches),
        frames=frames,
        frame_times_us=frame_times_us,
        ground_truth=ground_truth(name, scene, frame_times_us, t_offset),
        object_maps=object_maps,
    )


def to_frame(image: np.ndarray, rng: np.random.Generator, noise_std: float) -> np.ndarray:
    """Linear RGB -> gamma-encoded RGB uint8 with Gaussian sensor noise."""
    encoded = np.clip(image, 0.0, 1.0) ** (1.0 / GAMMA) * 255.0
    noisy = encoded + noise_std * rng.standard_normal(encoded.shape)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def ground_truth(name: str, scene: Scene, frame_times_us: np.ndarray, t_offset_us: int) -> dict:
    """The toy ground truth: scene attributes, objects, and which objects each frame shows (absolute times)."""
    return {
        "sequence": name,
        "time_of_day": scene.time_of_day,
        "width": scene.width,
        "height": scene.height,
        "objects": [obj.describe() for obj in scene.objects],
        "frames": [
            {"t_us": t_offset_us + int(t), "visible": scene.visible_ids(int(t) * 1e-6)} for t in frame_times_us
        ],
    }
