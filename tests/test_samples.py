import json

import numpy as np
import pytest
import zarr

from dsec_fixtures import make_sequence
from eventspec import config as config_mod
from eventspec.digest import read_digest, write_digest
from eventspec.dsec import DataError
from eventspec.questions import TOY, answers, load_question_set, window_ground_truth
from eventspec.event_images import chunk_bounds, event_canvas, pad_to_sensor, render_event_chunks, render_event_image
from eventspec.samples import evenly_spaced, prepare_samples


def sample_config(root, **samples):
    return config_mod.validate({"data": {"source": "dsec", "root": str(root)}, "samples": samples})


BLUE, RED, WHITE = (0, 0, 255), (255, 0, 0), (255, 255, 255)


def test_event_image_is_eventgpts_canvas_and_colours():
    """EventGPT draws on (y.max() + 1, x.max() + 1), polarity 0 blue, 1 red, the latest event winning a pixel."""
    x, y, p = np.array([1, 1, 3, 0]), np.array([0, 0, 1, 1]), np.array([1, 0, 1, 0])

    img = render_event_image(x, y, p)

    assert img.shape == (2, 4, 3) and img.dtype == np.uint8
    expected = np.full((2, 4, 3), 255, np.uint8)
    expected[0, 1] = BLUE  # p = 1 then p = 0 at (x 1, y 0): the later, 0, wins
    expected[1, 3] = RED
    expected[1, 0] = BLUE
    np.testing.assert_array_equal(img, expected)


def test_chunk_bounds_put_the_remainder_in_the_last_chunk():
    assert chunk_bounds(12, 5) == [(0, 2), (2, 4), (4, 6), (6, 8), (8, 12)]
    assert chunk_bounds(103, 5) == [(0, 20), (20, 40), (40, 60), (60, 80), (80, 103)]
    assert chunk_bounds(3, 5) == [(0, 0), (0, 0), (0, 0), (0, 0), (0, 3)]


def test_chunks_have_their_own_canvas_and_survive_the_store_padding():
    """7 events in 2 chunks: 7 // 2 = 3 in the first, 4 in the last, each on its own canvas."""
    x, y, p = np.array([0, 2, 1, 4, 0, 1, 3]), np.array([1, 0, 0, 0, 2, 1, 0]), np.array([0, 1, 1, 1, 0, 0, 1])

    first, last = render_event_chunks(x, y, p, 2)

    assert first.shape == (2, 3, 3) and last.shape == (3, 5, 3)
    assert [tuple(first[r, c]) for r, c in ((1, 0), (0, 2), (0, 1), (0, 0), (1, 2))] == [BLUE, RED, RED, WHITE, WHITE]
    assert [tuple(last[r, c]) for r, c in ((0, 4), (2, 0), (1, 1), (0, 3), (2, 4))] == [RED, BLUE, BLUE, RED, WHITE]
    for image in (first, last):
        padded = pad_to_sensor(image, width=6, height=4)
        assert padded.shape == (4, 6, 3) and (padded[image.shape[0] :] == 255).all()
        np.testing.assert_array_equal(event_canvas(padded), image)
    empty = render_event_chunks(x[:1], y[:1], p[:1], 2)[0]
    assert empty.shape == (1, 1, 3) and (empty == 255).all()
    np.testing.assert_array_equal(event_canvas(pad_to_sensor(empty, 6, 4)), empty)


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
    # a drafter checkpoint (not the toy's) reads EventGPT's 50 ms, at the end of each clip by default
    np.testing.assert_array_equal(g["event_t_end_us"][:], g["t_end_us"][:])
    np.testing.assert_array_equal(g["event_t_end_us"][:] - g["event_t_start_us"][:], 50_000)
    assert (g["num_events"][:] > 100).all() and (g["num_events"][:] < 200).all()  # 3 events per ms
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
    assert by_id["report"] == ("it is night . there are two moving objects . the first is a red car moving left fast . "
                               "the second is a blue truck approaching slowly .")
    assert answers(TOY, {"time_of_day": "day", "objects": []})[TOY.index(next(q for q in TOY if q.qid == "report"))] \
        == "it is daytime . the road is empty ."
    assert all(3 <= len(a.split()) <= 30 for a in by_id.values())
