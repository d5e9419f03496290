"""The workflow's own hygiene: ``snakemake --lint`` has nothing to say and snakefmt would change nothing."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(*args, cwd):
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=600)


@pytest.mark.parametrize("configfile", ["config.yaml", "tests/config.test.yaml"])
def test_snakemake_lint_reports_nothing(configfile, tmp_path):
    res = run("snakemake", "--snakefile", str(ROOT / "Snakefile"), "--configfile", str(ROOT / configfile),
              "--directory", str(tmp_path), "--lint", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr[-5000:]
    assert "Congratulations, your workflow is in a good condition!" in res.stdout + res.stderr


def test_snakefiles_are_snakefmt_formatted():
    res = run("snakefmt", "--check", "--diff", "Snakefile", "workflow/rules", cwd=ROOT)
    assert res.returncode == 0, f"run `snakefmt Snakefile workflow/rules`:\n{res.stdout[-5000:]}{res.stderr[-2000:]}"
