"""Toy-model training pieces: the per-patch labels the vision towers learn from."""

import numpy as np
import torch

from eventspec.models.toy import (
    LABEL_DIRECTION,
    LABEL_FIELDS,
    ToySplit,
    object_attributes,
    patch_labels,
    resize_object_maps,
    shift_and_mirror,
)


def _split(object_maps: np.ndarray, objects: list[list[dict]]) -> ToySplit:
    n = len(objects)
    return ToySplit(np.zeros((n, 1, 2, 2, 3), np.uint8), np.zeros((n, 1, 2, 2, 3), np.uint8), [], np.zeros((n, 0)), object_maps, objects)


CAR = {"id": 0, "category": "car", "color": "red", "direction": "left", "speed": "fast"}
CYCLIST = {"id": 1, "category": "cyclist", "color": "black", "direction": "receding", "speed": "slow"}


def test_object_attributes_are_class_ids_by_map_label():
    split = _split(np.array([[[[0, 2], [1, 0]]]], np.uint8), [[CAR, CYCLIST]])
    attributes = object_attributes(split)
    assert attributes.shape == (1, 3, len(LABEL_FIELDS))
    assert attributes[0, 0].tolist() == [0, 0, 0, 0]
    assert attributes[0, 1].tolist() == [1 + LABEL_FIELDS[f].index(CAR[f]) for f in LABEL_FIELDS]
    assert attributes[0, 2].tolist() == [1 + LABEL_FIELDS[f].index(CYCLIST[f]) for f in LABEL_FIELDS]


def test_patch_labels_take_the_object_covering_most_of_each_patch():
    maps = torch.zeros((1, 2, 4, 4), dtype=torch.long)
    maps[0, 0, :2, :2] = 1  # the car fills the top-left patch of frame 0
    maps[0, 0, 0, 2] = 2  # the cyclist covers a quarter of the top-right patch
    maps[0, 0, 2:, 2:3] = 2  # and half of the bottom-right one, where the car has a quarter
    maps[0, 0, 2, 3] = 1
    attributes = object_attributes(_split(np.array([[[[2]]]], np.uint8), [[CAR, CYCLIST]]))
    car, cyclist, none = attributes[0, 1].tolist(), attributes[0, 2].tolist(), [0, 0, 0, 0]

    per_frame = patch_labels(maps, attributes, grid=2, per_frame=True, min_cover=0.3)
    assert per_frame.shape == (1, 2, 2, 2, len(LABEL_FIELDS))
    assert per_frame[0, 0].tolist() == [[car, none], [none, cyclist]]
    assert per_frame[0, 1].tolist() == [[none, none], [none, none]]

    window = patch_labels(maps, attributes, grid=2, per_frame=False, min_cover=0.3)
    assert window.shape == (1, 1, 2, 2, len(LABEL_FIELDS))
    assert window[0, 0].tolist() == [[car, none], [none, none]]  # halved by the empty frame: only the car stays


def test_object_maps_resize_like_the_frames():
    maps = np.zeros((1, 1, 6, 8), np.uint8)
    maps[0, 0, :3, :4] = 1
    resized = resize_object_maps(maps, 4)
    assert resized.tolist() == [[[[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]]]


def test_toy_sample_store_carries_object_maps_of_its_frames(tiny_world):
    cfg, stores = tiny_world
    split = ToySplit.read(stores["train"][0])
    n, f = split.frames.shape[:2]
    assert split.object_maps.shape == (n, f, cfg["toy"]["height"], cfg["toy"]["width"])
    for maps, objects in zip(split.object_maps, split.objects):
        assert set(np.unique(maps)) - {0} == {obj["id"] + 1 for obj in objects}


def test_shift_and_mirror_keeps_pixels_and_labels_together():
    grid, step, frames = 4, 4, 2
    size = grid * step
    rng = np.random.default_rng(0)
    labels = torch.from_numpy(rng.integers(0, 3, size=(16, frames, grid, grid, len(LABEL_FIELDS))))
    pixels = torch.zeros((16, frames, 3, size, size))
    pixels[:, :, 0] = labels[..., 0].repeat_interleave(step, 2).repeat_interleave(step, 3).float()
    pixels[:, :, 1] = labels[..., LABEL_DIRECTION].repeat_interleave(step, 2).repeat_interleave(step, 3).float()
    pixels[:, :, 2] = torch.arange(size).float()  # a left-to-right ramp shows whether a window was mirrored

    new_pixels, new_labels = shift_and_mirror(pixels, labels, np.random.default_rng(1))
    patch = new_pixels[:, :, :, :: step, :: step]  # top-left pixel of each patch
    assert torch.equal(patch[:, :, 0].long(), new_labels[..., 0])
    mirrored = new_pixels[:, 0, 2, 0, 0] > new_pixels[:, 0, 2, 0, 1]
    assert 0 < mirrored.sum() < len(mirrored)
    swap = torch.tensor([0, 2, 1, 3, 4])  # no object, left -> right, right -> left, approaching, receding
    shown = patch[:, :, 1].long()
    expected = torch.where(mirrored[:, None, None, None], swap[shown], shown)
    assert torch.equal(new_labels[..., LABEL_DIRECTION], expected)
