# Helpers of the rules in the other .smk files: paths, config slices, targets, the software env.
import json
import os
import re
import shlex
from pathlib import Path
from typing import NamedTuple

from snakemake.logging import logger

SOURCE = str(Path(workflow.basedir) / "workflow")  # on sys.path (the Snakefile puts it there)
from eventspec.codedigest import code_digest
from eventspec.event_window import resolve_event_window
from eventspec.figures import FIGURES
from eventspec.levels import describe

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


def device_gpus(devices):
    """GPUs a job running on these devices needs (its ``gpu`` resource, ``--gpus`` on SLURM): the highest CUDA
    index plus one (a job sees its GPUs as cuda:0..N-1), 0 on the CPU."""
    cuda = [d for d in devices if d == "cuda" or d.startswith("cuda:")]
    return max((int(d.partition(":")[2] or 0) for d in cuda), default=-1) + 1


def gpus(*models):
    """GPUs a job running these models needs, from their ``models.<name>.device``."""
    return device_gpus([config["models"][m]["device"] for m in models])


def stage_gpus(stage):
    """GPUs a train/evaluate job needs, from ``<stage>.device``."""
    return device_gpus([config[stage]["device"]])


def stage_threads(stage):
    """CPU threads of a train/evaluate job: 1 on the CPU (the toy's jobs run side by side, one core each); 4 when
    ``<stage>.device`` is CUDA, where the CPU feeds the GPU (store reads, Blosc decompression, batching)."""
    return 4 if device_gpus([config[stage]["device"]]) else 1


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


def log_adapter_settings():
    """What each trained adapter gets (its level's defaults included, and their scale), logged once per invocation
    (not by the jobs it spawns): the plan of a real config says which hyperparameters every adapter trains with."""
    if workflow.is_main_process:
        for name in trained_adapters():
            logger.info(f"train_adapter {describe(name, adapter_entry(name), config)}")


def all_targets():
    """Every stage's outputs and every figure (figure_targets)."""
    targets = [feature_digest(s) for s in SPLITS] + [lm_head_file()]
    targets += [adapter_file(name, "best.safetensors") for name in trained_adapters()]
    targets.append(report_file())
    targets += [evaluation_file(n, "head_comparison.json") for n in head_comparisons()]
    if config["data"]["source"] == "toy":
        targets.append(f"{RESULTS}/models/toy_eval.json")
    targets.append(f"{bench_dir()}/summary.json")
    targets.append(f"{RESULTS}/report/PROJECTION.md")
    if frames_sweep_configs():
        targets.append(frames_summary())
    return targets + figure_targets()


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


def head_comparisons():
    """``<reference>__vs__<candidate>`` of each configured head comparison (evaluate.compare_heads)."""
    trained = set(trained_adapters())
    for i, pair in enumerate(config["evaluate"]["compare_heads"]):
        missing = sorted({pair["reference"], pair["candidate"]} - trained)
        if missing:
            raise ValueError(f"evaluate.compare_heads[{i}]: {missing} not trained (adapters / train.only)")
    return [f"{p['reference']}__vs__{p['candidate']}" for p in config["evaluate"]["compare_heads"]]


def evaluation_json():
    """The evaluate section without the pair lists: adding a pair re-evaluates no adapter."""
    section = {k: v for k, v in config["evaluate"].items() if k not in ("two_phase", "compare_heads")}
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


def report_file():
    return f"{RESULTS}/report/METRICS_COMPARISON.md"


REGISTERED = "|".join(re.escape(n) for n in config["adapters"]) or "^$"
log_adapter_settings()


# Stage 4: benchmark (benchmark.smk)


def bench_dir():
    """The benchmark's output directory. Rules pass output directories as params functions of the
    wildcards (the workflow assumes a shared filesystem, as SLURM clusters have)."""
    return f"{RESULTS}/bench"


def adapter_levels_json():
    """Each registered adapter's level and ``vlm_only`` (whether a decode head reads the drafter), the only
    adapter settings the projection reads: a hyperparameter edit reruns it only through the benchmark."""
    levels = {n: {"level": e["level"], "vlm_only": e.get("vlm_only", False)} for n, e in config["adapters"].items()}
    return json.dumps({"adapters": levels}, sort_keys=True)


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


# Figures (figures.smk): one rule per registered figure (eventspec.figures.FIGURES), one job per PNG.


