"""What the toy trainer needs to reach inside each model: its vision tower, its visual tokens, its patches.

The real backends expose only what decoding needs; supervising visual tokens
per patch is the toy trainer's business, so the trainer adapts each model here.
"""

from __future__ import annotations

import torch

from ..models.backend import Backend
from ..models.verifier import VerifierBackend


class VideoLlavaParts:
    """Video-LLaVA: per frame, one CLS token then the patch tokens, frames in order."""

    per_frame = True

    def __init__(self, backend: Backend):
        self.model = backend.model

    @property
    def grid(self) -> int:
        vision = self.model.config.vision_config
        return vision.image_size // vision.patch_size

    @property
    def vision_tower(self) -> torch.nn.Module:
        return self.model.model.video_tower

    @property
    def visual_token_id(self) -> int:
        return self.model.config.video_token_index

    def visual_tokens(self, visual: dict[str, torch.Tensor]) -> torch.Tensor:
        """[B, F x tokens per frame, D] in the LLM's space (what replaces the video placeholders)."""
        pixels = visual["pixel_values_videos"]
        features = self.model.model.get_video_features(pixel_values_videos=pixels).pooler_output
        return features.reshape(pixels.shape[0], -1, features.shape[-1])

    def patch_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Visual tokens [B, F x (1 + grid^2), D] -> the patch tokens of each frame [B, F, grid, grid, D]."""
        per_frame = tokens.unflatten(1, (-1, self.grid * self.grid + 1))[:, :, 1:]
        return per_frame.unflatten(2, (self.grid, self.grid))


class EventGPTParts(VideoLlavaParts):
    """EventGPT: one temporal token per chunk, then one spatial token per CLIP position (CLS first)."""

    per_frame = False

    @property
    def vision_tower(self) -> torch.nn.Module:
        return self.model.model.visual_tower

    @property
    def visual_token_id(self) -> int:
        return self.model.config.event_token_index

    def visual_tokens(self, visual: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.model.model.get_event_features(visual["event_pixel_values"])

    def patch_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Visual tokens [B, chunks + 1 + grid^2, D] -> the spatial patch tokens [B, 1, grid, grid, D]."""
        return tokens[:, -self.grid * self.grid :].unflatten(1, (self.grid, self.grid)).unsqueeze(1)


def model_parts(backend: Backend) -> VideoLlavaParts:
    return VideoLlavaParts(backend) if isinstance(backend, VerifierBackend) else EventGPTParts(backend)
