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


def config_json(*sections):
    """The named config sections as JSON: a rule's params slice and its CLI input."""
    return json.dumps({s: config[s] for s in sections}, sort_keys=True)


def model_json(name):
    """One model's config slice (``models.<name>``) as JSON, for rules that run only that model."""
    return json.dumps({"models": {name: config["models"][name]}}, sort_keys=True)


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


def all_targets():
    targets = [feature_digest(s) for s in SPLITS] + [f"{RESULTS}/models/verifier_lm_head.safetensors"]
    if config["data"]["source"] == "toy":
        targets.append(f"{RESULTS}/models/toy_eval.json")
    targets.append(f"{RESULTS}/bench/summary.json")
    return targets
