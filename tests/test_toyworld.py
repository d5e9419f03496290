"""The toy world generator: DSEC layout, dtypes, ground truth, determinism, scene rendering."""

import copy
import json
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401  (registers the Blosc filter for reading)
import numpy as np
import pytest
from PIL import Image

from eventspec.toyworld.generate import generate_toy_world, sequence_seed, simulate_sequence
from eventspec.toyworld.scene import (
    CATEGORIES,
    COLORS,
    DIRECTIONS,
    MAX_HIDDEN_FRACTION,
    SPEEDS,
    Placement,
    SceneObject,
    Sprite,
    composite_sprite,
    hidden_fractions,
    make_sprite,
    sample_scene,
)
from eventspec.toyworld.simulator import EventBatch
from eventspec.toyworld.writer import SequenceData, write_sequence

TINY = {
    "seed": 11,
    "sequences": {"train": 2, "test": 1},
    "duration_s": 2,
    "width": 48,
    "height": 36,
    "frame_rate_hz": 20,
    "render_rate_hz": 200,
    "night_fraction": 0.5,
    "max_objects": 3,
    "simulator": {
        "contrast_pos": 0.2,
        "contrast_neg": 0.2,
        "contrast_spread": 0.03,
        "refractory_us": 1000,
        "noise_rate_hz": 0.5,
    },
}
EXPECTED = ["train/toy_train_000", "train/toy_train_001", "test/toy_test_000"]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> tuple[Path, list[Path]]:
    root = tmp_path_factory.mktemp("toy")
    return root, generate_toy_world(root, TINY, workers=1)


def file_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def read_events(seq: Path) -> dict:
    with h5py.File(seq / "events/left/events.h5", "r") as f:
        out = {name: f[f"events/{name}"][:] for name in "xypt"}
        out["ms_to_idx"] = f["ms_to_idx"][:]
        out["t_offset"] = f["t_offset"][()]
        out["attrs"] = dict(f["events"].attrs)
        out["filters"] = f["events/t"]._filters
    return out


def test_layout(world):
    root, dirs = world
    assert [str(d.relative_to(root)) for d in dirs] == EXPECTED
    n_frames = TINY["duration_s"] * TINY["frame_rate_hz"]
    for seq in dirs:
        assert (seq / "events/left/events.h5").is_file()
        assert (seq / "images/timestamps.txt").is_file()
        assert (seq / "toy_ground_truth.json").is_file()
        for frame_dir in ("images/left/rectified", "toy_objects/left"):
            frames = sorted((seq / frame_dir).glob("*.png"))
            assert [f.name for f in frames] == [f"{i:06d}.png" for i in range(n_frames)]
    assert not list(root.rglob("*.partial"))


def test_object_maps_mark_each_object_where_it_is_drawn(world):
    _, dirs = world
    for seq in dirs:
        gt = json.loads((seq / "toy_ground_truth.json").read_text())
        ids = {obj["id"] + 1 for obj in gt["objects"]}
        for index in (0, len(gt["frames"]) - 1):
            labels = np.asarray(Image.open(seq / f"toy_objects/left/{index:06d}.png"))
            assert labels.shape == (TINY["height"], TINY["width"]) and labels.dtype == np.uint8
            assert set(np.unique(labels)) - {0} == ids  # every object shows, nothing else is labelled


def test_event_file_matches_dsec(world):
    _, dirs = world
    for seq in dirs:
        ev = read_events(seq)
        assert ev["x"].dtype == np.uint16 and ev["y"].dtype == np.uint16
        assert ev["p"].dtype == np.uint8 and ev["t"].dtype == np.uint32
        assert ev["ms_to_idx"].dtype == np.uint64
        assert ev["t_offset"].dtype == np.int64 and np.ndim(ev["t_offset"]) == 0 and ev["t_offset"] > 10**9
        assert "32001" in ev["filters"]  # Blosc
        assert ev["attrs"]["width"] == TINY["width"] and ev["attrs"]["height"] == TINY["height"]
        assert len(ev["t"]) > 0 and np.all(np.diff(ev["t"].astype(np.int64)) >= 0)
        assert ev["t"][-1] <= TINY["duration_s"] * 1_000_000
        assert np.all(ev["x"] < TINY["width"]) and np.all(ev["y"] < TINY["height"])
        assert set(np.unique(ev["p"])) <= {0, 1}


