"""Stage 1: determinism, resumability after SIGKILL, batching, sharding, invariants, bad input."""

import json
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr

from eventspec import config as config_mod
from eventspec.digest import store_digest
from eventspec.extract import ExtractionError, extract_features, gather_features
from eventspec.hidden_dtype import from_storage
from eventspec.features import FeatureStore
from eventspec.models.verifier import load_verifier
from eventspec.store import StoreError, partial_path

EXTRACT = {"max_new_tokens": 12, "batch_size": 4, "write_rows": 8, "chunk_rows": 4, "max_questions": 3}


def extraction_config(tiny_models, **extract):
    return config_mod.validate(
        {
            "models": {k: {"path": str(v)} for k, v in tiny_models.items()},
            "extract": EXTRACT | extract,
        }
    )


@pytest.fixture(scope="module")
def reference(tiny_world, tiny_models, tmp_path_factory):
    """One uninterrupted single-job extraction of the test split."""
    out = tmp_path_factory.mktemp("ref") / "test.zarr"
    samples, digest = tiny_world[1]["test"]
    extract_features(extraction_config(tiny_models), "test", samples, digest, out)
    return out


def test_store_layout_and_reader(reference, tiny_world):
    g = zarr.open_group(reference, mode="r")
    n_windows = zarr.open_group(tiny_world[1]["test"][0], mode="r").attrs["n_committed"]
    n = g.attrs["n_committed"]
    assert n == n_windows * 3
    assert g["verifier_hidden"].shape == (n, 12, 64) and g["verifier_hidden"].dtype == np.float16
    assert g["verifier_hidden"].shards[0] == 8 and g["verifier_hidden"].chunks[0] == 4
    assert g.attrs["logical_dtype"] == "float16"
    np.testing.assert_array_equal(g["question_id"][:6], [0, 1, 2, 0, 1, 2])
    np.testing.assert_array_equal(g["sample_id"][:6], [0, 0, 0, 1, 1, 1])
    store = FeatureStore(reference)
    batches = list(store.batches(batch_size=5, teacher_forced=True, shuffle=True, seed=0))
    assert sum(b.drafter.shape[0] for b in batches) == n
    b = batches[0]
    assert b.drafter.dtype == torch.float16 and b.mask.dtype == torch.bool
    assert (b.verifier[~b.mask] == 0).all()
    free = next(store.batches(batch_size=n, teacher_forced=False))
    lengths = np.minimum(g["verifier_len"][:], g["drafter_len"][:])
    np.testing.assert_array_equal(free.mask.sum(1).numpy(), lengths)


def test_two_runs_give_identical_digests(reference, tiny_world, tiny_models, tmp_path):
    samples, digest = tiny_world[1]["test"]
    again = extract_features(extraction_config(tiny_models), "test", samples, digest, tmp_path / "again.zarr")
    assert store_digest(again) == store_digest(reference)


def test_batch_8_equals_batch_1(tiny_world, tiny_models, tmp_path):
    samples, digest = tiny_world[1]["test"]
    stores = {
        b: zarr.open_group(
            extract_features(extraction_config(tiny_models, batch_size=b, max_samples=4), "test", samples, digest,
                             tmp_path / f"b{b}.zarr"),
            mode="r",
        )
        for b in (1, 8)
    }
    for name in ("verifier_tokens", "drafter_tokens", "verifier_len", "drafter_len", "sample_id", "question_id"):
        np.testing.assert_array_equal(stores[1][name][:], stores[8][name][:], err_msg=name)
    for name in ("verifier_hidden", "drafter_hidden", "drafter_hidden_tf"):
        np.testing.assert_allclose(
            stores[1][name][:].astype(np.float32), stores[8][name][:].astype(np.float32), atol=2e-2, err_msg=name
        )


