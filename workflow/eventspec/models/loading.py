"""Loading checkpoints with a dtype, an optional bitsandbytes quantisation and a device.

Every failure names the path and what was expected: a missing directory, a
config of another architecture, missing or unexpected weights, or a
quantisation mode the platform cannot run.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import BitsAndBytesConfig

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
QUANT_MODES = ("none", "4bit", "8bit")
KEEP_UNQUANTIZED = ["lm_head"] + [
    rf".*{module}" for module in ("video_tower", "image_tower", "multi_modal_projector", "visual_tower", "visual_projector", "feature_adaptor")
]
"""Only the LLM is quantised: vision towers, projectors and the LM head (which drafting and
the offline metrics read directly) keep the compute dtype."""


class ModelLoadError(ValueError):
    """A checkpoint that cannot be loaded as asked; the message names the path."""


def read_model_config(path: str | Path, expected_model_types: tuple[str, ...]) -> dict:
    """``config.json`` of a local checkpoint directory, checked for its ``model_type``."""
    path = Path(path)
    config_file = path / "config.json"
    if not path.is_dir():
        raise ModelLoadError(f"{path}: model directory missing (expected a local {'/'.join(expected_model_types)} checkpoint)")
    if not config_file.is_file():
        raise ModelLoadError(f"{path}: no config.json (expected a {'/'.join(expected_model_types)} checkpoint)")
    config = json.loads(config_file.read_text())
    model_type = config.get("model_type")
    if model_type not in expected_model_types:
        raise ModelLoadError(
            f"{path}: checkpoint of architecture {model_type!r}, expected {' or '.join(map(repr, expected_model_types))}"
        )
    return config


def quantization_config(quant: str, compute_dtype: torch.dtype) -> BitsAndBytesConfig | None:
    if quant not in QUANT_MODES:
        raise ModelLoadError(f"quant: unknown mode {quant!r}, expected one of {', '.join(QUANT_MODES)}")
    if quant == "none":
        return None
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as err:
        raise ModelLoadError(f"quant {quant!r} needs bitsandbytes, which does not import here ({err})") from err
    if quant == "4bit":
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=compute_dtype,
            llm_int8_skip_modules=KEEP_UNQUANTIZED,
        )
    return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=KEEP_UNQUANTIZED)


def torch_dtype(name: str) -> torch.dtype:
    if name not in DTYPES:
        raise ModelLoadError(f"dtype: unknown {name!r}, expected one of {', '.join(DTYPES)}")
    return DTYPES[name]


def load_model(model_class, path: str | Path, dtype: str, quant: str, device: str, **kwargs):
    """``model_class.from_pretrained(path)`` with strict weight checks; raise ModelLoadError naming the path."""
    compute_dtype = torch_dtype(dtype)
    bnb = quantization_config(quant, compute_dtype)
    extra = {"quantization_config": bnb, "device_map": {"": device}} if bnb else {}
    try:
        model, info = model_class.from_pretrained(
            path, dtype=compute_dtype, output_loading_info=True, local_files_only=True, **extra, **kwargs
        )
    except (OSError, RuntimeError, ValueError) as err:
        raise ModelLoadError(f"{path}: cannot load as {model_class.__name__} ({err})") from err
    problems = {k: v for k, v in info.items() if k in ("missing_keys", "unexpected_keys", "mismatched_keys") and v}
    if problems:
        detail = "; ".join(f"{k}: {sorted(map(str, v))[:8]}" for k, v in problems.items())
        raise ModelLoadError(f"{path}: weights do not match {model_class.__name__} ({detail})")
    if not bnb:
        model = model.to(device)
    return model.eval()