def test_ms_to_idx_follows_the_dsec_definition(world):
    _, dirs = world
    for seq in dirs:
        ev = read_events(seq)
        t, idx = ev["t"].astype(np.int64), ev["ms_to_idx"].astype(np.int64)
        assert len(idx) == TINY["duration_s"] * 1000 + 1
        for ms, i in enumerate(idx):
            if i > 0:
                assert t[i - 1] < ms * 1000
            if i < len(t):
                assert ms * 1000 <= t[i]


def test_frame_timestamps_and_images(world):
    _, dirs = world
    for seq in dirs:
        ev = read_events(seq)
        stamps = np.loadtxt(seq / "images/timestamps.txt", dtype=np.int64)
        np.testing.assert_array_equal(np.diff(stamps), 1_000_000 // TINY["frame_rate_hz"])
        assert stamps[0] == ev["t_offset"]
        assert stamps[-1] <= ev["t_offset"] + TINY["duration_s"] * 1_000_000
        gt = json.loads((seq / "toy_ground_truth.json").read_text())
        assert [f["t_us"] for f in gt["frames"]] == stamps.tolist()
        with Image.open(seq / "images/left/rectified/000000.png") as img:
            assert img.mode == "RGB" and img.size == (TINY["width"], TINY["height"])


def test_ground_truth_fields(world):
    _, dirs = world
    for seq in dirs:
        gt = json.loads((seq / "toy_ground_truth.json").read_text())
        assert gt["sequence"] == seq.name
        assert gt["time_of_day"] in ("day", "night")
        assert (gt["width"], gt["height"]) == (TINY["width"], TINY["height"])
        assert len(gt["objects"]) <= TINY["max_objects"]
        ids = set()
        for obj in gt["objects"]:
            assert set(obj) == {"id", "category", "color", "direction", "speed"}
            assert obj["category"] in CATEGORIES and obj["color"] in COLORS
            assert obj["direction"] in DIRECTIONS and obj["speed"] in SPEEDS
            ids.add(obj["id"])
        for frame in gt["frames"]:
            assert set(frame) == {"t_us", "visible"} and set(frame["visible"]) <= ids


def test_regeneration_is_byte_identical_and_order_independent(world, tmp_path):
    root, _ = world
    generate_toy_world(tmp_path, TINY, workers=2)
    assert file_bytes(tmp_path) == file_bytes(root)


def test_other_seed_differs_and_test_split_ignores_train_count(world, tmp_path):
    root, _ = world
    other = copy.deepcopy(TINY)
    other["sequences"] = {"train": 0, "test": 1}
    generate_toy_world(tmp_path / "same", other, workers=1)
    assert file_bytes(tmp_path / "same") == {k: v for k, v in file_bytes(root).items() if k.startswith("test/")}
    other["seed"] = TINY["seed"] + 1
    generate_toy_world(tmp_path / "reseeded", other, workers=1)
    h5 = "test/toy_test_000/events/left/events.h5"
    assert (tmp_path / "reseeded" / h5).read_bytes() != (root / h5).read_bytes()


def test_day_frames_are_brighter_than_night_frames():
    cfg = copy.deepcopy(TINY)
    cfg["duration_s"] = 0.5
    brightness = {}
    for label, fraction in (("day", 0.0), ("night", 1.0)):
        cfg["night_fraction"] = fraction
        data = simulate_sequence("x", cfg, sequence_seed(3, "train", 0))
        assert data.ground_truth["time_of_day"] == label
        brightness[label] = np.mean(data.frames)
    assert brightness["day"] > 2 * brightness["night"]


def test_sequence_seeds_depend_on_split_and_index_only():
    seeds = {sequence_seed(5, split, i) for split in ("train", "test") for i in range(50)}
    assert len(seeds) == 100
    assert sequence_seed(5, "test", 3) == sequence_seed(5, "test", 3) != sequence_seed(6, "test", 3)


def test_render_rate_must_be_a_multiple_of_frame_rate():
    cfg = copy.deepcopy(TINY)
    cfg["render_rate_hz"] = 130
    with pytest.raises(ValueError):
        simulate_sequence("x", cfg, 0)


def test_writer_refuses_to_replace_a_foreign_directory(tmp_path):
    foreign = tmp_path / "seq"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("keep me")
    data = SequenceData(
        width=4,
        height=3,
        t_offset_us=10**10,
        duration_us=1000,
        events=EventBatch.empty(),
        frames=[np.zeros((3, 4, 3), np.uint8)],
        frame_times_us=np.array([0]),
        ground_truth={},
        object_maps=[np.zeros((3, 4), np.uint8)],
    )
    with pytest.raises(FileExistsError):
        write_sequence(foreign, data)
    assert (foreign / "precious.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seq"]


def _object_at(x: float, sprite: Sprite | None = None) -> SceneObject:
    """An object standing still with its centre at x (a white car unless another sprite is given)."""
    place = Placement(center_x=x, bottom_y=30.0, px_per_unit=1.5)
    sprite = sprite or make_sprite("car", "white", night=False)
    return SceneObject(0, "car", "white", "right", "slow", 0.0, 1.0, place, place, sprite)


def _render(obj: SceneObject) -> np.ndarray:
    image = np.zeros((40, 60, 3), np.float32)
    composite_sprite(image, obj.sprite, obj.pose(0.5))
    return image


def test_sprite_compositing_conserves_coverage():
    raster = make_sprite("car", "white", night=False).raster.copy()
    raster[:3] = raster[3]  # an opaque white silhouette: intensity sums to the covered area
    obj = _object_at(30.3, Sprite.from_raster(raster))
    pose = obj.pose(0.5)
    assert _render(obj)[..., 0].sum() == pytest.approx(raster[3].mean() * pose.width * pose.height, rel=1e-4)


def test_sub_pixel_motion_changes_the_image_smoothly():
    change = np.abs(_render(_object_at(30.1)) - _render(_object_at(30.0)))
    assert 0.0 < change.max() < 0.15  # a tenth of a pixel moves at most ~a tenth of a pixel's intensity


def test_visibility_needs_half_the_object_inside():
    obj = _object_at(0.0)
    pose = obj.pose(0.5)
    assert pose.fraction_inside(60, 40) == pytest.approx(0.5)
    assert _object_at(-5.0).pose(0.5).fraction_inside(60, 40) < 0.5


@pytest.mark.parametrize("seed", range(40))
def test_sampled_objects_stay_in_plain_view(seed):
    duration = 1.0
    scene = sample_scene(np.random.default_rng(seed), 96, 72, duration, 0.3, 3)
    assert len({o.category for o in scene.objects}) == len(scene.objects)
    for t in np.linspace(0.0, duration, 21):
        for obj in scene.objects:
            assert obj.pose(t).fraction_inside(96, 72) == pytest.approx(1.0)
        assert max(hidden_fractions(list(scene.objects), t, 96, 72), default=0.0) <= MAX_HIDDEN_FRACTION + 0.02


def test_hidden_fraction_counts_only_objects_in_front():
    back, front = _object_at(30.0), _object_at(34.0)
    front = SceneObject(1, "car", "red", "right", "slow", 0.0, 1.0, *([Placement(34.0, 32.0, 1.5)] * 2), front.sprite)
    hidden_back, hidden_front = hidden_fractions([back, front], 0.5, 60, 40)
    assert hidden_front == 0.0 and hidden_back > 0.5


def test_depth_movers_show_their_front_or_back():
    for category in CATEGORIES:
        front = make_sprite(category, "white", night=False, view="front").raster
        back = make_sprite(category, "white", night=False, view="back").raster
        side = make_sprite(category, "white", night=False).raster
        assert front.shape == back.shape != side.shape
        assert not np.array_equal(front, back)


def test_a_world_shows_one_street():
    scenes = [sample_scene(np.random.default_rng(seed), 96, 72, 1.0, 0.0, 3, street_seed=5) for seed in range(3)]
    assert all(np.array_equal(s.background, scenes[0].background) for s in scenes)
    other = sample_scene(np.random.default_rng(0), 96, 72, 1.0, 0.0, 3, street_seed=6)
    assert not np.array_equal(other.background, scenes[0].background)
