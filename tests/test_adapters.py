"""Stage 2: adapter architectures, streaming training, resume, bounded memory, per-adapter reruns."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import torch
import yaml

from adapter_fixtures import write_feature_store, write_lm_head, write_verifier_embedding
from figure_fixtures import draw
from eventspec import config as config_mod
from eventspec.adapters import (
    DECODE_LEVELS, PREFILL_LEVELS, AdapterError, build_adapter, count_parameters, load_adapter,
)
from eventspec.adapters.registry import resolve
from eventspec.adapters.train import evaluate, fresh_model, load_lm_head, train_adapter
from eventspec.cli import main as cli_main
from eventspec.features import FeatureStore
from eventspec.store import StoreError

ROOT = Path(__file__).resolve().parents[1]
DD, DV = 16, 24
SMALL_ATTENTION = {"num_heads": 2, "ffn_dim": 32, "max_positions": 32}


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("adapter_stores")
    return {
        "train": write_feature_store(root / "train.zarr", 192, seed=0),
        "test": write_feature_store(root / "test.zarr", 48, seed=1),
        "lm_head": write_lm_head(root / "lm_head.safetensors"),
        "verifier": write_verifier_embedding(root / "verifier"),
    }


def entry(level, **changes):
    hparams = {} if level in PREFILL_LEVELS else dict(SMALL_ATTENTION)
    base = {"level": level, "hyperparams": hparams, "epochs": 3, "batch_size": 16, "learning_rate": 0.003}
    cfg = config_mod.validate({"adapters": {"x": base | changes}})
    return cfg["adapters"]["x"], cfg["train"] | {"block_mb": 1, "shuffle_buffer_mb": 1}


def train(stores, out, level="L1", **kwargs):
    adapter, train_cfg = entry(level, **kwargs.pop("changes", {}))
    return train_adapter("x", adapter, train_cfg, stores["train"], stores["test"], stores["lm_head"], out,
                         stores["verifier"], **kwargs)


@pytest.mark.parametrize("level, expected", [("L1", 2_113_537), ("L2", 6_324_227), ("L3", 16_797_698),
                                             ("L4", 100_714_497)])
def test_prefill_parameter_counts_at_4096_are_the_seeds(level, expected):
    assert count_parameters(level, 4096, 4096) == expected


@pytest.mark.parametrize("level, millions", [("L5", 103), ("L5F", 170), ("B1", 103)])
def test_decode_parameter_counts_at_4096_are_the_seeds(level, millions):
    assert abs(count_parameters(level, 4096, 4096) / 1e6 - millions) < 0.5


def decode_inputs(model, B=2, T=7, generator=None):
    inputs = {}
    if "drafter" in model.uses:
        inputs["drafter_hidden"] = torch.randn(B, T, DD, generator=generator)
    if "verifier" in model.uses:
        inputs["verifier_hidden"] = torch.randn(B, T, DV, generator=generator)
    if model.use_token_embedding:
        inputs["token_embeds"] = torch.randn(B, T, DV, generator=generator)
    if "drafter_prompt" in model.uses:  # B1E: one drafter state per pair, not per position
        inputs["drafter_prompt"] = torch.randn(B, DD, generator=generator)
    return inputs


@pytest.mark.parametrize(
    "level, token", [(level, False) for level in PREFILL_LEVELS] + [(level, t) for level in DECODE_LEVELS for t in (0, 1)]
)
def test_shapes_with_different_dims(level, token):
    hparams = {} if level in PREFILL_LEVELS else SMALL_ATTENTION
    model = build_adapter(level, DD, DV, use_token_embedding=token, **hparams).eval()
    assert model.level == level and model.kind == ("prefill" if level in PREFILL_LEVELS else "decode")
    inputs = {"drafter_hidden": torch.randn(2, 7, DD)} if model.kind == "prefill" else decode_inputs(model)
    assert model(**inputs).shape == (2, 7, DV)


def test_decode_heads_declare_their_inputs():
    uses = {level: build_adapter(level, DD, DV, **SMALL_ATTENTION).uses for level in DECODE_LEVELS}
    assert uses == {"L5": {"drafter"}, "B1": {"verifier"}, "L5F": {"drafter", "verifier"},
                    "B1E": {"verifier", "drafter_prompt"}}


@pytest.mark.parametrize("level", ["L4", *DECODE_LEVELS])
def test_outputs_depend_only_on_earlier_positions(level):
    torch.manual_seed(0)
    hparams = {"num_heads": 2, "ffn_dim": 32} | ({} if level == "L4" else {"max_positions": 32})
    model = build_adapter(level, DD, DV, use_token_embedding=level != "L4", **hparams).eval()
    inputs = {"drafter_hidden": torch.randn(1, 9, DD)} if level == "L4" else decode_inputs(model, 1, 9)
    per_pair = {k: inputs.pop(k) for k in ("drafter_prompt",) if k in inputs}  # B1E's is not per position
    changed = {k: v.clone() for k, v in inputs.items()}
    for v in changed.values():
        v[:, 5:] += 3.0
    with torch.no_grad():
        before, after = model(**inputs, **per_pair), model(**changed, **per_pair)
        prefix = model(**{k: v[:, :5] for k, v in inputs.items()}, **per_pair)
    assert torch.allclose(before[:, :5], after[:, :5], atol=1e-5)
    assert not torch.allclose(before[:, 5:], after[:, 5:], atol=1e-3)
    assert torch.allclose(prefix, before[:, :5], atol=1e-5)


def test_unknown_level_is_named():
    with pytest.raises(ValueError, match="L7"):
        build_adapter("L7", 8, 8)


def test_short_training_lowers_held_out_loss_and_loads(stores, tmp_path):
    test, lm_head = FeatureStore(stores["test"]), load_lm_head(stores["lm_head"], DV)
    for level in ("L1", "L5F"):
        adapter, train_cfg = entry(level)
        config = resolve("x", adapter, DD, DV)
        model, _ = fresh_model(config, train_cfg)
        untrained = evaluate(model, test, config, lm_head, None, train_cfg)["val_loss"]
        history = train(stores, tmp_path / level, level)
        best = min(r["val_loss"] for r in history["epochs"])
        assert best < 0.9 * untrained, (level, untrained, history["epochs"])
        loaded = load_adapter(tmp_path / level)
        assert not loaded.training and next(loaded.parameters()).dtype == torch.float32
        half = load_adapter(tmp_path / level, "cpu", torch.bfloat16)  # the engine's: the verifier's dtype and device
        assert {t.dtype for t in half.state_dict().values() if t.is_floating_point()} == {torch.bfloat16}
        schema = json.loads((ROOT / "xsd/adapter_history.schema.json").read_text())
        jsonschema.validate(json.loads((tmp_path / level / "history.json").read_text()), schema)
        draw(tmp_path / level, "training_curves", tmp_path / level / "history.json")
        schema = json.loads((ROOT / "xsd/adapter_config.schema.json").read_text())
        jsonschema.validate(json.loads((tmp_path / level / "config.json").read_text()), schema)


class Killed(Exception):
    pass


def kill_after(epoch):
    def hook(done):
        if done == epoch:
            raise Killed

    return hook


@pytest.mark.parametrize("level", ["L1", "L5"])
def test_resume_after_kill_reproduces_the_history(stores, tmp_path, level):
    whole = train(stores, tmp_path / "whole", level)
    with pytest.raises(Killed):
        train(stores, tmp_path / "killed", level, on_epoch_end=kill_after(1))
    assert (tmp_path / "killed.partial/last.safetensors").exists() and not (tmp_path / "killed").exists()
    resumed = train(stores, tmp_path / "killed", level)
    assert resumed["epochs"] == whole["epochs"]
    a, b = load_adapter(tmp_path / "whole"), load_adapter(tmp_path / "killed")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_corrupt_checkpoint_on_resume_names_the_file(stores, tmp_path):
    with pytest.raises(Killed):
        train(stores, tmp_path / "a", on_epoch_end=kill_after(1))
    last = tmp_path / "a.partial/last.safetensors"
    last.write_bytes(last.read_bytes()[: 200])
    with pytest.raises(AdapterError, match="last.safetensors.*corrupt"):
        train(stores, tmp_path / "a")


def test_bad_inputs_name_the_file_or_key(stores, tmp_path):
    other = write_feature_store(tmp_path / "wide.zarr", 8, dd=DD, dv=DV + 8)
    adapter, train_cfg = entry("L1")
    with pytest.raises(AdapterError, match="wide.zarr.*differ"):
        train_adapter("x", adapter, train_cfg, stores["train"], other, stores["lm_head"], tmp_path / "o")
    with pytest.raises(AdapterError, match="lm_head.safetensors.*dim"):
        train_adapter("x", adapter, train_cfg, other, other, stores["lm_head"], tmp_path / "o")
    empty = write_feature_store(tmp_path / "empty.zarr", 0)
    with pytest.raises(StoreError, match="empty.zarr.*zero committed rows"):
        train_adapter("x", adapter, train_cfg, empty, empty, stores["lm_head"], tmp_path / "o")
    adapter, _ = entry("L5", input="free")
    with pytest.raises(AdapterError, match="adapters.x.input"):
        train_adapter("x", adapter, train_cfg, stores["train"], stores["test"], stores["lm_head"], tmp_path / "o")


def test_training_and_evaluation_devices_are_checked_naming_the_key(stores, tmp_path, monkeypatch):
    from eventspec.evaluation.evaluate import load_inputs

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    adapter, train_cfg = entry("L1")
    with pytest.raises(ValueError, match="train.device: 'cuda:1'.*no usable CUDA device"):
        train_adapter("x", adapter, train_cfg | {"device": "cuda:1"}, stores["train"], stores["test"],
                      stores["lm_head"], tmp_path / "o")
    with pytest.raises(ValueError, match="evaluate.device: 'cuda'"):
        load_inputs(tmp_path, stores["lm_head"], None, FeatureStore(stores["test"]), "cuda")


def test_cli_seed_flags_and_errors(stores, tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"train": {"block_mb": 1, "shuffle_buffer_mb": 1}}))
    common = ["train-adapter", "--config", str(cfg), "--train-store", str(stores["train"]),
              "--test-store", str(stores["test"]), "--lm-head", str(stores["lm_head"])]
    rc = cli_main(common + ["--name", "new", "--adapter_level", "1", "--num_epochs", "1", "--bottleneck_dim", "8",
                            "--batch_size", "32", "--out", str(tmp_path / "new")])
    assert rc == 0
    saved = json.loads((tmp_path / "new/config.json").read_text())
    assert saved["level"] == "L1" and saved["hyperparams"]["bottleneck_dim"] == 8 and saved["epochs"] == 1
    assert cli_main(common + ["--name", "missing", "--out", str(tmp_path / "m")]) == 2
    assert "adapters.missing" in capsys.readouterr().err


def test_loader_serves_every_row_once_in_a_seeded_shuffled_order(stores):
    store = FeatureStore(stores["train"])
    assert store.row_bytes() == 12 * (16 + 24) * 2
    assert store.block_rows(2**15) == 32 and store.block_rows(2**16) == 64  # whole shards of 32 rows
    assert store.block_rows(4000) == 8  # one shard over budget: whole chunks of 8 rows

    def order(seed):
        return np.concatenate([b.rows for b in store.batches(16, shuffle=True, seed=seed, block_bytes=2**15,
                                                             buffer_bytes=2**15)])

    first = order(3)
    assert sorted(first.tolist()) == list(range(len(store)))
    assert (first == order(3)).all() and not (first == order(4)).all()
    assert not (first == np.arange(len(store))).all()


def test_shuffle_window_mixes_the_blocks_it_holds(stores):
    """A window of four one-shard blocks serves batches drawn from several of them; one-block windows cannot."""
    store = FeatureStore(stores["train"])
    block = store.block_rows(2**15)

    def blocks_per_batch(buffer_bytes):
        batches = store.batches(16, shuffle=True, seed=0, block_bytes=2**15, buffer_bytes=buffer_bytes)
        return [len(np.unique(b.rows // block)) for b in batches]

    assert max(blocks_per_batch(4 * 2**15)) >= 3
    assert set(blocks_per_batch(2**15)) == {1}  # 32-row blocks, batches of 16: no leftover rows to carry over


def test_bench_store_writes_both_layouts_from_the_same_features(stores, tmp_path):
    from eventspec.bench_store import bench_store

    result = bench_store(stores["train"], tmp_path / "bench", chunk_size=50, repeats=1)
    index = json.loads((tmp_path / "bench/seeds_chunked/index.json").read_text())
    assert index["total_samples"] == result["samples"] == len(FeatureStore(stores["train"]))
    assert [c["n_samples"] for c in index["chunks"]][:-1] == [50] * (len(index["chunks"]) - 1)
    assert len(FeatureStore(tmp_path / "bench/ours.zarr", check_layout=False)) == result["samples"]
    assert result["ours_codec"] == "float16 blosc lz4"
    assert 0 < result["bytes_ratio"] < 0.5  # float16 + compression against float32
    assert result["ours"]["read_warm_samples_per_s"] > 0 and result["seeds"]["read_warm_samples_per_s"] > 0


RSS_SCRIPT = """
import resource, sys
from eventspec.features import FeatureStore
store = FeatureStore(sys.argv[1])
rows = sum(len(b) for b in store.batches(32, shuffle=True, block_bytes=2**20, buffer_bytes=2**20))
assert rows == len(store)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def test_peak_memory_does_not_grow_with_the_store(tmp_path):
    """2 MiB of reads and buffer over stores of ~48 and ~190 MiB of hidden states: the same peak RSS."""
    peaks = []
    for rows in (3000, 12000):
        path = write_feature_store(tmp_path / f"s{rows}.zarr", rows, T=16, dd=256, dv=256, shard_rows=256)
        env = os.environ | {"PYTHONPATH": os.pathsep.join(sys.path)}
        out = subprocess.run([sys.executable, "-c", RSS_SCRIPT, str(path)], capture_output=True, text=True, env=env)
        assert out.returncode == 0, out.stderr
        peaks.append(int(out.stdout.split()[-1]))
        shutil.rmtree(path)
    assert abs(peaks[1] - peaks[0]) < 0.1 * peaks[0], peaks


