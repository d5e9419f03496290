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
