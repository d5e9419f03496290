"""The figure registry and its one contract: ``eventspec figure NAME``, one rule per registered figure."""

import importlib
import inspect
import json
import os
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import eventspec.figures as figures_pkg
from eventspec.codedigest import modules_of
from eventspec.figures import FIGURES
from figure_fixtures import draw

ROOT = Path(__file__).resolve().parents[1]
HELPERS = {"common", "render"}
"""Modules of eventspec.figures that are not figures."""


def test_every_figure_module_is_registered_and_follows_the_contract():
    modules = {m.name for m in pkgutil.iter_modules(figures_pkg.__path__)} - HELPERS
    assert modules == set(FIGURES)
    for name in FIGURES:
        module = importlib.import_module(f"eventspec.figures.{name}")
        width, height = module.SIZE
        assert width > 0 and height > 0, name
        assert list(inspect.signature(module.plot).parameters) == ["fig", "inputs", "tau"], name


def test_a_figures_code_digest_covers_no_other_figure_and_not_the_registry():
    """Restyling one figure reruns only its jobs; registering a new one reruns none."""
    for name in FIGURES:
        covered = set(modules_of(f"eventspec.figures.{name}")) | set(modules_of("eventspec.figures.render"))
        others = {f"eventspec.figures.{other}" for other in FIGURES if other != name} | {"eventspec.figures"}
        assert not covered & others, (name, covered & others)


def test_an_unknown_figure_fails_naming_the_known_ones():
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(ROOT / "workflow"), os.environ.get("PYTHONPATH", "")])}
    res = subprocess.run([sys.executable, "-m", "eventspec.cli", "figure", "benchmark_speedupp", "--inputs", "x.json",
                          "--out", "x.png"], capture_output=True, text=True, env=env, timeout=60)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "invalid choice: 'benchmark_speedupp'" in res.stderr
    assert all(f"'{name}'" in res.stderr for name in FIGURES), res.stderr


def test_render_draws_the_modules_size(tmp_path):
    frames = {"frames": [8, 16], "strongest_peer": ["vl_baseline", "vl_baseline"],
              "configs": {"vl_baseline": {"speedup_vs_peer": [1.0, 1.0]}, "L4+VL": {"speedup_vs_peer": [0.9, 1.1]}},
              "verifier_prefill_s_median": [0.007, 0.012]}
    (tmp_path / "frames_summary.json").write_text(json.dumps(frames))
    draw(tmp_path, "benchmark_frames", tmp_path / "frames_summary.json")


def figure_jobs(dry_run: str) -> list[tuple[str, str]]:
    """(rule, figure named by its `eventspec figure` command) of every figure job in a dry run's plan."""
    parts = re.split(r"^(?:local)?rule (\w+):$", dry_run, flags=re.M)
    jobs = [(rule, match.group(1)) for rule, block in zip(parts[1::2], parts[2::2])
            if (match := re.search(r"^Shell command: eventspec figure (\S+)", block, re.M))]
    assert len(jobs) == dry_run.count("Shell command: eventspec figure ")
    return jobs


def test_every_figure_rule_names_a_registered_figure(tmp_path):
    """The default DAG, dry run: each figure job runs `eventspec figure NAME` of a registered NAME from the rule
    figure_NAME, and every registered figure has its jobs."""
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    res = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory",
                          str(tmp_path), "--configfile", str(ROOT / "config.yaml"), "-n", "-p"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    jobs = figure_jobs(res.stdout + res.stderr)
    assert all(rule == f"figure_{name}" for rule, name in jobs), jobs
    assert {name for _, name in jobs} == set(FIGURES)


def test_every_figure_rule_is_sized_in_the_workflow_profile():
    import yaml

    profile = yaml.safe_load((ROOT / "profiles/default/config.yaml").read_text())
    assert {f"figure_{name}" for name in FIGURES} <= set(profile["set-resources"])
