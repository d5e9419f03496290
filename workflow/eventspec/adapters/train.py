"""Training one registered adapter by streaming the feature store, resumable after a kill.

AdamW (weight decay 0.01), cosine learning rate from ``learning_rate`` to 1e-6
over ``epochs`` (set per epoch, the closed form of CosineAnnealingLR), grad
clip 1.0, early stopping on the held-out (test store) loss, on ``train.device`` (the adapter, its batches,
the verifier LM head and token embedding it reads; float32). Everything is
seeded: the model init by ``train.seed``, the batch order of epoch e by
(seed, e), dropout by the torch RNG, whose state is checkpointed. Work
happens in ``<out>.partial/`` (Snakemake deletes declared outputs of a failed
job, not that); ``last.safetensors`` there is rewritten after every epoch, and
a rerun with ``resume`` continues from it, ending with the history an
uninterrupted run has. The finished files are moved into ``<out>/``.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file
from tqdm import tqdm

from ..devices import check_device
from ..features import FeatureStore
from .checkpoint import (
    BEST, CONFIG, LAST, build_from_config, restore_training_state, save_training_state, save_weights, write_config,
)
from .errors import AdapterError
from .examples import example, load_verifier_embedding, run
from .objective import Scores, total_loss
from .registry import resolve

MIN_LR = 1e-6
WEIGHT_DECAY = 0.01
CLIP_NORM = 1.0
HISTORY = "history.json"
OUTPUTS = (BEST, LAST, CONFIG, HISTORY)


def lr_at(epoch: int, epochs: int, base: float) -> float:
    return MIN_LR + (base - MIN_LR) * (1 + math.cos(math.pi * epoch / epochs)) / 2


def load_lm_head(path: str | Path, verifier_dim: int) -> torch.Tensor:
    try:
        weight = load_file(str(path))["weight"].to(torch.float32)
    except (OSError, KeyError, ValueError) as err:
        raise AdapterError(f"{path}: cannot read the verifier LM head 'weight' ({err})") from err
    if weight.shape[1] != verifier_dim:
        raise AdapterError(f"{path}: LM head dim {weight.shape[1]} != the feature store's verifier dim {verifier_dim}")
    return weight


def open_stores(train: str | Path, test: str | Path) -> tuple[FeatureStore, FeatureStore]:
    """Both stores, refused unless their hidden dims agree."""
    stores = FeatureStore(train), FeatureStore(test)
    dims = [(s.drafter_dim, s.verifier_dim) for s in stores]
    if dims[0] != dims[1]:
        raise AdapterError(f"{test}: hidden dims (drafter, verifier) {dims[1]} differ from {train}'s {dims[0]}")
    return stores


def run_identity(config: dict, train_cfg: dict, stores) -> str:
    """What a resumable run depends on: the adapter config, the train section, the stores' sizes."""
    key = {"adapter": config, "train": train_cfg, "stores": [[str(s.path), s.n] for s in stores]}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def evaluate(model, store: FeatureStore, config: dict, lm_head, embedding, train_cfg: dict) -> dict:
    scores = Scores()
    model.eval()
    with torch.no_grad():
        for batch in batches(store, config, train_cfg, train_cfg["eval_batch_size"], shuffle=False, seed=0):
            ex = example(batch, model, embedding)
            scores.add(run(model, ex), ex, lm_head, config["ce_weight"], config["align_weight"])
    return scores.summary()


def batches(store: FeatureStore, config: dict, train_cfg: dict, batch_size: int, shuffle: bool, seed: int):
    return store.batches(
        batch_size, teacher_forced=config["input"] == "teacher_forced", shuffle=shuffle, seed=seed,
        block_bytes=train_cfg["block_mb"] * 2**20, buffer_bytes=train_cfg["shuffle_buffer_mb"] * 2**20,
        with_drafter=not config["vlm_only"],
    )


def fresh_model(config: dict, train_cfg: dict, device: torch.device = torch.device("cpu")):
    """The seeded, untrained adapter on ``device`` (initialised on the CPU: the same on every device) and its AdamW
    optimizer."""
    torch.manual_seed(train_cfg["seed"])
    model = build_from_config(config).to(device)
    return model, torch.optim.AdamW(model.parameters(), lr=config["learning_rate"], weight_decay=WEIGHT_DECAY)


