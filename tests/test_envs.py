"""The conda envs of envs/ (``snakemake --software-deployment-method conda``): the same pins as the pip
constraints, the env each rule gets, and the post-deploy script that gives an env the ``eventspec`` command.

No conda here: creating an env from these files (conda-forge python + pip section) is not exercised.
"""

import json
import os
import re
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
ENVS = {"eventspec.yaml": "constraints.txt", "eventspec-cuda.yaml": "constraints.txt"}
CPU_INDEX = "--extra-index-url https://download.pytorch.org/whl/cpu"


def pins(lines) -> dict[str, str]:
    """name -> version of every ``name==version`` line (comments, blanks and pip options skipped)."""
    out = {}
    for line in lines:
        line = line.strip()
        if not line or line.startswith(("#", "-")):
            continue
        req = Requirement(line)
        (spec,) = req.specifier
        assert spec.operator == "==", line
        out[canonicalize_name(req.name)] = spec.version
    return out


def pip_section(env: dict) -> list[str]:
    (section,) = [d["pip"] for d in env["dependencies"] if isinstance(d, dict)]
    return section


@pytest.mark.parametrize("env_file, constraints", ENVS.items())
def test_conda_env_pins_exactly_the_constraints(env_file, constraints):
    env = yaml.safe_load((ROOT / "envs" / env_file).read_text())
    expected = pins((ROOT / "envs" / constraints).read_text().splitlines())
    got = pins(pip_section(env))
    differ = {n: (got.get(n), expected.get(n)) for n in got.keys() | expected.keys() if got.get(n) != expected.get(n)}
    assert not differ, f"envs/{env_file} vs envs/{constraints}, name: (env, constraints): {differ}"
    options = [line for line in pip_section(env) if line.startswith("-")]
    # The CPU env looks in the CPU index too, where 2.13.0+cpu sorts above PyPI's (CUDA) 2.13.0.
    assert options == ([CPU_INDEX] if env_file == "eventspec.yaml" else [])
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    python = next(d for d in conda if d.startswith("python=")).removeprefix("python=")
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert SpecifierSet(requires).contains(python), (python, requires)
    assert any(d.startswith("pip=") for d in conda)
    assert (ROOT / "envs" / env_file.replace(".yaml", ".post-deploy.sh")).is_file()


PIN_FILES = sorted((ROOT / "envs").glob("*.txt")) + sorted((ROOT / "envs").glob("*.yaml"))


@pytest.mark.parametrize("path", PIN_FILES, ids=lambda p: p.name)
def test_no_pin_carries_a_local_version_label(path):
    """A local label (``torch==2.13.0+cpu``) exists only on the index that built it: pip on PyPI alone fails."""
    labelled = [line.strip() for line in path.read_text().splitlines() if re.search(r"==\S*\+", line.split("#")[0])]
    assert not labelled, f"{path.name} pins local versions: {labelled}"


def rule_envs(tmp_path, config: dict) -> dict[str, str | None]:
    """Rule -> its conda env file (relative to the repo) when Snakemake parses the workflow with ``config``
    over the test config; parsed in a subprocess (Snakemake's API changes the process's state)."""
    script = f"""
import json
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings

root = Path({str(ROOT)!r})
with SnakemakeApi(OutputSettings()) as api:
    wf = api.workflow(ResourceSettings(), ConfigSettings(configfiles=[root / "tests/config.test.yaml"],
                      config=json.loads({json.dumps(config)!r})), snakefile=root / "Snakefile", workdir=Path.cwd())
    envs = {{r.name: r.conda_env and str((Path(r.snakefile).parent / r.conda_env).resolve().relative_to(root))
             for r in wf._workflow.rules if r.shellcmd}}
print(json.dumps(envs))
"""
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_every_rule_runs_in_the_env_of_the_models_device(tmp_path):
    cpu = rule_envs(tmp_path, {})
    assert len(cpu) > 15 and set(cpu.values()) == {"envs/eventspec.yaml"}, cpu
    cuda = rule_envs(tmp_path, {"models": {"drafter": {"device": "cuda:1"}}})
    assert cuda.keys() == cpu.keys() and set(cuda.values()) == {"envs/eventspec-cuda.yaml"}, cuda


def test_post_deploy_script_gives_an_env_the_eventspec_command(tmp_path):
    """The script runs inside the new env (its ``python`` first on PATH) and writes ``<env>/bin/eventspec``;
    the package comes from the checkout on PYTHONPATH, as the rules' shell prefix sets it (common.smk)."""
    env = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
    path = f"{env / 'bin'}{os.pathsep}{os.environ['PATH']}"
    subprocess.run(["bash", str(ROOT / "envs/eventspec.post-deploy.sh")], check=True, env=os.environ | {"PATH": path})
    launcher = env / "bin/eventspec"
    assert launcher.read_text().startswith(f"#!{env}/bin/python")
    # This process's site-packages stand in for the env's pinned dependencies.
    deps = sysconfig.get_paths()["purelib"]
    pythonpath = os.pathsep.join([str(ROOT / "workflow"), deps])
    code = "import eventspec, sys; print(eventspec.__file__, sys.prefix)"
    res = subprocess.run([str(env / "bin/python"), "-c", code], capture_output=True, text=True,
                         env=os.environ | {"PYTHONPATH": pythonpath}, check=True)
    assert res.stdout.split() == [str(ROOT / "workflow/eventspec/__init__.py"), str(env)]
    # A command with worker processes: they start by importing the launcher, which must not run the CLI again.
    cfg = {"toy": {"sequences": {"train": 1, "test": 1}, "duration_s": 0.3, "width": 32, "height": 24}}
    res = subprocess.run([str(launcher), "toy-sequences", "--config-json", json.dumps(cfg), "--workers", "2",
                          "--out", str(tmp_path / "toy"), "--manifest", str(tmp_path / "manifest.json")],
                         capture_output=True, text=True, env=os.environ | {"PYTHONPATH": pythonpath}, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert len(list((tmp_path / "toy").glob("*/*/events/left/events.h5"))) == 2
