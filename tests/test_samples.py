import json

import numpy as np
import pytest
import zarr

from dsec_fixtures import make_sequence
from eventspec import config as config_mod
from eventspec.digest import read_digest, write_digest
from eventspec.dsec import DataError
from eventspec.questions import TOY, answers, load_question_set, window_ground_truth
from eventspec.samples import evenly_spaced, prepare_samples, render_event_chunks, render_event_image


def sample_config(root, **samples):
    return config_mod.validate({"data": {"source": "dsec", "root": str(root)}, "samples": samples})


def test_event_image_colours_latest_polarity():
    x = np.array([1, 1, 2])
    y = np.array([0, 0, 1])
    p = np.array([1, 0, 1])
    img = render_event_image(x, y, p, width=4, height=3)
    assert tuple(img[0, 1]) == (255, 0, 0)  # OFF came last at (1, 0)
    assert tuple(img[1, 2]) == (0, 0, 255)
    assert (img[2] == 255).all()


def test_event_chunks_have_equal_counts():
    n = 103
    x = np.arange(n) % 10
    chunks = render_event_chunks(x, np.zeros(n, int), np.ones(n, int), 10, 1, 5)
    assert chunks.shape == (5, 1, 10, 3)
    # chunk boundaries at round(linspace): 0 21 41 62 82 103, each chunk covers all 10 columns
    assert all((c != 255).any(-1).sum() == 10 for c in chunks)


def test_evenly_spaced_frames_include_ends():
    np.testing.assert_array_equal(evenly_spaced(np.arange(20, 40), 8), [20, 23, 25, 28, 31, 34, 36, 39])


def test_prepare_samples_cuts_whole_windows(tmp_path):
    make_sequence(tmp_path, "a", duration_ms=3000)
    make_sequence(tmp_path, "b", duration_ms=2000, seed=1)
    out = prepare_samples(sample_config(tmp_path, window_ms=500, questions="dsec", max_questions=3), "train", tmp_path / "s.zarr")
    g = zarr.open_group(out, mode="r")
    n = g.attrs["n_committed"]
    # recordings span [0, 3 s) and [0, 2 s): 6 + 4 whole 500 ms windows
    assert n == 10
    assert list(g["sequence"][:]) == ["a"] * 6 + ["b"] * 4
    assert list(g["window"][:]) == [0, 1, 2, 3, 4, 5, 0, 1, 2, 3]
    assert g["event_images"].shape == (10, 5, 24, 32, 3)
    assert g["frames"].shape == (10, 8, 24, 32, 3)
    np.testing.assert_array_equal(g["t_end_us"][:] - g["t_start_us"][:], 500_000)
    assert g["t_end_us"][5] - 10**9 == 3_000_000
    assert (g["num_events"][:] > 1000).all()
    assert g["answers"].shape == (10, 3) and set(g["answers"][:].ravel()) == {""}
    assert [q["qid"] for q in g.attrs["questions"]] == ["dsec_0", "dsec_1", "dsec_2"]
    assert "object_maps" not in g and "objects" not in g  # no toy ground truth, no labels
    assert not (tmp_path / "s.zarr.partial").exists()


def test_digest_is_deterministic_and_content_sensitive(tmp_path):
    make_sequence(tmp_path, "a")
    cfg = sample_config(tmp_path)
    d1 = write_digest(prepare_samples(cfg, "train", tmp_path / "1.zarr"), tmp_path / "1.json")
    d2 = write_digest(prepare_samples(cfg, "train", tmp_path / "2.zarr"), tmp_path / "2.json")
    assert d1 == d2 == read_digest(tmp_path / "1.json")
    cfg2 = sample_config(tmp_path, window_ms=500)
    d3 = write_digest(prepare_samples(cfg2, "train", tmp_path / "3.zarr"), tmp_path / "3.json")
    assert d3["arrays"]["frames"] != d1["arrays"]["frames"]


def test_window_without_events_is_named(tmp_path):
    make_sequence(tmp_path, "quiet", rate_per_ms=0)
    with pytest.raises(DataError, match=r"sequence quiet window 0 .* has no events"):
        prepare_samples(sample_config(tmp_path), "train", tmp_path / "s.zarr")
    assert not (tmp_path / "s.zarr").exists()


def test_window_with_too_few_frames_is_named(tmp_path):
    make_sequence(tmp_path, "slow", frame_period_us=200_000)
    with pytest.raises(DataError, match=r"sequence slow window 0 .* has 5 frames, needs 8"):
        prepare_samples(sample_config(tmp_path), "train", tmp_path / "s.zarr")
    assert not (tmp_path / "s.zarr").exists()


def test_unknown_question_set(tmp_path):
    with pytest.raises(DataError, match="samples.questions: unknown question set 'nope'"):
        load_question_set("nope", 10)
    path = tmp_path / "q.json"
    path.write_text(json.dumps({"not": "a list"}))
    with pytest.raises(DataError, match="must be a JSON list"):
        load_question_set(str(path), 10)
    path.write_text(json.dumps(["Why?", "How?"]))
    assert [q.text for q in load_question_set(str(path), 10)] == ["Why?", "How?"]


def test_toy_answers_from_ground_truth():
    gt = {
        "time_of_day": "night",
        "objects": [
            {"id": 0, "category": "car", "color": "red", "direction": "left", "speed": "fast"},
            {"id": 1, "category": "truck", "color": "blue", "direction": "approaching", "speed": "slow"},
        ],
        "frames": [{"t_us": t, "visible": [0, 1] if t < 300 else [1]} for t in range(0, 1000, 100)],
    }
    w = window_ground_truth(gt, 0, 1000)
    assert [o["id"] for o in w["objects"]] == [1]  # car visible in 3 of 10 frames only
    w = window_ground_truth(gt, 0, 400)
    by_id = dict(zip([q.qid for q in TOY], answers(TOY, w)))
    assert by_id["objects"] == "a red car and a blue truck ."
    assert by_id["count"] == "there are two moving objects ."
    assert by_id["time_of_day"] == "it is night ."
    assert by_id["fast"] == "yes , the car is moving fast ."
    assert by_id["approaching"] == "yes , a blue truck is approaching ."
    assert by_id["describe"] == "a night road scene with a fast red car moving left and a slow blue truck approaching ."
    assert all(3 <= len(a.split()) <= 30 for a in by_id.values())
