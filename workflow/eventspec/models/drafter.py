"""The drafter: EventGPT reading a window's event images, or any HF Llava model reading one event image."""

from __future__ import annotations

import numpy as np
import torch
from transformers import AutoTokenizer, LlavaForConditionalGeneration
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

from .backend import Backend
from .eventgpt import MODEL_TYPE, build_prompt, event_pixel_values, load_eventgpt, num_event_tokens
from .loading import ModelLoadError, load_model, read_model_config, torch_dtype

LLAVA_PROMPT = "USER: <image>\n{question} ASSISTANT:"
IMAGE_TOKEN = "<image>"
WHITE = 255


class DrafterBackend(Backend):
    """EventGPT: all event chunks of the window, spatio-temporally aggregated."""

    @property
    def num_visual_tokens(self) -> int:
        return num_event_tokens(self.model.config)

    def prompt(self, question: str) -> str:
        return build_prompt(question, self.model.config)

    def visual_inputs(self, event_images: np.ndarray) -> dict[str, torch.Tensor]:
        return {"event_pixel_values": event_pixel_values(event_images, self.model.config)}



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


def load_drafter(path, dtype: str = "float32", quant: str = "none", device: str = "cpu") -> Backend:
    """An EventGPT checkpoint (model_type EventChat_llama) or an HF Llava one, by its config."""
    config = read_model_config(path, (MODEL_TYPE, "llava"))
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, padding_side="left", local_files_only=True)
    except OSError as err:
        raise ModelLoadError(f"{path}: tokenizer missing ({err})") from err
    if config["model_type"] == MODEL_TYPE:
        return DrafterBackend(load_eventgpt(path, torch_dtype(dtype), device, quant), tokenizer, device)
    model = load_model(LlavaForConditionalGeneration, path, dtype, quant, device)
    try:
        processor = CLIPImageProcessorPil.from_pretrained(path, local_files_only=True)
    except OSError as err:
        raise ModelLoadError(f"{path}: image processor missing ({err})") from err
    return LlavaDrafterBackend(model, tokenizer, processor, device)
