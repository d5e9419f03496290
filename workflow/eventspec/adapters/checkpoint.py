"""Adapter files: ``config.json`` + ``best.safetensors`` (weights), ``last.safetensors`` (resume state).

``last.safetensors`` holds, besides the weights (``model.*``), the AdamW state
(``optim.<param>.<key>``), the torch RNG state (``rng.torch``) and, in its
metadata, the history so far, the early-stopping state and the identity of
the run (so a changed config never resumes an old run). Everything a resumed
run needs to continue exactly as the uninterrupted one would have.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from .architectures import build_adapter
from .errors import AdapterError

CONFIG = "config.json"
BEST = "best.safetensors"
LAST = "last.safetensors"


def weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The state dict as float32 CPU tensors (what the files hold, whatever the training device)."""
    return {k: v.detach().to("cpu", torch.float32).contiguous().clone() for k, v in model.state_dict().items()}


def save_weights(model: torch.nn.Module, path: Path, metadata: dict | None = None) -> None:
    _atomic_save(weights(model), path, metadata or {})


def _atomic_save(tensors: dict, path: Path, metadata: dict) -> None:
    """Write to a temporary name and rename: a kill mid-write never leaves a torn checkpoint."""
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata={k: str(v) for k, v in metadata.items()})
    tmp.replace(path)


def write_config(directory: Path, config: dict) -> None:
    (directory / CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def read_config(directory: str | Path) -> dict:
    path = Path(directory) / CONFIG
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as err:
        raise AdapterError(f"{path}: adapter config missing") from err
    except json.JSONDecodeError as err:
        raise AdapterError(f"{path}: not valid JSON ({err})") from err


def read_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Tensors and metadata of a safetensors file; AdapterError naming it when missing or corrupt."""
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
        return load_file(str(path)), metadata
    except FileNotFoundError as err:
        raise AdapterError(f"{path}: checkpoint missing") from err
    except (SafetensorError, OSError, ValueError) as err:
        raise AdapterError(f"{path}: corrupt checkpoint ({err})") from err


def build_from_config(config: dict) -> torch.nn.Module:
    return build_adapter(config["level"], config["drafter_dim"], config["verifier_dim"],
                         use_token_embedding=config["use_token_embedding"], **config["hyperparams"])


def load_into(model: torch.nn.Module, tensors: dict[str, torch.Tensor], path: Path) -> None:
    try:
        model.load_state_dict(tensors)
    except RuntimeError as err:
        raise AdapterError(f"{path}: weights do not fit the adapter of its config.json ({err})") from err


def load_adapter(directory: str | Path, device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """The trained adapter of ``directory`` (its config.json and best.safetensors) in eval mode, its float
    parameters and buffers in ``dtype`` on ``device`` (the engine passes its verifier's)."""
    directory = Path(directory)
    model = build_from_config(read_config(directory))
    tensors, _ = read_tensors(directory / BEST)
    load_into(model, tensors, directory / BEST)
    return model.to(device=device, dtype=dtype).eval()


def save_training_state(path: Path, model, optimizer, state: dict) -> None:
    """``last.safetensors``: weights, optimizer moments, RNG, and ``state`` (JSON) in the metadata."""
    tensors = {f"model.{k}": v for k, v in weights(model).items()}
    names = {id(p): n for n, p in model.named_parameters()}
    for group in optimizer.param_groups:
        for p in group["params"]:
            for key, value in optimizer.state.get(p, {}).items():
                tensors[f"optim.{names[id(p)]}.{key}"] = torch.as_tensor(value).detach().cpu().clone()
    tensors["rng.torch"] = torch.get_rng_state()
    device = next(model.parameters()).device
    if device.type == "cuda":  # dropout on the GPU draws from its own generator
        tensors["rng.cuda"] = torch.cuda.get_rng_state(device)
    _atomic_save(tensors, path, {"state": json.dumps(state)})


def restore_training_state(path: Path, model, optimizer, identity: str) -> dict | None:
    """Load ``last.safetensors`` into ``model`` and ``optimizer`` and set the RNG; return its JSON state.

    None (nothing loaded) when it was written by a run of another identity
    (config or data changed): that run is not continued.
    """
    tensors, metadata = read_tensors(path)
    if "state" not in metadata or "rng.torch" not in tensors:
        raise AdapterError(f"{path}: corrupt checkpoint (no training state)")
    state = json.loads(metadata["state"])
    if state.get("identity") != identity:
        return None
    load_into(model, {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}, path)
    params = dict(model.named_parameters())
    for key, value in tensors.items():
        if key.startswith("optim."):
            name, _, field = key[len("optim."):].rpartition(".")
            if name not in params:
                raise AdapterError(f"{path}: corrupt checkpoint (optimizer state of unknown parameter {name})")
            param = params[name]
            optimizer.state[param][field] = value if field == "step" else value.to(param.device)  # AdamW: step on CPU
    torch.set_rng_state(tensors["rng.torch"])
    device = next(model.parameters()).device
    if "rng.cuda" in tensors and device.type == "cuda":
        torch.cuda.set_rng_state(tensors["rng.cuda"], device)
    return state
