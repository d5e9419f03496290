"""Adapter levels' defaults, and the config layer that scales the registry (no torch: the Snakefile imports it).

A registry entry (config ``adapters.<name>``) gets, for every setting it
leaves out, its level's default at the config's scale:

- the toy world (``data.source: toy``): ``toy_adapters.<level>`` of the config
  (config.yaml scales every level to the toy's 64-dim hidden states);
- then, for any run, the seeds' training settings of the level
  (``SEED_TRAINING``); the seeds' 4096-dim hyperparameters (``DEFAULT_HPARAMS``)
  are filled in when the adapter is built.

So a real config (``data.source: dsec``) trains the seeds' adapters without
restating the registry, and the toy's scaling never reaches it.
"""

from __future__ import annotations

import copy

PREFILL_LEVELS = ("L1", "L2", "L3", "L4")
DECODE_LEVELS = ("L5", "L5F", "B1", "B1E")
LEVELS = PREFILL_LEVELS + DECODE_LEVELS

# The seeds' defaults per level (seeds/001 "Stage 2", seeds/003 "Arguments by Level"); a registry entry's
# hyperparams override them.
DEFAULT_HPARAMS = {
    "L1": {"bottleneck_dim": 256, "dropout": 0.1, "alpha": 0.1},
    "L2": {"bottleneck_dim": 256, "num_blocks": 3, "dropout": 0.1, "alpha": 0.1},
    "L3": {"bottleneck_dim": 1024, "num_blocks": 2, "dropout": 0.1, "alpha": 0.1},
    "L4": {"num_heads": 8, "num_layers": 1, "ffn_dim": 2048, "dropout": 0.1, "alpha": 0.1},
    "L5": {"num_heads": 8, "num_layers": 1, "ffn_dim": 2048, "dropout": 0.1, "max_positions": 512},
    "L5F": {"num_heads": 8, "num_layers": 1, "ffn_dim": 2048, "dropout": 0.1, "max_positions": 512},
    "B1": {"num_heads": 8, "num_layers": 1, "ffn_dim": 2048, "dropout": 0.1, "max_positions": 512},
    "B1E": {"num_heads": 8, "num_layers": 1, "ffn_dim": 2048, "dropout": 0.1, "max_positions": 512},
}

# The seeds' training runs per level: L1-L4 from seeds/003 ("Training Adapters": L3 batch 32 at 5e-4, L4 batch 16
# at 1e-4), the decode heads from seeds/001 (B1E, added here, trains as B1) ("Stage 2": L5 and L5F 100 epochs, B1 50, batch 64, the 1e-3 default).
# seeds/001's L4 production run used 300 epochs, batch 64, early_stopping 50: set them in its entry to repeat it.
SEED_TRAINING = {
    "L1": {"epochs": 50, "batch_size": 64, "learning_rate": 0.001},
    "L2": {"epochs": 50, "batch_size": 64, "learning_rate": 0.001},
    "L3": {"epochs": 50, "batch_size": 32, "learning_rate": 0.0005},
    "L4": {"epochs": 50, "batch_size": 16, "learning_rate": 0.0001},
    "L5": {"epochs": 100, "batch_size": 64, "learning_rate": 0.001},
    "L5F": {"epochs": 100, "batch_size": 64, "learning_rate": 0.001},
    "B1": {"epochs": 50, "batch_size": 64, "learning_rate": 0.001},
    "B1E": {"epochs": 50, "batch_size": 64, "learning_rate": 0.001},
}
TRAINING_KEYS = ("epochs", "batch_size", "learning_rate", "early_stopping")


def level_of_entry(entry) -> str | None:
    """The entry's level (L5 with ``vlm_only`` is B1), None for an entry the schema will refuse."""
    if not isinstance(entry, dict) or entry.get("level") not in LEVELS:
        return None
    return "B1" if entry.get("vlm_only") and entry["level"] == "L5" else entry["level"]


def is_toy(config: dict) -> bool:
    return (config.get("data") or {}).get("source", "toy") == "toy"


def fill_missing(target: dict, defaults: dict) -> None:
    """Copy into ``target`` every key of ``defaults`` it lacks, recursing into dicts both have."""
    for key, value in defaults.items():
        if key not in target:
            target[key] = copy.deepcopy(value)
        elif isinstance(value, dict) and isinstance(target[key], dict):
            fill_missing(target[key], value)


def scale_adapters(config: dict) -> dict:
    """Fill every registry entry in place: the toy's scale (toy world), then the seeds' training settings.

    Run before schema validation (the Snakefile, ``config.validate``); idempotent."""
    toy_scale = (config.get("toy_adapters") or {}) if is_toy(config) else {}
    for entry in (config.get("adapters") or {}).values():
        level = level_of_entry(entry)
        if level is not None:
            fill_missing(entry, toy_scale.get(level) or {})
            fill_missing(entry, SEED_TRAINING[level])
    return config


def describe(name: str, entry: dict, config: dict) -> str:
    """One line: the level, scale, hyperparameters (level defaults included) and training an entry gets."""
    level = level_of_entry(entry)
    scale = "toy_adapters" if is_toy(config) and level in (config.get("toy_adapters") or {}) else "the seeds'"
    hparams = DEFAULT_HPARAMS[level] | (entry.get("hyperparams") or {})
    training = ", ".join(f"{key} {entry[key]}" for key in TRAINING_KEYS if key in entry)
    return (f"adapters.{name}: {level} at {scale} scale, hyperparams "
            f"{', '.join(f'{k}={v}' for k, v in sorted(hparams.items()))}; {training}")
