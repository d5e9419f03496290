# Helpers of the rules in the other .smk files: paths, config slices, targets, the software env.
import json
import os
import re
import shlex
import sys
from pathlib import Path

SOURCE = str(Path(workflow.basedir) / "workflow")
sys.path.insert(0, SOURCE)
from eventspec.codedigest import code_digest
from eventspec.event_window import resolve_event_window

# The drafter's event window (samples.event_window_ms) becomes concrete here, from the whole config, before the
# samples rule gets its slice; a window the drafter cannot read stops the run naming the setting.
resolve_event_window(config)

# Every job imports eventspec from this checkout, the code the rules' code digests hash: also inside
# the conda envs of envs/, which hold only the pinned dependencies (see envs/eventspec.post-deploy.sh).
# The prefix keeps Snakemake's default one, "set -euo pipefail; ".
JOB_PYTHONPATH = os.pathsep.join(filter(None, [SOURCE, os.environ.get("PYTHONPATH")]))
shell.prefix(f"set -euo pipefail; export PYTHONPATH={shlex.quote(JOB_PYTHONPATH)}; ")

RESULTS = config["results"]
SPLITS = ["train", "test"]


wildcard_constraints:
    split="|".join(SPLITS),
    shard=r"\d+",
    name=r"[A-Za-z0-9_.-]+",


def software_env():
    """The conda env file of all rules (``--software-deployment-method conda``), relative to workflow/rules/:
    the CUDA build of torch when a model runs on CUDA, else the CPU build. Both pin envs/constraints*.txt."""
    cuda = any(m["device"].startswith("cuda") for m in config["models"].values())
    return "../../envs/eventspec-cuda.yaml" if cuda else "../../envs/eventspec.yaml"


def config_json(*sections):
    """The named config sections as JSON: a rule's params slice and its CLI input."""
    return json.dumps({s: config[s] for s in sections}, sort_keys=True)


def model_json(name):
    """One model's config slice (``models.<name>``) as JSON, for rules that run only that model."""
    return json.dumps({"models": {name: config["models"][name]}}, sort_keys=True)


def gpus(*models):
    """GPUs a job running these models needs (its ``gpu`` resource, ``--gpus`` on SLURM): the highest CUDA
    index among their ``models.<name>.device`` plus one (a job sees its GPUs as cuda:0..N-1), 0 on the CPU."""
    devices = [config["models"][m]["device"] for m in models]
    cuda = [d for d in devices if d == "cuda" or d.startswith("cuda:")]
    return max((int(d.partition(":")[2] or 0) for d in cuda), default=-1) + 1


def toy_manifest():
    return f"{RESULTS}/toy_dsec.manifest.json"


def data_inputs():
    """What the sample stores depend on: the toy world's manifest, or nothing for DSEC."""
    return [toy_manifest()] if config["data"]["source"] == "toy" else []


def models_manifest():
    return f"{RESULTS}/models/toy_models.manifest.json"


def model_inputs():
    """What model-running rules depend on: the toy pair's manifest, or nothing for given checkpoints."""
    return [models_manifest()] if config["data"]["source"] == "toy" else []


def sample_store(split):
    return f"{RESULTS}/samples/{split}.zarr"


def sample_digest(split):
    return f"{RESULTS}/samples/{split}.digest.json"


def feature_part(split, shard):
    return f"{RESULTS}/features/{split}.part{shard}.zarr"


def feature_store(split):
    return f"{RESULTS}/features/{split}.zarr"


def feature_digest(split):
    return f"{RESULTS}/features/{split}.digest.json"


def lm_head_file():
    return f"{RESULTS}/models/verifier_lm_head.safetensors"


def verifier_path(wildcards):
    """The verifier checkpoint (a directory or a hub id) as a params function: --lint reads a plain
    string param as a hardcoded path prefix (results/models/verifier of ..._lm_head.safetensors)."""
    return config["models"]["verifier"]["path"]


def adapter_dir(name):
    return f"{RESULTS}/adapters/{name}"


def adapter_file(name, filename):
    return f"{adapter_dir(name)}/{filename}"


def adapter_entry(name):
    return config["adapters"][name]


def adapter_config_json(name):
    """One adapter's params slice: its registry entry and the train section (editing another entry changes nothing)."""
    return json.dumps({"adapters": {name: adapter_entry(name)}, "train": config["train"]}, sort_keys=True)


def trained_adapters():
    """The registry entries the pipeline trains: all, or those listed in train.only."""
    only = config["train"]["only"]
    unknown = sorted(set(only or []) - set(config["adapters"]))
    if unknown:
        raise ValueError(f"train.only: no registry entries {unknown} in adapters")
    return [name for name in config["adapters"] if only is None or name in only]


