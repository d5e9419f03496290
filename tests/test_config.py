import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from eventspec import config as config_mod
from eventspec.cli import main as cli_main

ROOT = Path(__file__).resolve().parents[1]


def test_defaults_are_filled():
    cfg = config_mod.validate({})
    assert cfg["data"]["source"] == "toy"
    assert cfg["samples"]["window_ms"] == 1000
    assert cfg["toy"]["simulator"]["refractory_us"] == 1000



STORAGE_DTYPE_KEYS = {("extract", "dtype")}
"""Keys that say how numbers are stored, not in what precision a CPU computes."""


def compute_dtypes(node, path=()):
    """(path, value) of every ``*dtype`` setting under ``node`` (a validated config)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key.endswith("dtype") and isinstance(value, str):
                yield path + (key,), value
            else:
                yield from compute_dtypes(value, path + (key,))


def test_every_cpu_stage_computes_in_float32_by_default():
    """Emulated bfloat16 made toy training 23x slower on AVX2-only CPUs: no CPU stage defaults to it."""
    cfg = config_mod.validate(yaml.safe_load((ROOT / "config.yaml").read_text()))
    assert all(m["device"] == "cpu" for m in cfg["models"].values())
    found = dict(compute_dtypes(cfg))
    assert ("toy_models", "train_dtype") in found and ("models", "verifier", "dtype") in found
    wrong = {".".join(k): v for k, v in found.items() if k not in STORAGE_DTYPE_KEYS and v != "float32"}
    assert not wrong, f"CPU stages defaulting to another precision than float32: {wrong}"

@pytest.mark.parametrize(
    "cfg, key",
    [
        ({"samples": {"window_ms": "1s"}}, "samples.window_ms"),
        ({"toy": {"sequences": {"train": 0}}}, "toy.sequences.train"),
        ({"data": {"source": "kitti"}}, "data.source"),
        ({"models": {"verifier": {"quant": "3bit"}}}, "models.verifier.quant"),
    ],
)
def test_wrong_type_names_the_key(cfg, key):
    with pytest.raises(config_mod.ConfigError, match=f"key '{key}'"):
        config_mod.validate(cfg)


def test_unknown_key_is_named():
    with pytest.raises(config_mod.ConfigError, match=r"key 'toy'.*'colour' was unexpected"):
        config_mod.validate({"toy": {"colour": 1}})
    with pytest.raises(config_mod.ConfigError, match=r"'sampels' was unexpected"):
        config_mod.validate({"sampels": {}})


def test_cli_reports_config_errors(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"samples": {"max_questions": 0}}))
    rc = cli_main(["prepare-samples", "--config", str(bad), "--split", "train", "--out", str(tmp_path / "x.zarr")])
    assert rc == 2
    assert "samples.max_questions" in capsys.readouterr().err


def snakemake(*args, cwd=ROOT):
    return subprocess.run(
        [sys.executable, "-m", "snakemake", *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize("configfile", [None, "tests/config.test.yaml"])
def test_snakemake_dry_run(configfile):
    args = ["-n", "--forceall", "--quiet", "rules"] + (["--configfile", configfile] if configfile else [])
    res = snakemake(*args)
    assert res.returncode == 0, res.stderr
    for rule in ("toy_sequences", "prepare_samples", "toy_models", "extract_lm_head", "extract_features", "gather_features"):
        assert rule in res.stdout + res.stderr


def test_snakemake_rejects_bad_config_naming_the_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"samples": {"window_ms": "long"}}))
    res = snakemake("-n", "--configfile", str(bad))
    assert res.returncode != 0
    assert "window_ms" in res.stderr + res.stdout


def test_non_editable_install_finds_schemas_and_default_config(tmp_path):
    """`pip install .` (not -e) ships xsd/ and the default config inside the package."""
    target = tmp_path / "site"
    res = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(target), str(ROOT)],
        capture_output=True, text=True, timeout=600,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert (target / "eventspec/xsd/config.schema.yaml").is_file() and not (target / "eventspec/xsd").is_symlink()
    code = (
        "import eventspec, eventspec.config as c, eventspec.schemas as s; "
        "assert eventspec.__file__.startswith(%r), eventspec.__file__; "
        "cfg = c.load(c.DEFAULT_CONFIG); s.write_json('d.json', {'n_committed': 0, 'arrays': {}, 'blocks': {}, "
        "'config': {}}, 'digest'); print(cfg['extract']['max_new_tokens'])" % str(target)
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         env={"PYTHONPATH": str(target), "PATH": os.environ["PATH"]})
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "50"


# The adapter registry's scale: the toy's is its own layer (config.yaml toy_adapters), a real config gets the seeds'.
TOY_SCALE = {  # what every toy entry of a level trained with before and after the toy's scale became a layer
    "L1": {"hyperparams": {"bottleneck_dim": 64}, "epochs": 4, "batch_size": 128, "learning_rate": 0.003},
    "L2": {"hyperparams": {"bottleneck_dim": 64}, "epochs": 4, "batch_size": 128, "learning_rate": 0.003},
    "L3": {"hyperparams": {"bottleneck_dim": 256}, "epochs": 4, "batch_size": 128, "learning_rate": 0.003},
    "L4": {"hyperparams": {"num_heads": 4, "ffn_dim": 256}, "epochs": 2, "batch_size": 128, "learning_rate": 0.002},
    "L5": {"hyperparams": {"num_heads": 4, "ffn_dim": 256, "max_positions": 64}, "epochs": 2, "batch_size": 128,
           "learning_rate": 0.002},
}
TOY_SCALE["L5F"] = TOY_SCALE["B1"] = TOY_SCALE["B1E"] = TOY_SCALE["L5"]
REAL = {
    "data": {"source": "dsec", "root": "/data/DSEC", "sequences": {"train": ["zurich_city_00_a"], "test": ["zurich_city_01_a"]}},
    "samples": {"questions": "dsec"},
    "models": {"verifier": {"path": "LanguageBind/Video-LLaVA-7B-hf", "dtype": "float16", "quant": "4bit", "device": "cuda:0"},
               "drafter": {"path": "/ckpt/EventGPT-7b", "dtype": "float16", "quant": "4bit", "device": "cuda:1"}},
}


def merged(*configfiles):
    """config.yaml with each --configfile merged in as Snakemake merges it (``update_config``), then validated."""
    from snakemake.utils import update_config

    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    for path in configfiles:
        update_config(cfg, yaml.safe_load(Path(path).read_text()))
    return config_mod.validate(cfg)


def training(entry):
    return {k: entry[k] for k in ("hyperparams", "epochs", "batch_size", "learning_rate")}


def test_a_real_config_trains_the_seeds_adapters(tmp_path):
    from eventspec.levels import DEFAULT_HPARAMS, SEED_TRAINING

    (tmp_path / "real.yaml").write_text(yaml.safe_dump(REAL))
    adapters = merged(tmp_path / "real.yaml")["adapters"]
    assert training(adapters["L4"]) == {"hyperparams": {}, "epochs": 50, "batch_size": 16, "learning_rate": 0.0001}
    assert DEFAULT_HPARAMS["L4"] | {"num_heads": 8, "ffn_dim": 2048} == DEFAULT_HPARAMS["L4"]  # built at 4096 dims
    assert len(adapters) == 14
    for name, entry in adapters.items():
        level = "B1" if entry["vlm_only"] else entry["level"]
        assert training(entry) == {"hyperparams": {}, **SEED_TRAINING[level]}, name
    # an entry's own settings still win over its level's
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump({"adapters": {"L4": {"epochs": 300, "batch_size": 64}}}))
    l4 = merged(tmp_path / "real.yaml", tmp_path / "mine.yaml")["adapters"]["L4"]
    assert (l4["epochs"], l4["batch_size"], l4["learning_rate"]) == (300, 64, 0.0001)


def test_the_toy_world_keeps_its_scale():
    for name, entry in merged()["adapters"].items():
        assert training(entry) == TOY_SCALE["B1" if entry["vlm_only"] else entry["level"]], name
    test = merged(ROOT / "tests/config.test.yaml")["adapters"]
    assert training(test["L1"]) == {"hyperparams": {"bottleneck_dim": 16}, "epochs": 2, "batch_size": 8,
                                    "learning_rate": 0.003}
    assert training(test["L5F"]) == {"hyperparams": {"num_heads": 2, "ffn_dim": 32, "max_positions": 32}, "epochs": 2,
                                     "batch_size": 8, "learning_rate": 0.002}


def test_dry_run_of_a_real_config_shows_each_adapters_settings_and_devices(tmp_path):
    real = REAL | {"results": str(tmp_path / "results-real"), "train": {"device": "cuda"},
                   "evaluate": {"device": "cuda:0"}}
    (tmp_path / "real.yaml").write_text(yaml.safe_dump(real))
    res = snakemake("-n", "--cores", "8", "--configfile", str(tmp_path / "real.yaml"))
    assert res.returncode == 0, res.stderr[-3000:]
    out = res.stdout + res.stderr
    assert ("train_adapter adapters.L4: L4 at the seeds' scale, hyperparams alpha=0.1, dropout=0.1, ffn_dim=2048, "
            "num_heads=8, num_layers=1; epochs 50, batch_size 16, learning_rate 0.0001, early_stopping 10") in out
    assert out.count("train_adapter adapters.") == 14 and "toy_adapters" not in out
    evaluate = out[out.index("rule evaluate_adapter:"):]
    evaluate = evaluate[: evaluate.index("Shell command")]
    assert "threads: 4" in evaluate and "gpu=1" in evaluate, evaluate


def test_stage_devices_are_checked_naming_the_key():
    with pytest.raises(config_mod.ConfigError, match="key 'train.device'"):
        config_mod.validate({"train": {"device": "gpu"}})
    assert config_mod.validate({})["evaluate"]["device"] == "cpu"