def test_gather_of_shards_equals_single_job(reference, tiny_world, tiny_models, tmp_path):
    samples, digest = tiny_world[1]["test"]
    cfg = extraction_config(tiny_models)
    parts = [extract_features(cfg, "test", samples, digest, tmp_path / f"p{i}.zarr", (i, 3)) for i in range(3)]
    sizes = [zarr.open_group(p, mode="r").attrs["n_committed"] for p in parts]
    assert all(s > 0 for s in sizes)
    gathered = gather_features(parts, tmp_path / "gathered.zarr")
    assert store_digest(gathered) == store_digest(gather_features([reference], tmp_path / "single.zarr"))


def test_lm_head_invariant_on_stored_float16(reference, tiny_models):
    verifier = load_verifier(tiny_models["verifier"])
    g = zarr.open_group(reference, mode="r")
    hidden = from_storage(g["verifier_hidden"][:], g.attrs["logical_dtype"])
    tokens = torch.from_numpy(g["verifier_tokens"][:].astype(np.int64))
    valid = torch.arange(tokens.shape[1])[None] < torch.from_numpy(g["verifier_len"][:].astype(np.int64))[:, None]
    with torch.no_grad():
        predicted = verifier.lm_head(hidden).argmax(-1)
    flips = int((predicted != tokens)[valid].sum())
    total = int(valid.sum())
    print(f"stored float16: {flips} flips of {total} positions")
    assert total > 0 and flips <= 0.001 * total


def run_cli(args, **kw):
    return subprocess.Popen([sys.executable, "-m", "eventspec.cli", *args], stderr=subprocess.PIPE, text=True, **kw)


def committed(out: Path) -> int:
    meta = partial_path(out) / "zarr.json"
    if not meta.exists():
        return 0
    try:
        return json.loads(meta.read_text())["attributes"].get("n_committed", 0)
    except (json.JSONDecodeError, KeyError):
        return 0


def test_sigkill_and_resume_gives_the_uninterrupted_digest(tiny_world, tiny_models, tmp_path):
    samples, digest = tiny_world[1]["test"]
    cfg = extraction_config(tiny_models, batch_size=2, write_rows=2, chunk_rows=2, max_new_tokens=16, max_questions=10)
    reference = extract_features(cfg, "test", samples, digest, tmp_path / "ref.zarr")
    total = zarr.open_group(reference, mode="r").attrs["n_committed"]
    out = tmp_path / "killed.zarr"
    args = ["extract", "--config-json", json.dumps({k: cfg[k] for k in ("models", "extract")}), "--split", "test",
            "--samples", str(samples), "--samples-digest", str(digest), "--out", str(out), "--resume",
            "--threads", str(torch.get_num_threads())]  # float sums, hence digests, depend on the thread count
    rng = random.Random(1)
    targets = sorted(rng.sample(range(2, total - 8, 2), 5))
    for target in targets:
        proc = run_cli(args)
        deadline = time.time() + 120
        while committed(out) < target and proc.poll() is None and time.time() < deadline:
            time.sleep(0.002)
        time.sleep(rng.uniform(0, 0.03))  # land anywhere inside the next batch
        assert proc.poll() is None, f"extraction finished before it could be killed (target {target}, committed {committed(out)}, {proc.stderr.read()[-1500:]})"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not out.exists() and committed(out) < total
    proc = run_cli(args)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert store_digest(out) == store_digest(reference)


def test_nan_hidden_states_abort_with_sample_id(tiny_world, tiny_models, tmp_path):
    from safetensors.torch import load_file, save_file

    broken = tmp_path / "drafter"
    shutil.copytree(tiny_models["drafter"], broken)
    weights = load_file(broken / "model.safetensors")
    weights["model.norm.weight"][:] = float("nan")
    save_file(weights, broken / "model.safetensors", metadata={"format": "pt"})
    cfg = extraction_config({"verifier": tiny_models["verifier"], "drafter": broken})
    samples, digest = tiny_world[1]["test"]
    with pytest.raises(ExtractionError, match=r"drafter: NaN/Inf hidden state for sample 0 question 0"):
        extract_features(cfg, "test", samples, digest, tmp_path / "nan.zarr")
    assert not (tmp_path / "nan.zarr").exists()


