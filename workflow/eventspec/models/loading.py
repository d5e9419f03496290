"""Loading checkpoints with a dtype, an optional bitsandbytes quantisation and a device.

Every failure names the path (or the config key) and what was expected: a
missing directory, a hub id not in the local Hugging Face cache, a device this
machine does not have, a config of another architecture, a missing tokenizer,
missing or unexpected weights (the LM head included), or a quantisation mode
the platform cannot run. The cheap checks (device, path, config, tokenizer)
run before any weights are read.

Every model loads straight onto its device (``device_map``), never on the CPU
first: transformers v5 always loads onto the meta device and materialises each
tensor where ``device_map`` puts it (its old ``low_cpu_mem_usage`` flag is gone
because that is now the only behaviour).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from huggingface_hub import snapshot_download
from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError
from huggingface_hub.utils import validate_repo_id
from transformers import AutoTokenizer, BitsAndBytesConfig, LlamaTokenizer

from ..devices import ModelLoadError, check_device  # noqa: F401 (both re-exported: their home has no transformers)

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
QUANT_MODES = ("none", "4bit", "8bit")
KEEP_UNQUANTIZED = ["lm_head"] + [
    rf".*{module}" for module in ("video_tower", "image_tower", "multi_modal_projector", "visual_tower", "visual_projector", "feature_adaptor")
]
"""Only the LLM is quantised: vision towers, projectors and the LM head (which drafting and
the offline metrics read directly) keep the compute dtype."""


TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json")


def looks_like_repo_id(text: str) -> bool:
    """``org/name`` as the hub spells ids (not an absolute, relative or home path)."""
    if text.startswith((".", "/", "~")) or text.count("/") != 1:
        return False
    try:
        validate_repo_id(text)
    except HFValidationError:
        return False
    return True


def resolve_checkpoint(path_or_id: str | Path, key: str = "models.<name>.path") -> Path:
    """The local directory of a checkpoint given as a directory or a hub id (``LanguageBind/Video-LLaVA-7B-hf``).

    A hub id resolves to its snapshot in the Hugging Face cache (``HF_HUB_CACHE``, or ``HF_HOME``/hub), the
    revision ``refs/main`` names, as transformers resolves it; nothing is downloaded. An existing directory is
    returned as is; any other path is returned unchanged, for ``read_model_config`` to report as missing.
    """
    text = str(path_or_id)
    path = Path(text).expanduser()
    if path.is_dir() or not looks_like_repo_id(text):
        return path
    try:
        return Path(snapshot_download(text, local_files_only=True))
    except (LocalEntryNotFoundError, OSError) as err:
        from huggingface_hub import constants

        raise ModelLoadError(
            f"{key}: {text!r} is neither a local directory nor a hub id in the Hugging Face cache "
            f"{constants.HF_HUB_CACHE} (no network is used: download it first, e.g. `hf download {text}`, "
            f"or point HF_HUB_CACHE / HF_HOME at a cache that has it)"
        ) from err


SLOW_LLAMA_DEFAULTS = {"add_bos_token": True, "add_eos_token": False, "legacy": True}
"""The slow (sentencepiece) ``LlamaTokenizer``'s defaults where a checkpoint's tokenizer_config.json is silent."""


def load_tokenizer(path: str | Path):
    """The checkpoint's own tokenizer, left-padding, as saved (its pad token, or none, is left as it is).

    A checkpoint that ships only a sentencepiece ``tokenizer.model`` (no tokenizer.json) gets ``LlamaTokenizer``
    read from it with the slow tokenizer's defaults (BOS added, legacy spacing after special tokens), giving the ids
    of the slow tokenizer EventGPT's inference loads (``use_fast=False``; tests/test_official_goldens.py); this
    needs ``sentencepiece`` and ``protobuf`` (pinned)."""
    path = Path(path)
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise ModelLoadError(f"{path}: no tokenizer (expected one of {', '.join(TOKENIZER_FILES)})")
    try:
        if (path / "tokenizer.model").is_file() and not (path / "tokenizer.json").is_file():
            config_file = path / "tokenizer_config.json"
            config = json.loads(config_file.read_text()) if config_file.is_file() else {}
            defaults = {key: value for key, value in SLOW_LLAMA_DEFAULTS.items() if key not in config}
            return LlamaTokenizer.from_pretrained(path, padding_side="left", local_files_only=True, **defaults)
        return AutoTokenizer.from_pretrained(path, padding_side="left", local_files_only=True)
    except (OSError, ValueError, ImportError) as err:  # ImportError: sentencepiece / protobuf missing
        raise ModelLoadError(f"{path}: tokenizer does not load ({err})") from err


def shared_vocab_size(a, b) -> int:
    """Ids both tokenizers' base vocabularies hold (added tokens, like Video-LLaVA's ``<image>``, excluded)."""
    return min(a.vocab_size, b.vocab_size)


def check_shared_vocabulary(verifier_tokenizer, drafter_tokenizer, verifier_path, drafter_path) -> int:
    """Refuse a pair whose tokenizers give the ids they share different pieces; return how many they share.

    The drafter drafts token ids for the verifier and reads the verifier's tokens, so an id must mean the same
    piece to both (Vicuna's 32000 ids for Video-LLaVA-7B-hf and EventGPT-7B) and both must stop at the same EOS.
    """
    n = shared_vocab_size(verifier_tokenizer, drafter_tokenizer)
    ours = verifier_tokenizer.convert_ids_to_tokens(list(range(n)))
    theirs = drafter_tokenizer.convert_ids_to_tokens(list(range(n)))
    differ = [i for i in range(n) if ours[i] != theirs[i]]
    if differ or verifier_tokenizer.eos_token_id != drafter_tokenizer.eos_token_id:
        i = differ[0] if differ else verifier_tokenizer.eos_token_id
        raise ModelLoadError(
            f"tokenizers of the verifier ({verifier_path}) and the drafter ({drafter_path}) disagree: "
            f"{len(differ)} of the {n} ids both have differ, e.g. id {i}: {ours[i]!r} vs {theirs[i]!r}; EOS "
            f"{verifier_tokenizer.eos_token_id} vs {drafter_tokenizer.eos_token_id}. The drafter must share the "
            "verifier's vocabulary"
        )
    return n


def locate_checkpoint(path_or_id: str | Path, device: str, name: str) -> tuple[Path, torch.device]:
    """The checks before any model work: ``models.<name>.device`` exists here, ``models.<name>.path`` resolves."""
    dev = check_device(device, f"models.{name}.device")
    return resolve_checkpoint(path_or_id, f"models.{name}.path"), dev


def device_placement(device: str | torch.device) -> dict:
    """``from_pretrained`` arguments that put every weight straight on ``device``."""
    return {"device_map": {"": str(device)}}


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
    extra = {"quantization_config": bnb} if bnb else {}
    try:
        model, info = model_class.from_pretrained(
            path,
            dtype=compute_dtype,
            output_loading_info=True,
            local_files_only=True,
            **device_placement(device),
            **extra,
            **kwargs,
        )
    except (OSError, RuntimeError, ValueError) as err:
        raise ModelLoadError(f"{path}: cannot load as {model_class.__name__} ({err})") from err
    problems = {k: v for k, v in info.items() if k in ("missing_keys", "unexpected_keys", "mismatched_keys") and v}
    if problems:
        detail = "; ".join(f"{k}: {sorted(map(str, v))[:8]}" for k, v in problems.items())
        raise ModelLoadError(f"{path}: weights do not match {model_class.__name__} ({detail})")
    return model.eval()