class FigureRule(NamedTuple):
    """One figure's rule as data. Its output (with ``{name}`` when it makes one job per adapter or pair), its JSON
    inputs in the order the figure reads them, its report entry, and the outputs the pipeline builds."""

    output: str
    inputs: list
    category: str
    labels: dict
    subcategory: str | None
    targets: list


def figure_rule(output, inputs, category, labels, subcategory=None, names=None, wanted=True):
    """A FigureRule whose targets are ``output`` for each of ``names`` (``{name}``), or ``output`` itself when
    there are no names and it is ``wanted``."""
    targets = expand(output, name=names) if names is not None else ([output] if wanted else [])
    return FigureRule(output, inputs, category, labels, subcategory, targets)


def evaluation_figure(figure, *files, names=None):
    """A per-adapter evaluation figure reading ``files`` of ``results/eval/{name}/``, for ``names`` (default:
    every trained adapter)."""
    return figure_rule(
        f"{RESULTS}/figures/evaluation/{{name}}/{figure}.png",
        [evaluation_file("{name}", f) for f in files],
        "Evaluation",
        {"adapter": "{name}", "result": figure.replace("_", " ")},
        subcategory="{name}",
        names=trained_adapters() if names is None else names,
    )


def benchmark_figure(figure, source=None, result=None, wanted=True):
    """A benchmark figure at ``results/figures/<figure>.png``, from ``source`` (default: summary.json)."""
    return figure_rule(
        f"{RESULTS}/figures/{figure}.png",
        [source or f"{bench_dir()}/summary.json"],
        "Benchmark",
        {"result": result or figure.removeprefix("benchmark_")},
        wanted=wanted,
    )


FIGURE_RULES = {
    "training_curves": figure_rule(
        f"{RESULTS}/figures/adapters/{{name}}/training_curves.png",
        [adapter_file("{name}", "history.json")],
        "Training",
        {"adapter": "{name}", "result": "training curves"},
        names=trained_adapters(),
    ),
    "metrics_summary": evaluation_figure("metrics_summary", "acceptance_metrics.json", "position_stats.json"),
    "stage_timeline": evaluation_figure(
        "stage_timeline", "acceptance_metrics.json", names=trained_adapters() + two_phase_pairs()
    ),
    "token_metrics": evaluation_figure("token_metrics", "acceptance_metrics.json", "position_stats.json"),
    "adapter_comparison": figure_rule(
        f"{RESULTS}/figures/evaluation/adapter_comparison.png",
        all_metrics(),
        "Evaluation",
        {"adapter": "all", "result": "adapter comparison"},
        subcategory="All adapters",
    ),
    "benchmark_speedup": benchmark_figure("benchmark_speedup"),
    "benchmark_breakdown": benchmark_figure("benchmark_breakdown"),
    "benchmark_acceptance": benchmark_figure("benchmark_acceptance"),
    "benchmark_histogram": benchmark_figure("benchmark_histogram"),
    "benchmark_timeline": benchmark_figure("benchmark_timeline"),
    "benchmark_frames": benchmark_figure(
        "benchmark_frames", frames_summary(), "frames sweep", wanted=bool(frames_sweep_configs())
    ),
}
"""Figure name (as registered) -> its rule: figures.smk makes one rule of each."""

if set(FIGURE_RULES) != set(FIGURES):
    raise ValueError(
        f"figure rules {sorted(FIGURE_RULES)} and registered figures {sorted(FIGURES)} (eventspec.figures) differ"
    )


def figure_targets(category=None):
    """Every figure the pipeline builds, or those of one report category."""
    return [t for r in FIGURE_RULES.values() if category in (None, r.category) for t in r.targets]


def figure_params(figure):
    """A figure rule's params: the figure, the digest of its module and the renderer (restyling one figure
    reruns only its jobs), and ``tau`` for the figures that draw the cosine proxy (captions show it)."""
    params = {"name": figure, "code": code_digest(f"figures.{figure}", "figures.render")}
    if FIGURES[figure].tau:
        params["tau"] = config["evaluate"]["tau"]
    return params


def figure_command(figure):
    """``eventspec figure NAME``, with ``--tau`` for the figures that take it."""
    tau = " --tau {params.tau}" if FIGURES[figure].tau else ""
    return f"eventspec figure {{params.name}} --inputs {{input}} --out {{output}}{tau} 2> {{log}}"


def figure_log(figure, output):
    """``figure_<figure>[_<wildcard>...].log``: a log has its output's wildcards."""
    wildcards = "".join(f"_{{{w}}}" for w in re.findall(r"{(\w+)}", output))
    return f"{RESULTS}/logs/figure_{figure}{wildcards}.log"
