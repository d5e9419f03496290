"""The whole DAG on the tiny test config, through Snakemake, then a no-op rerun."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import zarr

ROOT = Path(__file__).resolve().parents[1]


def snakemake(workdir, *args):
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(ROOT / "tests/config.test.yaml"), "--cores", "2", *args]
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=1200, env=env)


def test_pipeline_runs_and_reruns_nothing(tmp_path):
    res = snakemake(tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    out = tmp_path / "results-test"
    for split in ("train", "test"):
        digest = json.loads((out / f"features/{split}.digest.json").read_text())
        jsonschema.validate(digest, json.loads((ROOT / "xsd/digest.schema.json").read_text()))
        g = zarr.open_group(out / f"features/{split}.zarr", mode="r")
        windows = zarr.open_group(out / f"samples/{split}.zarr", mode="r").attrs["n_committed"]
        assert digest["n_committed"] == g.attrs["n_committed"] == windows * 4
        assert not (out / f"features/{split}.zarr.partial").exists()
    report = json.loads((out / "models/toy_eval.json").read_text())
    assert report["visual_token_ratio"] >= 5
    assert (out / "models/verifier_lm_head.safetensors").stat().st_size > 0
    again = snakemake(tmp_path, "-n")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr
