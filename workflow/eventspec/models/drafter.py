"""The drafter: EventGPT reading a window's event images, or any HF Llava model reading one event image."""

from __future__ import annotations

import numpy as np
import torch
from transformers import LlavaForConditionalGeneration
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

from ..event_images import WHITE
from .backend import Backend
from .eventgpt import (
    MODEL_TYPE,
    event_image_processor,
    event_pixel_values,
    event_prompt_ids,
    load_eventgpt,
    num_event_tokens,
    prepare_tokenizer,
)
from .loading import ModelLoadError, load_model, load_tokenizer, locate_checkpoint, read_model_config, torch_dtype

LLAVA_PROMPT = "USER: <image>\n{question} ASSISTANT:"
IMAGE_TOKEN = "<image>"


class DrafterBackend(Backend):
    """EventGPT: all event chunks of the window, spatio-temporally aggregated.

    ``event_processor`` is its CLIP tower's image processor (default: ``event_image_processor(model.config)``).
    """

    def __init__(self, model, tokenizer, device="cpu", event_processor=None):
        super().__init__(model, tokenizer, device)
        self.event_processor = event_processor or event_image_processor(model.config)

    @property
    def num_visual_tokens(self) -> int:
        return num_event_tokens(self.model.config)

    def prompt_ids(self, question: str) -> list[int]:
        return event_prompt_ids(question, self.model.config, self.tokenizer)

    def visual_inputs(self, event_images: np.ndarray) -> dict[str, torch.Tensor]:
        return {"event_pixel_values": event_pixel_values(event_images, self.model.config, self.event_processor)}

    def _visual_dtype(self) -> torch.dtype:
        """Pixels go straight to the tower's dtype (bfloat16 as EventGPT's ``process_event_data`` casts them)."""
        return self.model.model.vision_dtype



def overlay_event_chunks(event_images: np.ndarray) -> np.ndarray:
    """[B, C, H, W, 3] chunk renders -> [B, H, W, 3]: each pixel takes its latest chunk's colour."""
    out = event_images[:, 0].copy()
    for c in range(1, event_images.shape[1]):
        chunk = event_images[:, c]
        hit = (chunk != WHITE).any(-1, keepdims=True)
        out = np.where(hit, chunk, out)
    return out


class LlavaDrafterBackend(Backend):
    """A transformers Llava model as drafter: one image holding all the window's events."""

    def __init__(self, model, tokenizer, image_processor, device="cpu"):
        super().__init__(model, tokenizer, device)
        self.image_processor = image_processor

    @property
    def num_visual_tokens(self) -> int:
        return self.model.config.image_seq_length

    def prompt(self, question: str) -> str:
        return LLAVA_PROMPT.format(question=question).replace(IMAGE_TOKEN, IMAGE_TOKEN * self.num_visual_tokens)

    def visual_inputs(self, event_images: np.ndarray) -> dict[str, torch.Tensor]:
        images = list(overlay_event_chunks(event_images))
        return {"pixel_values": self.image_processor(images=images, return_tensors="pt")["pixel_values"]}


def load_eventgpt_drafter(path, config: dict, tokenizer, dtype: str, quant: str, device,
                          vision_dtype: str = "bfloat16") -> DrafterBackend:
    """EventGPT as its inference sets it up: tokens added to the tokenizer, embeddings resized to it, the tower's
    own image processor, tower and projector in ``vision_dtype``."""
    model = load_eventgpt(path, torch_dtype(dtype), device, quant, torch_dtype(vision_dtype))
    model.resize_token_embeddings(prepare_tokenizer(tokenizer, config))
    return DrafterBackend(model, tokenizer, device, event_image_processor(model.config, path, path.parent))


def load_drafter(path, dtype: str = "float32", quant: str = "none", device: str = "cpu", name: str = "drafter",
                 vision_dtype: str = "bfloat16") -> Backend:
    """An EventGPT checkpoint (model_type EventChat_llama) or an HF Llava one, by its config; ``vision_dtype``
    (``models.drafter.vision_dtype``) applies to EventGPT.

    ``path`` is a directory or a hub id in the local cache; errors name ``models.<name>.*`` or the path.
    """
    path, device = locate_checkpoint(path, device, name)
    config = read_model_config(path, (MODEL_TYPE, "llava"))
    tokenizer = load_tokenizer(path)
    if config["model_type"] == MODEL_TYPE:
        return load_eventgpt_drafter(path, config, tokenizer, dtype, quant, device, vision_dtype)
    model = load_model(LlavaForConditionalGeneration, path, dtype, quant, device)
    try:
        processor = CLIPImageProcessorPil.from_pretrained(path, local_files_only=True)
    except OSError as err:
        raise ModelLoadError(f"{path}: image processor missing ({err})") from err
    return LlavaDrafterBackend(model, tokenizer, processor, device)
