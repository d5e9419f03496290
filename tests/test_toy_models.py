"""Toy-model training pieces: the per-patch labels the vision towers learn from; the stage's worker processes."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer

from eventspec.toy.trainer import (
    LABEL_DIRECTION,
    LABEL_FIELDS,
    ToySplit,
    build_toy_model,
    cell_categories,
    object_attributes,
    patch_labels,
    resize_object_maps,
    shift_and_mirror,
    tiny_drafter,
)


def _split(object_maps: np.ndarray, objects: list[list[dict]]) -> ToySplit:
    n = len(objects)
    return ToySplit(np.zeros((n, 1, 2, 2, 3), np.uint8), [], np.zeros((n, 0)), object_maps, objects)


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
    split = ToySplit.read(stores["train"][0], "frames")
    n, f = split.images.shape[:2]
    assert split.object_maps.shape == (n, f, cfg["toy"]["height"], cfg["toy"]["width"])
    for maps, objects in zip(split.object_maps, split.objects):
        assert set(np.unique(maps)) - {0} == {obj["id"] + 1 for obj in objects}


def test_shift_and_mirror_moves_pixels_and_object_maps_together():
    windows, frames, size = 16, 2, 16
    rng = np.random.default_rng(0)
    maps = torch.from_numpy(rng.integers(0, 3, size=(windows, frames, size, size)))
    attributes = torch.from_numpy(rng.integers(0, 5, size=(windows, 3, len(LABEL_FIELDS))))
    pixels = torch.zeros((windows, frames, 3, size, size))
    pixels[:, :, 0] = maps.float()
    pixels[:, :, 2] = torch.arange(size).float()  # a left-to-right ramp shows whether a window was mirrored

    new_pixels, new_maps, new_attributes = shift_and_mirror(pixels, maps, attributes, np.random.default_rng(1))
    assert torch.equal(new_pixels[:, :, 0].long(), new_maps)
    ramp = new_pixels[:, 0, 2, 0]
    step = (ramp.roll(-1, dims=-1) - ramp) % size  # +1 everywhere when shifted, -1 (= size - 1) when mirrored
    assert bool((step == step[:, :1]).all())
    mirrored = step[:, 0] == size - 1
    assert 0 < mirrored.sum() < windows
    shifts = {int(r[0]) for r in ramp}
    assert len(shifts) > 2  # shifted by any number of pixels, not only whole patches
    swap = torch.tensor([0, 2, 1, 3, 4])  # no object, left -> right, right -> left, approaching, receding
    direction = attributes[..., LABEL_DIRECTION]
    expected = torch.where(mirrored[:, None], swap[direction], direction)
    assert torch.equal(new_attributes[..., LABEL_DIRECTION], expected)
    others = [k for k in range(len(LABEL_FIELDS)) if k != LABEL_DIRECTION]
    assert torch.equal(new_attributes[..., others], attributes[..., others])


def test_cell_categories_follow_each_patch_row_by_row():
    grid, cells = 2, 3
    fine = torch.arange((grid * cells) ** 2).reshape(1, 1, grid * cells, grid * cells, 1).expand(-1, -1, -1, -1, 2)
    out = cell_categories(fine, cells)
    assert out.shape == (1, 1, grid, grid, cells * cells)
    for i, j, r, c in np.ndindex(grid, grid, cells, cells):
        assert out[0, 0, i, j, r * cells + c] == fine[0, 0, i * cells + r, j * cells + c, 0]


def test_toy_training_is_deterministic_and_saves_only_the_model(tiny_world, tmp_path):
    """The same config trains byte-identical weights twice; the pretraining heads are not saved with the model."""
    cfg, stores = tiny_world
    runs = []
    for name in ("a", "b"):
        out = tmp_path / name
        report = build_toy_model("drafter", stores["train"][0], stores["test"][0], out, cfg["toy_models"], threads=1)
        for history in (report["history"], report["vision_history"]):
            assert history[-1]["loss"] < history[0]["loss"], history
        runs.append(out)
    weights = [load_file(out / "model.safetensors") for out in runs]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    tiny_drafter(
        AutoTokenizer.from_pretrained(runs[0]), cfg["toy_models"], cfg["toy_models"]["image_size"], 5
    ).save_pretrained(tmp_path / "untrained")
    assert set(weights[0]) == set(load_file(tmp_path / "untrained/model.safetensors"))


def spawned_children(pid: int) -> list[int]:
    """Pids of the multiprocessing spawn workers among ``pid``'s children (not its resource tracker)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except FileNotFoundError:
        return []
    spawned = []
    for child in children:
        try:
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                spawned.append(int(child))
        except FileNotFoundError:
            pass
    return spawned


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped by its parent, does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_killed_toy_models_run_ends_its_workers(tiny_world, tmp_path, sig):
    """`eventspec toy-models` trains the two models in spawned workers; a SIGTERM or SIGINT to it (Snakemake
    cancelling the job, a scheduler's kill, Ctrl-C) ends them too, instead of leaving them training."""
    cfg, stores = tiny_world
    toy_models = cfg["toy_models"] | {"threads": 2, "vision_epochs": 100000}  # still training when killed
    out = {name: tmp_path / name for name in ("verifier", "drafter", "eval.json", "manifest.json")}
    cmd = [sys.executable, "-m", "eventspec.cli", "toy-models",
           "--config-json", json.dumps({"toy_models": toy_models}),
           "--train", str(stores["train"][0]), "--test", str(stores["test"][0]),
           "--verifier-out", str(out["verifier"]), "--drafter-out", str(out["drafter"]),
           "--eval", str(out["eval.json"]), "--manifest", str(out["manifest.json"])]
    env = os.environ | {"PYTHONPATH": os.pathsep.join(sys.path)}
    log = tmp_path / "toy_models.log"  # a file, not a pipe: workers that outlive the run would hold a pipe open
    with open(log, "w") as stderr:
        run = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=stderr, env=env)
    workers = []
    try:
        deadline = time.monotonic() + 120
        while len(workers := spawned_children(run.pid)) < 2 and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(workers) == 2, (workers, run.poll())
        time.sleep(1)  # into their imports and training
        run.send_signal(sig)
        assert run.wait(timeout=60) == 128 + sig, log.read_text()[-3000:]
        deadline = time.monotonic() + 20
        while any(alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [w for w in workers if alive(w)], "workers outlived their killed parent"
    finally:  # what a failing test leaves behind
        run.kill()
        for w in workers:
            if alive(w):
                os.kill(w, signal.SIGKILL)


def test_default_toy_verifier_has_the_shape_the_readme_states():
    """The wind tunnel's shape (DESIGN §4) is a documented fact: the README's "N layers x W wide" is what the
    default config builds, for the verifier and the drafter alike."""
    import re

    from eventspec import config as config_mod
    from eventspec.toy.tokenizer import build_word_tokenizer
    from eventspec.toy.trainer import tiny_drafter, tiny_verifier

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    layers, width = map(int, re.search(r"LLMs? of (\d+) layers x (\d+) wide", readme).groups())
    cfg = config_mod.load(Path(__file__).parents[1] / "config.yaml")["toy_models"]
    tok = build_word_tokenizer(["a b c"])
    verifier = tiny_verifier(tok, cfg, cfg["image_size"], 8).config.text_config
    drafter = tiny_drafter(tok, cfg, cfg["image_size"], 5).config
    assert (verifier.num_hidden_layers, verifier.hidden_size) == (layers, width)
    assert (drafter.num_hidden_layers, drafter.hidden_size) == (layers, width)
