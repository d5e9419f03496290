import numpy as np
import pytest

from dsec_fixtures import make_sequence, write_events
from eventspec.dsec import DataError, EventSlicer, Sequence, list_sequences, read_timestamps, window_starts

T_OFFSET = 5_000_000


@pytest.fixture
def hand_events(tmp_path):
    # t (relative µs):     0    999  1000  1500  2000  2001  3999
    t = np.array([0, 999, 1000, 1500, 2000, 2001, 3999])
    x = np.arange(7)
    y = np.arange(7)[::-1]
    p = np.array([1, 0, 1, 1, 0, 0, 1])
    path = tmp_path / "events.h5"
    write_events(path, x, y, p, t, T_OFFSET, width=8, height=8, n_ms=5)
    return path, t


@pytest.mark.parametrize(
    "t0, t1, expected",
    [
        (0, 1000, (0, 2)),  # [0, 1 ms): events 0 and 1
        (999, 1000, (1, 2)),
        (1000, 2000, (2, 4)),
        (1000, 2001, (2, 5)),
        (1501, 1999, (4, 4)),  # empty slice inside a millisecond
        (2000, 4000, (4, 7)),
        (0, 10_000, (0, 7)),  # past the end of ms_to_idx
        (-500, 1, (0, 1)),  # before the first event
    ],
)
def test_slicing_matches_hand_computed_indices(hand_events, t0, t1, expected):
    path, t = hand_events
    with EventSlicer(path) as slicer:
        assert slicer.index_range(T_OFFSET + t0, T_OFFSET + t1) == expected
        ev = slicer.get_events(T_OFFSET + t0, T_OFFSET + t1)
        i0, i1 = expected
        np.testing.assert_array_equal(ev.t, t[i0:i1] + T_OFFSET)
        np.testing.assert_array_equal(ev.x, np.arange(7)[i0:i1])


def test_reader_round_trip_and_resolution(tmp_path):
    seq_dir = make_sequence(tmp_path, width=40, height=30)
    with Sequence(seq_dir) as seq:
        assert (seq.events.width, seq.events.height) == (40, 30)
        assert seq.read_frame(3).shape == (30, 40, 3)
        assert seq.read_frame(3)[0, 0, 0] == 30
        ev = seq.events.get_events(seq.t_start, seq.t_start + 2_000_000)
        assert len(ev) == len(seq.events) == 6000
        assert np.all(np.diff(ev.t) >= 0)
        assert len(seq.frames_in(seq.t_start, seq.t_start + 1_000_000)) == 20


def test_resolution_falls_back_to_config_without_attributes(tmp_path):
    path = tmp_path / "events.h5"
    write_events(path, [600], [470], [1], [10], 0, width=None)
    with EventSlicer(path, fallback_resolution=(640, 480)) as slicer:
        assert (slicer.width, slicer.height) == (640, 480)
        assert len(slicer.get_events(0, 1000)) == 1


def test_windows_are_back_to_back_and_whole():
    assert window_starts(0, 3_500_000, 1_000_000) == [0, 1_000_000, 2_000_000]
    assert window_starts(0, 3_500_000, 500_000) == [i * 500_000 for i in range(7)]
    assert window_starts(0, 900_000, 1_000_000) == []


def test_event_outside_sensor_names_file(tmp_path):
    path = tmp_path / "events.h5"
    write_events(path, [3, 40], [2, 2], [1, 0], [10, 20], 0, width=32, height=24)
    with EventSlicer(path) as slicer, pytest.raises(DataError, match=r"events.h5.*outside the 32x24 sensor"):
        slicer.get_events(0, 1000)


def test_non_monotonic_event_times_rejected(tmp_path):
    path = tmp_path / "events.h5"
    write_events(path, [1, 2, 3], [1, 1, 1], [1, 0, 1], [10, 500, 300], 0, n_ms=2)
    with EventSlicer(path) as slicer, pytest.raises(DataError, match="not monotonic"):
        slicer.get_events(0, 1000)


def test_non_monotonic_frame_timestamps_rejected(tmp_path):
    path = tmp_path / "timestamps.txt"
    path.write_text("100\n200\n150\n")
    with pytest.raises(DataError, match=r"timestamps.txt: timestamps not increasing at line 3"):
        read_timestamps(path)


def test_missing_and_corrupt_files_are_named(tmp_path):
    seq_dir = make_sequence(tmp_path)
    (seq_dir / "images/left/rectified/000002.png").write_bytes(b"not a png")
    (seq_dir / "images/left/rectified/000004.png").unlink()
    with Sequence(seq_dir) as seq:
        with pytest.raises(DataError, match=r"000002.png: corrupt PNG"):
            seq.read_frame(2)
        with pytest.raises(DataError, match=r"000004.png: frame missing"):
            seq.read_frame(4)
    (seq_dir / "events/left/events.h5").write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"events.h5: not a readable DSEC events file"):
        Sequence(seq_dir)
    (seq_dir / "events/left/events.h5").unlink()
    with pytest.raises(DataError, match=r"events.h5: events file missing"):
        Sequence(seq_dir)


def test_list_sequences(tmp_path):
    make_sequence(tmp_path, "b")
    make_sequence(tmp_path, "a")
    assert [p.name for p in list_sequences(tmp_path, "train")] == ["a", "b"]
    assert [p.name for p in list_sequences(tmp_path, "train", ["b"])] == ["b"]
    with pytest.raises(DataError, match="missing"):
        list_sequences(tmp_path, "train", ["zz"])
    with pytest.raises(DataError, match="split directory missing"):
        list_sequences(tmp_path, "test")
