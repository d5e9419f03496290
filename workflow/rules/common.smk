import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "workflow"))
from eventspec.codedigest import code_digest

RESULTS = config["results"]
SPLITS = ["train", "test"]


wildcard_constraints:
    split="|".join(SPLITS),
    shard=r"\d+",
    name=r"[A-Za-z0-9_.-]+",


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
    targets += [figure_path(name) for name in BENCH_FIGURES]  # figures.smk
    return targets
