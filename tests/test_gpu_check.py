"""``scripts/gpu-check --device cpu``: the GPU check's every step at tiny size, as CI runs it."""

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHECKOUT = ("Snakefile", "workflow", "xsd", "envs", "profiles", "scripts", "tests", "pyproject.toml")
"""What the script reads of the checkout. Not config.yaml: like every test-config run of the suite
(tests/pipeline_run.py), the finished run had none beside it, so both read the same config."""


def test_gpu_check_runs_every_step_at_tiny_size_on_the_cpu(pipeline_run, tmp_path):
    """The script runs in a copy of the checkout (links to its files) holding the session's finished run of the
    same test config (tests/conftest.py): its pipeline step, models on the cpu, finds that run's outputs up to date
    instead of running the pipeline a second time (tests/test_pipeline.py tests the run itself), and the replay
    reads that run's oracle trace."""
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    for part in CHECKOUT:
        (checkout / part).symlink_to(ROOT / part)
    for part in ("results-test", ".snakemake"):
        shutil.copytree(pipeline_run / part, checkout / part, symlinks=True)
    run = subprocess.run([str(checkout / "scripts/gpu-check"), "--device", "cpu", "--out", str(tmp_path)],
                         cwd=checkout, capture_output=True, text=True, timeout=1500)
    reports = list(tmp_path.glob("cpu-*.md"))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert len(reports) == 1
    text = reports[0].read_text()
    print(text)
    for step in ("CUDA-marked tests", "test-config pipeline (models on cpu)", "eventspec profile", "eventspec replay"):
        assert f"| {step} | ok |" in text
    assert "| replay_chain |" in text and "| replay_head |" in text and "| **recommended** |" in text
    log = Path(run.stdout.split("log: ", 1)[1].split(";", 1)[0]).read_text()
    assert "Nothing to be done (all requested files are present and up to date)." in log, log[-3000:]


def test_prepare_wheels_excludes_torch_and_names_the_python():
    script = (ROOT / "scripts/gpu-check").read_text()
    assert "--python-version 3.12" in script and "--only-binary=:all:" in script
    assert "grep -v -E '^(torch|nvidia-|triton)' envs/constraints.txt" in script
