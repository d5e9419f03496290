"""The test config's pipeline through Snakemake (``python -m snakemake`` in a subprocess), shared by the tests that
read a finished run (tests/conftest.py's ``pipeline_run``) and the ones that plan or run jobs against it."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEST_CONFIG = ROOT / "tests/config.test.yaml"


def snakemake(workdir, *args, snakefile=ROOT / "Snakefile", configfile=TEST_CONFIG):
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(snakefile), "--directory", str(workdir),
           "--configfile", str(configfile), "--cores", "2", *args]
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=1200, env=env)
