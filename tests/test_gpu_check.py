"""``scripts/gpu-check --device cpu``: the GPU check's every step at tiny size, as CI runs it."""

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_runs_every_step_at_tiny_size_on_the_cpu(tmp_path):
    run = subprocess.run([str(ROOT / "scripts/gpu-check"), "--device", "cpu", "--out", str(tmp_path)], cwd=ROOT,
                         capture_output=True, text=True, timeout=1500)
    reports = list(tmp_path.glob("cpu-*.md"))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert len(reports) == 1
    text = reports[0].read_text()
    for step in ("CUDA-marked tests", "test-config pipeline (models on cpu)", "eventspec profile", "eventspec replay"):
        assert f"| {step} | ok |" in text
    assert "| replay_chain |" in text and "| replay_head |" in text and "| **recommended** |" in text


def test_prepare_wheels_excludes_torch_and_names_the_python():
    script = (ROOT / "scripts/gpu-check").read_text()
    assert "--python-version 3.12" in script and "--only-binary=:all:" in script
    assert "grep -v -E '^(torch|nvidia-|triton)' envs/constraints.txt" in script
