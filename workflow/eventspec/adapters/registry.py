"""Registry entries (config.yaml ``adapters:``) resolved into one adapter's full configuration.

An entry names a level, its training input and hyperparameters; what it
resolves to is written as the adapter's ``config.json``, which is all
``load_adapter`` needs.
"""

from __future__ import annotations

from .architectures import DECODE_LEVELS, LEVELS, resolve_hparams
from .errors import AdapterError


def registry_entry(cfg: dict, name: str) -> dict:
    adapters = cfg.get("adapters") or {}
    if name not in adapters:
        raise AdapterError(f"adapters.{name}: no such registry entry (known: {', '.join(sorted(adapters)) or 'none'})")
    return adapters[name]


def level_of(name: str, entry: dict) -> str:
    """The entry's level; L5 with ``vlm_only`` is B1 (the seeds' ``--adapter_level 5 --vlm_only``)."""
    level = entry["level"]
    if level not in LEVELS:
        raise AdapterError(f"adapters.{name}.level: unknown level '{level}' (known: {', '.join(LEVELS)})")
    if entry.get("vlm_only"):
        if level not in ("L5", "B1"):
            raise AdapterError(f"adapters.{name}.vlm_only: only L5/B1 read the verifier alone, not {level}")
        return "B1"
    return level


def resolve(name: str, entry: dict, drafter_dim: int, verifier_dim: int) -> dict:
    """``config.json`` of the adapter ``name``: level, dims, hyperparams, training input and loss weights."""
    level = level_of(name, entry)
    if level in DECODE_LEVELS and entry["input"] != "teacher_forced":
        raise AdapterError(f"adapters.{name}.input: decode heads train on teacher_forced features "
                           "(the drafter must have read the verifier's text), not '{entry['input']}'")
    if entry["use_token_embedding"] and level not in DECODE_LEVELS:
        raise AdapterError(f"adapters.{name}.use_token_embedding: only decode heads ({', '.join(DECODE_LEVELS)}) "
                           "read the chosen token's embedding")
    try:
        hparams = resolve_hparams(level, dict(entry.get("hyperparams") or {}))
    except AdapterError as err:
        raise AdapterError(f"adapters.{name}.hyperparams: {err}") from err
    return {
        "name": name,
        "level": level,
        "kind": "decode" if level in DECODE_LEVELS else "prefill",
        "drafter_dim": drafter_dim,
        "verifier_dim": verifier_dim,
        "input": entry["input"],
        "vlm_only": level == "B1",
        "use_token_embedding": bool(entry["use_token_embedding"]),
        "ce_weight": entry["ce_weight"],
        "align_weight": entry["align_weight"] if level in ("L5", "L5F") else 0.0,
        "hyperparams": hparams,
        "epochs": entry["epochs"],
        "batch_size": entry["batch_size"],
        "learning_rate": entry["learning_rate"],
        "early_stopping": entry["early_stopping"],
    }