def train_epoch(model, optimizer, store, config, lm_head, embedding, train_cfg, epoch, progress) -> dict:
    model.train()
    total, count = 0.0, 0
    seed = train_cfg["seed"] * 100_003 + epoch
    for batch in batches(store, config, train_cfg, config["batch_size"], shuffle=True, seed=seed):
        ex = example(batch, model, embedding)
        loss = total_loss(run(model, ex), ex, lm_head, config["ce_weight"], config["align_weight"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP_NORM)
        optimizer.step()
        value = loss.item()
        total += value * len(batch)
        count += len(batch)
        progress.set_postfix(epoch=epoch + 1, loss=f"{value:.4f}", refresh=False)
        progress.update(1)
    return {"train_loss": total / max(count, 1)}


def train_adapter(
    name: str,
    entry: dict,
    train_cfg: dict,
    train_store: str | Path,
    test_store: str | Path,
    lm_head_path: str | Path,
    out: str | Path,
    verifier_path: str | Path | None = None,
    resume: bool = True,
    on_epoch_end: Callable[[int], None] | None = None,
) -> dict:
    """Train the registry entry ``name``; write best/last safetensors, config.json, history.json into ``out``."""
    out = Path(out)
    work = out.with_name(out.name + ".partial")
    train, test = open_stores(train_store, test_store)
    config = resolve(name, entry, train.drafter_dim, train.verifier_dim)
    device = check_device(train_cfg["device"], "train.device")
    lm_head = load_lm_head(lm_head_path, train.verifier_dim).to(device)
    embedding = None
    if config["use_token_embedding"]:
        if verifier_path is None:
            raise AdapterError(f"adapters.{name}.use_token_embedding: needs the verifier model (models.verifier.path)")
        embedding = load_verifier_embedding(verifier_path).to(device)
    model, optimizer = fresh_model(config, train_cfg, device)
    identity = run_identity(config, train_cfg, (train, test))
    state = {"identity": identity, "epoch": 0, "history": [], "best_loss": None, "bad_epochs": 0, "seconds": 0.0}
    if resume and (work / LAST).exists():
        state = restore_training_state(work / LAST, model, optimizer, identity) or state
    if state["epoch"] == 0 and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    write_config(work, config)
    steps = math.ceil(train.n / config["batch_size"])
    progress = tqdm(total=steps * config["epochs"], initial=steps * state["epoch"], desc=f"train {name}",
                    file=sys.stderr, mininterval=5, ascii=True)
    while state["epoch"] < config["epochs"] and state["bad_epochs"] < config["early_stopping"]:
        epoch = state["epoch"]
        started = time.perf_counter()
        lr = lr_at(epoch, config["epochs"], config["learning_rate"])
        for group in optimizer.param_groups:
            group["lr"] = lr
        record = {"epoch": epoch + 1, "lr": lr}
        record |= train_epoch(model, optimizer, train, config, lm_head, embedding, train_cfg, epoch, progress)
        record |= evaluate(model, test, config, lm_head, embedding, train_cfg)
        state["history"].append(record)
        if state["best_loss"] is None or record["val_loss"] < state["best_loss"]:
            state["best_loss"], state["bad_epochs"] = record["val_loss"], 0
            save_weights(model, work / BEST, {"epoch": epoch + 1})
        else:
            state["bad_epochs"] += 1
        state["epoch"] = epoch + 1
        state["seconds"] += time.perf_counter() - started
        save_training_state(work / LAST, model, optimizer, state)
        write_history(work, config, state)
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1)
    progress.close()
    history = write_history(work, config, state)
    out.mkdir(parents=True, exist_ok=True)
    for name_ in OUTPUTS:
        (work / name_).replace(out / name_)
    shutil.rmtree(work)
    return history


def write_history(directory: Path, config: dict, state: dict) -> dict:
    """``history.json``: per-epoch metrics and the best epoch (the schema is xsd/adapter_history.schema.json)."""
    epochs = state["history"]
    best = min(epochs, key=lambda r: r["val_loss"]) if epochs else None
    history = {
        "adapter": config["name"],
        "level": config["level"],
        "epochs": epochs,
        "best_epoch": best["epoch"] if best else None,
        "stopped_early": state["bad_epochs"] >= config["early_stopping"] and state["epoch"] < config["epochs"],
        "train_seconds": round(state["seconds"], 3),
    }
    (directory / HISTORY).write_text(json.dumps(history, indent=2) + "\n")
    return history