def test_sample_store_from_another_config_is_refused(tiny_world, tiny_models, tmp_path):
    samples, _ = tiny_world[1]["test"]
    _, train_digest = tiny_world[1]["train"]
    with pytest.raises(ExtractionError, match=r"test.zarr: committed rows or writer config differ from .*train.digest.json"):
        extract_features(extraction_config(tiny_models), "test", samples, train_digest, tmp_path / "x.zarr")


def test_sample_store_modified_where_a_shard_reads_is_refused(tiny_world, tiny_models, tmp_path, monkeypatch):
    """A changed frame in the rows a shard reads is caught; a shard reading other rows never hashes it."""
    from eventspec import digest as digest_mod

    source, _ = tiny_world[1]["test"]
    samples = tmp_path / "test.zarr"
    shutil.copytree(source, samples)
    frames = zarr.open_group(samples, mode="r+")["frames"]
    monkeypatch.setattr(digest_mod, "BYTES_PER_BLOCK", frames.nbytes // frames.shape[0])  # one window per block
    digest = tmp_path / "test.digest.json"
    digest_mod.write_digest(samples, digest)
    last = frames.shape[0] - 1
    frames[last] = 255 - np.asarray(frames[last])
    cfg = extraction_config(tiny_models, max_questions=1)
    with pytest.raises(ExtractionError, match=r"test.zarr: rows \d+.. of 'frames' do not match .*test.digest.json"):
        extract_features(cfg, "test", samples, digest, tmp_path / "x.zarr")
    cfg = extraction_config(tiny_models, max_questions=1, max_samples=1, batch_size=1, write_rows=1, chunk_rows=1)
    extract_features(cfg, "test", samples, digest, tmp_path / "first_window.zarr")


def test_write_rows_must_be_whole_batches(tiny_world, tiny_models, tmp_path):
    samples, digest = tiny_world[1]["test"]
    with pytest.raises(config_mod.ConfigError, match=r"extract.write_rows \(6\) must be a multiple of extract.batch_size \(4\)"):
        extract_features(extraction_config(tiny_models, write_rows=6, chunk_rows=2), "test", samples, digest, tmp_path / "x.zarr")


def test_unwritable_output_is_named(tiny_world, tiny_models, tmp_path):
    samples, digest = tiny_world[1]["test"]
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(StoreError, match=r"file/x.zarr.partial: cannot create store"):
        extract_features(extraction_config(tiny_models), "test", samples, digest, tmp_path / "file" / "x.zarr")


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=160k", "tmpfs", str(mount)], capture_output=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill up here: {res.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def test_full_disk_keeps_committed_rows_readable(tiny_world, tiny_models, small_disk):
    samples, digest = tiny_world[1]["test"]
    out = small_disk / "full.zarr"
    with pytest.raises(StoreError, match=r"write failed at rows \d+:\d+ .* the first \d+ rows stay committed"):
        extract_features(extraction_config(tiny_models, batch_size=2, write_rows=2, chunk_rows=2), "test", samples, digest, out)
    part = partial_path(out)
    n = committed(out)
    assert n > 0
    g = zarr.open_group(part, mode="r")
    assert np.isfinite(g["verifier_hidden"][:n].astype(np.float32)).all()
    assert (g["verifier_len"][:n] > 0).all()


def test_invariant_check_catches_wrong_hidden_states(tiny_world, tiny_models):
    from eventspec.extract import check_lm_head_invariant
    from eventspec.models.backend import greedy_generate

    verifier = load_verifier(tiny_models["verifier"])
    frames = np.asarray(zarr.open_group(tiny_world[1]["test"][0], mode="r")["frames"][:2])
    gen = greedy_generate(verifier, verifier.prepare(frames, ["Describe the scene."] * 2), 8)
    check_lm_head_invariant(verifier, gen.hidden, gen.tokens, gen.lengths, np.arange(2))
    with pytest.raises(ExtractionError, match="hidden-state convention broken for sample 0"):
        check_lm_head_invariant(verifier, -gen.hidden, gen.tokens, gen.lengths, np.arange(2))