def snakemake(workdir, *args):
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir),
           "--cores", "2", *args]
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)


def test_editing_one_registry_entry_reruns_only_its_jobs(tmp_path):
    from eventspec.digest import write_digest

    results = tmp_path / "results"
    for split, rows in (("train", 64), ("test", 16)):
        store = write_feature_store(results / f"features/{split}.zarr", rows, seed=rows)
        write_digest(store, results / f"features/{split}.digest.json")
    (results / "models").mkdir()
    write_lm_head(results / "models/verifier_lm_head.safetensors")
    registry = {name: {"level": "L1", "hyperparams": {"bottleneck_dim": 8}, "epochs": 1, "batch_size": 32}
                for name in ("a", "b")}
    config = {"data": {"source": "dsec", "root": str(tmp_path / "none")}, "adapters": registry,
              "train": {"block_mb": 1, "shuffle_buffer_mb": 1}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    shutil.copytree(ROOT / "xsd", tmp_path / "xsd")
    targets = [f"results/figures/adapters/{n}/training_curves.png" for n in registry]
    first = snakemake(tmp_path, *targets)
    assert first.returncode == 0, first.stderr[-3000:]
    registry["b"]["learning_rate"] = 0.01
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    dry = snakemake(tmp_path, "-n", *targets)
    assert dry.returncode == 0, dry.stderr[-3000:]
    outputs = set(re.findall(r"^\s+output: (results/.*)$", dry.stdout + dry.stderr, re.MULTILINE))
    assert outputs == {
        "results/adapters/b/best.safetensors, results/adapters/b/last.safetensors, "
        "results/adapters/b/config.json, results/adapters/b/history.json",
        "results/figures/adapters/b/training_curves.png",
    }, dry.stdout
