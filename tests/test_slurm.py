"""The test config's extraction DAG through a real local SLURM (profiles/slurm), against a local run.

Every rule becomes a SLURM job submitted by snakemake-executor-plugin-slurm;
the feature stores it produces must hash exactly like a workstation run's.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import slurm_cluster

ROOT = Path(__file__).resolve().parents[1]
TARGETS = ["results-test/features/train.digest.json", "results-test/features/test.digest.json"]


def snakemake(workdir, *args):
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(ROOT / "tests/config.test.yaml"), *args, *TARGETS]
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=1800, env=env)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    slurm_cluster.start(tmp_path_factory.mktemp("slurm"))
    yield
    slurm_cluster.stop_daemons()


def test_slurm_run_matches_a_local_run(cluster, tmp_path):
    on_slurm = snakemake(tmp_path / "slurm", "--profile", str(ROOT / "profiles/slurm"))
    assert on_slurm.returncode == 0, on_slurm.stderr[-3000:]
    submitted = on_slurm.stdout + on_slurm.stderr
    assert submitted.count("has been submitted with SLURM jobid") >= 8, submitted[-3000:]
    local = snakemake(tmp_path / "local", "--cores", "2")
    assert local.returncode == 0, local.stderr[-3000:]
    for target in TARGETS:
        digests = [json.loads((tmp_path / run / target).read_text()) for run in ("slurm", "local")]
        assert digests[0]["arrays"] == digests[1]["arrays"], target
