"""The verifier: Video-LLaVA (transformers ``VideoLlavaForConditionalGeneration``) reading RGB frames.

Frames are preprocessed with ``VideoLlavaImageProcessor`` (the PIL/numpy
processor: the video processor needs torchvision, which has no CPU build
here) and the ``<video>`` placeholder is expanded to one token per visual
feature, (patches + CLS) x frames, as Video-LLaVA's own processor does.
"""

from __future__ import annotations

import numpy as np
import torch
from transformers import VideoLlavaForConditionalGeneration, VideoLlavaImageProcessor

from .backend import Backend
from .loading import ModelLoadError, load_model, load_tokenizer, locate_checkpoint, read_model_config

PROMPT = "USER: <video>\n{question} ASSISTANT:"
VIDEO_TOKEN = "<video>"


def visual_tokens_per_frame(vision_config) -> int:
    return (vision_config.image_size // vision_config.patch_size) ** 2 + 1


class VerifierBackend(Backend):
    def __init__(self, model, tokenizer, image_processor, device="cpu"):
        super().__init__(model, tokenizer, device)
        self.image_processor = image_processor

    @property
    def num_visual_tokens(self) -> int:
        """Visual tokens of one clip: Video-LLaVA's ``video_seq_length`` (8 frames x 257 for the 7B)."""
        return self.model.config.video_seq_length

    @property
    def frames_per_clip(self) -> int:
        return self.num_visual_tokens // visual_tokens_per_frame(self.model.config.vision_config)

    def prompt(self, question: str) -> str:
        return PROMPT.format(question=question).replace(VIDEO_TOKEN, VIDEO_TOKEN * self.num_visual_tokens)

    @property
    def video_token_id(self) -> int:
        """Id of the ``<video>`` placeholder in prompts (one per visual token), which is never text."""
        return self.model.config.video_token_index

    def visual_inputs(self, frames: np.ndarray) -> dict[str, torch.Tensor]:
        """``pixel_values_videos`` [B, F, 3, S, S] from frames [B, F, H, W, 3] uint8."""
        b, f = frames.shape[:2]
        per_frame = visual_tokens_per_frame(self.model.config.vision_config)
        if f * per_frame != self.num_visual_tokens:
            raise ValueError(f"verifier expects {self.num_visual_tokens // per_frame} frames per clip, got {f}")
        pixels = self.image_processor(
            images=list(frames.reshape(b * f, *frames.shape[2:])), return_tensors="pt", return_legacy_image_output=False
        )["pixel_values"]
        return {"pixel_values_videos": pixels.reshape(b, f, *pixels.shape[1:])}


def load_verifier(
    path, dtype: str = "float32", quant: str = "none", device: str = "cpu", name: str = "verifier",
    num_frames: int | None = None,
) -> VerifierBackend:
    """A Video-LLaVA checkpoint: a directory or a hub id in the local cache; errors name ``models.<name>.*`` or the path.

    ``num_frames`` (default: the checkpoint's ``video_seq_length``) sets how many frames a clip has: the video
    tower encodes each frame on its own, so only the prompt's placeholder count depends on it.
    """
    path, device = locate_checkpoint(path, device, name)
    read_model_config(path, ("video_llava",))
    tokenizer = load_tokenizer(path)
    try:
        image_processor = VideoLlavaImageProcessor.from_pretrained(path, local_files_only=True)
    except OSError as err:
        raise ModelLoadError(f"{path}: image processor missing ({err})") from err
    model = load_model(VideoLlavaForConditionalGeneration, path, dtype, quant, device)
    if num_frames is not None:
        model.config.video_seq_length = num_frames * visual_tokens_per_frame(model.config.vision_config)
    return VerifierBackend(model, tokenizer, image_processor, device)
