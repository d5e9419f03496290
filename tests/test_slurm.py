"""The test config's extraction DAG through a real local SLURM (profiles/slurm), against a local run; an
extraction job cancelled mid-run, resubmitted by the profile's retry, resuming from what it committed; and the
GPUs the profile asks for, per models.*.device.

Every rule becomes a SLURM job submitted by snakemake-executor-plugin-slurm;
the feature stores it produces must hash exactly like a workstation run's.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

import slurm_cluster

ROOT = Path(__file__).resolve().parents[1]
TEST_CONFIG = ROOT / "tests/config.test.yaml"
TARGETS = ["results-test/features/train.digest.json", "results-test/features/test.digest.json"]
PROFILE = ["--profile", str(ROOT / "profiles/slurm")]
FAST_POLLING = ["--slurm-init-seconds-before-status-checks", "1", "--seconds-between-status-checks", "1"]
"""The plugin's first status check 1 s after a submission and 1 s after a check that saw a job end, instead of 40 s
(a real cluster keeps the defaults): test time only. (After a check that saw no job end the plugin waits 10 s more
than the time before, up to 180 s: that growth has no setting.)"""
SUBMITTED = re.compile(r"has been submitted with SLURM jobid (\d+) \(log: \S*/rule_(\w+)/")


def command(workdir, *args, configfile=TEST_CONFIG, targets=TARGETS):
    return [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir),
            "--configfile", str(configfile), *args, *targets]


def environment():
    return os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def snakemake(workdir, *args, **kw):
    return subprocess.run(command(workdir, *args, **kw), capture_output=True, text=True, timeout=1800,
                          env=environment())


class Background:
    """A snakemake run in the background (the SLURM runs mostly wait on the plugin's polling); output to a file."""

    def __init__(self, workdir: Path, *args, **kw):
        self.log = workdir.with_name(workdir.name + ".log")
        self.start = time.time()
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(command(workdir, *args, **kw), stdout=log, stderr=subprocess.STDOUT,
                                         text=True, env=environment())

    def wait(self, what: str) -> str:
        """Wait for the run; assert it succeeded; return its output."""
        try:
            self.proc.wait(timeout=1800)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
        print(f"{what}: {self.log.stat().st_mtime - self.start:.0f} s")  # to its last output
        output = self.log.read_text()
        assert self.proc.returncode == 0, output[-3000:]
        return output


def submitted_rules(output: str) -> list[str]:
    return sorted(rule for _, rule in SUBMITTED.findall(output))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    slurm_cluster.start(tmp_path_factory.mktemp("slurm"))
    yield
    slurm_cluster.stop()


@pytest.fixture(scope="module")
def runs(cluster, request, tmp_path_factory):
    """Workdirs of the test config's extraction DAG run through profiles/slurm, and of the session's local run of
    the whole test config (tests/conftest.py: `--cores 2`, the same threads per job as on SLURM), made meanwhile
    when no other test has made it yet (the SLURM run mostly waits on the plugin's polling)."""
    root = tmp_path_factory.mktemp("runs")
    on_slurm = Background(root / "slurm", *PROFILE, *FAST_POLLING)
    local = request.getfixturevalue("pipeline_run")
    print()
    output = on_slurm.wait("SLURM run of the extraction DAG")
    return {"slurm": root / "slurm", "local": local, "slurm_output": output}


def test_slurm_run_matches_a_local_run(runs):
    assert submitted_rules(runs["slurm_output"]) == sorted(
        ["toy_sequences", "prepare_samples", "prepare_samples", "toy_models"]
        + ["extract_features"] * 4 + ["gather_features"] * 2), runs["slurm_output"][-3000:]
    for target in TARGETS:
        digests = [json.loads((runs[run] / target).read_text()) for run in ("slurm", "local")]
        assert digests[0]["arrays"] == digests[1]["arrays"], target


def committed(store: Path) -> int:
    """Rows a writer has committed to ``store`` (its group attribute n_committed; 0 before it exists)."""
    try:
        return json.loads((store / "zarr.json").read_text())["attributes"].get("n_committed", 0)
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return 0


def committed_shard_files(store: Path, rows: int) -> dict[str, tuple[int, bytes]]:
    """(mtime, bytes) of every file of the store shards holding rows < ``rows`` (one row per shard here)."""
    files = {}
    for path in sorted(store.glob("*/c/**/*")):
        relative = path.relative_to(store)
        if path.is_file() and int(relative.parts[2]) < rows:
            files[str(relative)] = (path.stat().st_mtime_ns, path.read_bytes())
    return files


def slurm_state(jobid: str) -> str:
    return subprocess.run(["squeue", "-h", "-t", "all", "-j", jobid, "-o", "%T"], capture_output=True,
                          text=True).stdout.strip()


def test_extraction_cancelled_mid_run_resumes_from_its_commits(runs, tmp_path):
    """scancel the extraction job after its first commits; the retry continues from them, and the store hashes
    like an uninterrupted run of the same config."""
    config = yaml.safe_load(TEST_CONFIG.read_text())
    # one job per split and one pair per commit (a commit = a store shard), 120 pairs: ~10 s of extraction
    config["extract"].update(shards=1, batch_size=1, write_rows=1, chunk_rows=1, max_questions=10)
    configfile = tmp_path / "kill.yaml"
    configfile.write_text(yaml.safe_dump(config))
    target = ["results-test/features/train.digest.json"]
    for run in ("killed", "uninterrupted"):  # samples and models of the SLURM run; no features
        shutil.copytree(runs["slurm"], tmp_path / run, symlinks=True)
        shutil.rmtree(tmp_path / run / "results-test/features")

    work = tmp_path / "killed/results-test/features/train.part0.zarr.partial"
    killed = Background(tmp_path / "killed", *PROFILE, *FAST_POLLING, configfile=configfile, targets=target)
    deadline = time.monotonic() + 600
    while committed(work) < 2 and killed.proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    running = subprocess.run(["squeue", "-h", "-t", "RUNNING", "-o", "%i %k"], capture_output=True,
                             text=True).stdout.split("\n")
    jobs = [line.split()[0] for line in running if "rule_extract_features" in line]
    assert len(jobs) == 1, (running, committed(work), killed.proc.poll())
    subprocess.run(["scancel", jobs[0]], check=True)
    while slurm_state(jobs[0]) in ("RUNNING", "COMPLETING"):
        time.sleep(0.05)
    assert slurm_state(jobs[0]) in ("CANCELLED", ""), slurm_state(jobs[0])
    kept = committed(work)
    before = committed_shard_files(work, kept)
    uninterrupted = Background(tmp_path / "uninterrupted", "--cores", "2", configfile=configfile, targets=target)
    print(f"\nSLURM extraction cancelled after {kept} of 120 pairs")
    output = killed.wait("  resubmitted and resumed, from the first submission")
    assert 2 <= kept < 120
    # the cancelled job and its retry, then the gather
    assert submitted_rules(output) == ["extract_features", "extract_features", "gather_features"], output[-3000:]
    log = (tmp_path / "killed/results-test/logs/extract_train_0.log").read_text()
    assert f"resuming at pair {kept} of 120 ({kept} committed by an earlier run)" in log, log[-2000:]
    store = tmp_path / "killed/results-test/features/train.part0.zarr"
    assert committed(store) == 120
    after = committed_shard_files(store, kept)
    # every committed row's shard is there (zarr skips writing all-zero shards, e.g. question 0's id) and was
    # not rewritten by the retry
    assert sum(name.startswith("verifier_hidden/") for name in before) == kept and after == before
    uninterrupted.wait("  local uninterrupted extraction, at the same time")
    digests = [json.loads((tmp_path / run / target[0]).read_text()) for run in ("killed", "uninterrupted")]
    assert digests[0] == digests[1]


def planned_gpus(configfile: Path, workdir: Path) -> dict[str, set[int]]:
    """Rule -> the `gpu` resources of its jobs in a dry run through profiles/slurm (all jobs: empty workdir)."""
    res = snakemake(workdir, "-n", *PROFILE, configfile=configfile, targets=[])
    assert res.returncode == 0, res.stderr[-3000:]
    gpus = {}
    for block in (res.stdout + res.stderr).split("\nrule ")[1:]:
        rule = block.split(":", 1)[0]
        found = re.search(r"^\s+resources: .*\bgpu=(\d+)", block, re.M)
        gpus.setdefault(rule, set()).add(int(found.group(1)) if found else 0)
    return gpus


# On the CPU (the test config) no job asks for a GPU: the SLURM runs above would not be scheduled on the
# GPU-less test node otherwise.
@pytest.mark.parametrize("devices, extract, bench", [
    ({"verifier": "cuda", "drafter": "cpu"}, 1, 1),
    ({"verifier": "cuda:0", "drafter": "cuda:1"}, 2, 2),
])
def test_the_profile_asks_for_the_gpus_the_model_devices_need(devices, extract, bench, tmp_path):
    config = yaml.safe_load(TEST_CONFIG.read_text())
    for name, device in devices.items():
        config["models"][name]["device"] = device
    configfile = tmp_path / "c.yaml"
    configfile.write_text(yaml.safe_dump(config))
    gpus = planned_gpus(configfile, tmp_path / "work")
    assert gpus.pop("extract_features") == {extract} and gpus.pop("benchmark") == {bench}
    assert set(gpus) >= {"toy_models", "extract_lm_head", "train_adapter", "evaluate_adapter"}
    assert set().union(*gpus.values()) == {0}  # no other job asks for a GPU


def test_the_example_partition_limits_load_in_the_plugin():
    from snakemake_executor_plugin_slurm.partitions import read_partition_file

    partitions = {p.name: p.limits for p in read_partition_file(ROOT / "profiles/slurm/partitions.yaml")}
    assert partitions["gpu"].max_gpu > 0 and partitions["compute"].max_gpu == 0
    assert "# slurm-partition-config: partitions.yaml" in (ROOT / "profiles/slurm/config.yaml").read_text()