def adapter_targets():
    """Per trained adapter: its weights and its training-curves figure."""
    return [
        target
        for name in trained_adapters()
        for target in (adapter_file(name, "best.safetensors"), f"{RESULTS}/figures/adapters/{name}/training_curves.png")
    ]


def all_targets():
    targets = [feature_digest(s) for s in SPLITS] + [lm_head_file()] + adapter_targets() + evaluation_targets()
    if config["data"]["source"] == "toy":
        targets.append(f"{RESULTS}/models/toy_eval.json")
    targets.append(f"{RESULTS}/bench/summary.json")
    targets += [figure_path(name) for name in BENCH_FIGURES]
    if frames_sweep_configs():
        targets += [frames_summary(), figure_path("benchmark_frames")]
    return targets


# Stage 3: evaluation (evaluate.smk)


def evaluation_dir(name):
    return f"{RESULTS}/eval/{name}"


def evaluation_file(name, filename):
    return f"{evaluation_dir(name)}/{filename}"


def pair_name(pair):
    return f"{pair['prefill']}__{pair['decode']}"


def two_phase_pairs():
    """The configured two-phase pairs (evaluate.two_phase); both adapters must be trained."""
    trained = set(trained_adapters())
    for i, pair in enumerate(config["evaluate"]["two_phase"]):
        missing = sorted({pair["prefill"], pair["decode"]} - trained)
        if missing:
            raise ValueError(f"evaluate.two_phase[{i}]: {missing} not trained (adapters / train.only)")
    return [pair_name(p) for p in config["evaluate"]["two_phase"]]


def evaluation_json():
    """The evaluate section without the pair list: adding a pair re-evaluates no adapter."""
    section = {k: v for k, v in config["evaluate"].items() if k != "two_phase"}
    return json.dumps({"evaluate": section}, sort_keys=True)


def bench_inputs():
    summary = config["evaluate"]["bench_summary"]
    return [summary] if summary else []


def adapter_eval_inputs(name):
    """What evaluating one adapter reads: its weights and history, the test store's digest, the LM head."""
    inputs = [adapter_file(name, f) for f in ("best.safetensors", "config.json", "history.json")]
    if adapter_entry(name).get("use_token_embedding"):
        inputs += model_inputs()
    return inputs


def all_metrics():
    names = trained_adapters() + two_phase_pairs()
    return [evaluation_file(n, "acceptance_metrics.json") for n in names]


def evaluation_targets():
    per_adapter = [
        f"{RESULTS}/figures/evaluation/{name}/{figure}.png"
        for name in trained_adapters()
        for figure in ("metrics_summary", "stage_timeline", "token_metrics")
    ]
    per_pair = [f"{RESULTS}/figures/evaluation/{name}/stage_timeline.png" for name in two_phase_pairs()]
    return (
        per_adapter
        + per_pair
        + [f"{RESULTS}/figures/evaluation/adapter_comparison.png", f"{RESULTS}/report/METRICS_COMPARISON.md"]
    )


REGISTERED = "|".join(re.escape(n) for n in config["adapters"]) or "^$"


# Stage 4: benchmark (benchmark.smk)


def bench_dir():
    """The benchmark's output directory. Rules pass output directories as params functions of the
    wildcards (the workflow assumes a shared filesystem, as SLURM clusters have)."""
    return f"{RESULTS}/bench"


def benchmark_adapters(names=None):
    """Trained adapters that benchmark configurations ``names`` (default: all) load (from the adapter stage)."""
    configs = config["benchmark"]["configs"]
    adapters = set()
    for name in configs if names is None else names:
        c = configs[name]
        adapters.update(n for n in (c.get("prefill_adapter"), c.get("decode_adapter")) if n)
    return [f"{RESULTS}/adapters/{n}/best.safetensors" for n in sorted(adapters)]


def frames_sweep_configs():
    """The configurations the frames sweep runs (none when benchmark.frames_sweep lists no frame counts)."""
    sweep = config["benchmark"]["frames_sweep"]
    return sweep["configs"] if sweep["frames"] else []


def frames_sweep_dir():
    return f"{bench_dir()}/frames"


def frames_summary():
    return f"{frames_sweep_dir()}/frames_summary.json"


# Benchmark figures (figures.smk)

BENCH_FIGURES = [
    "benchmark_speedup",
    "benchmark_breakdown",
    "benchmark_acceptance",
    "benchmark_histogram",
    "benchmark_timeline",
]


def figure_path(name):
    return f"{RESULTS}/figures/{name}.png"
