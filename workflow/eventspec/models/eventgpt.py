"""EventGPT (Liu et al., "EventGPT: Event Stream Understanding with Multimodal Large Language Models",
CVPR 2025) as a transformers v5 causal LM.

The model, as released (github XduSyL/EventGPT, ``model/EventChatModel.py``):

    event window --cut into T equal-count chunks--> T event images          (T = 5 at inference)
    each image --CLIP ViT-L/14-336 (last_hidden_state, CLS kept)--> 577 x 1024
               --visual_projector (Linear, GELU, Linear)--> 577 x 4096
               --feature_adaptor (Linear)-->                577 x 4096
    T x 577 x 4096 --spatio-temporal aggregation--> (T + 577) x 4096     (582 tokens for T = 5)
    prompt embeddings with the visual tokens at the event placeholder --> Vicuna-7B (Llama) --> text

The code applies the projector and the adaptor per chunk and aggregates last, although the paper lists the
aggregator before them; the projector is non-linear, so the order matters for real weights and we follow the code.

Checkpoint compatibility. EventGPT's checkpoint is a ``LlamaForCausalLM`` whose inner ``model`` also holds
``visual_tower.visual_tower`` (a ``CLIPVisionModel``), ``visual_projector`` (``nn.Sequential``: keys ``0.*`` and
``2.*``) and ``feature_adaptor``; its config is a flat ``LlamaConfig`` with ``model_type = "EventChat_llama"``,
``mm_visual_tower`` (path of the CLIP model) and ``event_feature_adaptor``. The modules below carry exactly those
names. transformers v5 dropped ``CLIPVisionModel``'s ``vision_model.`` level; a registered key renaming adds it
back on save and strips it on load, so the files we write keep EventGPT's layout.

Inputs are built as EventGPT's inference builds them (``inference.py``, ``common/common.py``,
``dataset/conversation.py``): the Vicuna v1 template (``conv_eventgpt_v1``) with ``<ev_start><event><ev_end>``, a
newline and the question as the user turn, tokenized chunk by chunk around ``<event>`` with EVENT_TOKEN_INDEX (-200)
spliced in between (``tokenizer_event_token``; the tokenizer never sees ``<event>``); the tokenizer gains
``<ev_patch>`` (unless ``mm_use_im_patch_token`` is false) and, with ``mm_use_im_start_end``, the two markers as
tokens, and the embeddings are resized to it (``prepare_tokenizer``); each event image (``eventspec.event_images``,
cut back to its own canvas) goes through the CLIP tower's own image processor (``event_image_processor``).

Differences from the original, on purpose: the visual tokens are merged the transformers-v5 Llava way instead of
splicing embeddings into a re-padded batch: ``expand_event_placeholder`` turns the one placeholder id into one
``config.event_token_index`` per visual token before the ids reach the model, and ``masked_scatter`` writes the
visual tokens there, so left-padded batches, the KV cache and ``generate()`` behave like any causal LM; and the
CLIP architecture is stored in ``config.vision_config`` so a checkpoint never needs the hub to be built.
"""

import json
import os
from pathlib import Path

import numpy as np
import torch
from huggingface_hub.dataclasses import strict
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    CLIPVisionConfig,
    CLIPVisionModel,
    GenerationMixin,
    LlamaConfig,
)
from transformers.cache_utils import Cache
from transformers.configuration_utils import SubConfigSpec
from transformers.conversion_mapping import register_checkpoint_conversion_mapping
from transformers.core_model_loading import WeightRenaming
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast
from transformers.modeling_utils import slice_logits_to_keep
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
from transformers.models.llama.modeling_llama import LlamaModel, LlamaPreTrainedModel
from transformers.utils.generic import can_return_tuple

from ..event_images import event_canvas
from .loading import ModelLoadError, device_placement, looks_like_repo_id, quantization_config

MODEL_TYPE = "EventChat_llama"
"""``model_type`` of EventGPT's ``EventChatConfig``."""

EVENT_TOKEN = "<event>"
EV_START_TOKEN = "<ev_start>"
EV_END_TOKEN = "<ev_end>"
EV_PATCH_TOKEN = "<ev_patch>"
EVENT_TOKEN_INDEX = -200
"""EventGPT's ``EVENT_TOKEN_INDEX``: an id outside the vocabulary, used when the tokenizer has no event token."""

VICUNA_V1_SYSTEM = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)

CLIP_VIT_L14_336 = {
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "image_size": 336,
    "patch_size": 14,
    "projection_dim": 768,
    "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-5,
}
"""``openai/clip-vit-large-patch14-336``, EventGPT's event encoder."""

WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


def _has_weights(directory: Path) -> bool:
    return any((directory / name).is_file() for name in WEIGHT_FILES)


def _cached_snapshot(repo_id: str) -> Path | None:
    """The Hugging Face cache's snapshot of ``repo_id`` (``HF_HUB_CACHE`` / ``HF_HOME``), if it holds one."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:  # not cached (LocalEntryNotFoundError), or a cache this machine cannot read
        return None


def clip_tower_dir(mm_visual_tower: str | None, *search_roots: Path) -> Path | None:
    """The directory of the CLIP model ``mm_visual_tower`` names, if it is here. Nothing is downloaded.

    EventGPT's config stores what its ``from_pretrained`` was given: a path (relative or absolute) or a hub id
    (``openai/clip-vit-large-patch14-336``). We try it as a directory as given and relative to ``search_roots`` (a
    checkpoint directory and its parent, EventGPT's ``checkpoints/`` layout), then as a hub id in the local cache.
    """
    if not mm_visual_tower:
        return None
    candidates = [Path(mm_visual_tower)] + [root / mm_visual_tower for root in search_roots]
    for candidate in candidates:
        if (candidate / "config.json").is_file():
            return candidate
    if looks_like_repo_id(mm_visual_tower) and (snapshot := _cached_snapshot(mm_visual_tower)) is not None:
        return snapshot if (snapshot / "config.json").is_file() else None
    return None


@strict
class EventGPTConfig(LlamaConfig):
    r"""EventGPT's flat config: every Llama (Vicuna) field at the top level, plus

    mm_visual_tower (`str`, *optional*):
        EventGPT's key: the CLIP vision model the tower was initialised from, a path or a hub id. Its architecture is
        read when ``vision_config`` is absent (an original EventGPT config.json), its image processor always, when
        it is a local directory or in the local Hugging Face cache (``clip_tower_dir``).
    event_feature_adaptor (`bool`, defaults to `True`):
        EventGPT's key. EventGPT builds the ``feature_adaptor`` whenever its config has this key, whatever its value,
        and its inference always applies it, so the value changes nothing here: the adaptor is always built.
    mm_use_im_start_end (`bool`, defaults to `False`):
        EventGPT's (LLaVA's) key: whether ``<ev_start>``/``<ev_end>`` are added to the tokenizer as tokens. The
        prompt holds them either way (as text when they are not tokens). False in the released EventGPT-7B.
    mm_use_im_patch_token (`bool`, defaults to `True`):
        EventGPT's key: whether ``<ev_patch>`` is added to the tokenizer (missing counts as true, as there).
    vision_config (`CLIPVisionConfig` or `dict`, *optional*):
        Architecture of the CLIP tower; ViT-L/14-336 when neither it nor a local ``mm_visual_tower`` is given.
    event_token_index (`int`, defaults to -200):
        Id of the event placeholder token in ``input_ids``; may lie outside the vocabulary (EventGPT uses -200).
    num_event_chunks (`int`, defaults to 5):
        Event images per window (EventGPT's inference cuts each window into 5 equal-count chunks).
    """

    model_type = MODEL_TYPE
    sub_configs_defaults = {
        "vision_config": SubConfigSpec(config_class=CLIPVisionConfig, init_kwargs=CLIP_VIT_L14_336),
    }

    mm_visual_tower: str | None = None
    event_feature_adaptor: bool = True
    mm_use_im_start_end: bool = False
    mm_use_im_patch_token: bool = True
    vision_config: dict | CLIPVisionConfig | None = None
    event_token_index: int = EVENT_TOKEN_INDEX
    num_event_chunks: int = 5

    def __post_init__(self, **kwargs):
        if self.vision_config is None and (clip_dir := clip_tower_dir(self.mm_visual_tower)) is not None:
            self.vision_config = CLIPVisionConfig.from_pretrained(clip_dir)
        super().__post_init__(**kwargs)


def num_event_tokens(config: EventGPTConfig) -> int:
    """Visual tokens per sample: one temporal token per chunk plus one spatial token per CLIP position (CLS kept)."""
    vision = config.vision_config
    patches_per_side = vision.image_size // vision.patch_size
    return config.num_event_chunks + patches_per_side * patches_per_side + 1


VICUNA_V1_ROLES = ("USER", "ASSISTANT")
VICUNA_V1_SEP = " "
"""``conv_eventgpt_v1``: separator style TWO, sep " " (after the system prompt and user turns), sep2 "</s>"
(after assistant turns, so not in a generation prompt)."""


def build_prompt(question: str, system: str = VICUNA_V1_SYSTEM) -> str:
    """EventGPT's generation prompt (``prepare_event_prompt``): ``<ev_start><event><ev_end>``, a newline and the
    question as the user turn, whatever the config says (``mm_use_im_start_end`` only decides whether the markers
    are tokens, ``prepare_tokenizer``). No BOS (Llama tokenizers add it); ``tokenizer_event_token`` turns the one
    ``<event>`` into the placeholder id.
    """
    user, assistant = VICUNA_V1_ROLES
    event = f"{EV_START_TOKEN}{EVENT_TOKEN}{EV_END_TOKEN}"
    return f"{system}{VICUNA_V1_SEP}{user}: {event}\n{question}{VICUNA_V1_SEP}{assistant}:"


def prepare_tokenizer(tokenizer, config: dict) -> int:
    """Add the tokens EventGPT's inference adds to its tokenizer; return the vocabulary size to resize to.

    ``<ev_patch>`` unless ``mm_use_im_patch_token`` is false (missing counts as true), ``<ev_start>``/``<ev_end>``
    when ``mm_use_im_start_end`` is true; all special. EventGPT then resizes the embeddings to ``len(tokenizer)``.
    """
    if config.get("mm_use_im_patch_token", True):
        tokenizer.add_tokens([EV_PATCH_TOKEN], special_tokens=True)
    if config.get("mm_use_im_start_end", False):
        tokenizer.add_tokens([EV_START_TOKEN, EV_END_TOKEN], special_tokens=True)
    return len(tokenizer)


def tokenizer_event_token(prompt: str, tokenizer, placeholder_id: int = EVENT_TOKEN_INDEX) -> list[int]:
    """Token ids of ``prompt`` with ``placeholder_id`` where ``<event>`` stands, as EventGPT's helper makes them.

    Each chunk between placeholders is tokenized on its own (so a Llama tokenizer starts each with its dummy
    prefix ``▁``, id 29871 before the newline after the placeholder); the first chunk keeps its BOS, the others
    drop theirs.
    """
    chunks = [tokenizer(chunk)["input_ids"] for chunk in prompt.split(EVENT_TOKEN)]
    bos = tokenizer.bos_token_id
    keep_bos = bool(chunks[0]) and bos is not None and chunks[0][0] == bos
    ids = [bos] if keep_bos else []
    for i, chunk in enumerate(chunks):
        if i:
            ids.append(placeholder_id)
        ids += chunk[1:] if keep_bos and chunk[:1] == [bos] else chunk
    return ids


def expand_event_placeholder(ids: list[int], config: EventGPTConfig, placeholder_id: int = EVENT_TOKEN_INDEX) -> list[int]:
    """``ids`` with its one placeholder replaced by ``num_event_tokens(config)`` copies of ``config.event_token_index``
    (one position per visual token, for ``merge_event_features``)."""
    if ids.count(placeholder_id) != 1:
        raise ValueError(f"an EventGPT prompt holds exactly one event placeholder ({placeholder_id}), got {ids.count(placeholder_id)}")
    at = ids.index(placeholder_id)
    return ids[:at] + [config.event_token_index] * num_event_tokens(config) + ids[at + 1 :]


def event_prompt_ids(question: str, config: EventGPTConfig, tokenizer) -> list[int]:
    """The ids EventGPT's model reads for ``question``: template, placeholder spliced in, then expanded."""
    return expand_event_placeholder(tokenizer_event_token(build_prompt(question), tokenizer), config)


def default_clip_processor(size: int) -> CLIPImageProcessorPil:
    """``openai/clip-vit-large-patch14-336``'s preprocessing at ``size``: shortest edge to ``size`` (bicubic),
    centre crop, rescale to [0, 1], OpenAI CLIP mean and std. The PIL backend resizes like the v4
    ``CLIPImageProcessor`` EventGPT used."""
    return CLIPImageProcessorPil(size={"shortest_edge": size}, crop_size={"height": size, "width": size})


def event_image_processor(config: EventGPTConfig, *search_roots: Path) -> CLIPImageProcessorPil:
    """The image processor of the CLIP tower ``mm_visual_tower`` names (as EventGPT loads it), when its directory or
    cached snapshot is here with a ``preprocessor_config.json``; else ``default_clip_processor`` at the tower's size."""
    clip_dir = clip_tower_dir(config.mm_visual_tower, *search_roots)
    if clip_dir is not None and (clip_dir / "preprocessor_config.json").is_file():
        return CLIPImageProcessorPil.from_pretrained(clip_dir, local_files_only=True)
    return default_clip_processor(config.vision_config.image_size)


def event_pixel_values(
    event_images_uint8: np.ndarray, config: EventGPTConfig, processor: CLIPImageProcessorPil | None = None
) -> torch.Tensor:
    """``[B, n_chunks, H, W, 3]`` uint8 event images -> ``[B, n_chunks, 3, S, S]`` float32 CLIP input.

    Each stored image is cut back to its own canvas (``event_canvas``) and goes through ``processor`` (default:
    ``event_image_processor(config)``), as EventGPT's ``process_event_data`` feeds each chunk image to its tower's
    processor.
    """
    images = np.asarray(event_images_uint8)
    if images.ndim != 5 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(
            f"event images must be uint8 [batch, n_chunks, height, width, 3], got {images.dtype} {images.shape}"
        )
    if images.shape[1] != config.num_event_chunks:
        raise ValueError(
            f"got {images.shape[1]} event chunks per sample, the model expects config.num_event_chunks="
            f"{config.num_event_chunks}"
        )
    processor = processor or event_image_processor(config)
    batch, chunks = images.shape[:2]
    flat = [event_canvas(image) for image in images.reshape(batch * chunks, *images.shape[2:])]
    pixels = processor(images=flat, return_tensors="pt", input_data_format="channels_last")["pixel_values"]
    return pixels.reshape(batch, chunks, *pixels.shape[1:]).float()


def spatio_temporal_aggregate(features: torch.Tensor) -> torch.Tensor:
    """``[B, T, N, D]`` per-chunk token features -> ``[B, T + N, D]`` (EventGPT's spatio-temporal aggregator).

    Temporal tokens: for each chunk, the mean over its N positions (how the scene changes across the window).
    Spatial tokens: for each position, the mean over the T chunks (what the window shows where). Temporal tokens
    come first, as in EventGPT's ``get_spatio_temporal_features`` (paper, Method: spatio-temporal aggregator).
    """
    temporal = features.mean(dim=2)
    spatial = features.mean(dim=1)
    return torch.cat([temporal, spatial], dim=1)


class EventGPTVisualTower(nn.Module):
    """CLIP vision encoder, under the attribute name EventGPT's ``VisualTower`` wrapper gives it."""

    def __init__(self, vision_config: CLIPVisionConfig):
        super().__init__()
        self.visual_tower = CLIPVisionModel._from_config(vision_config)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``[N, 3, S, S]`` -> ``[N, 1 + P, Dv]``: last encoder layer, CLS included, no post-layernorm."""
        return self.visual_tower(pixel_values=pixel_values).last_hidden_state


class EventGPTProjector(nn.Sequential):
    """Linear-GELU-Linear from CLIP width to LLM width; an ``nn.Sequential`` so its keys are ``0.*`` and ``2.*``."""

    def __init__(self, vision_hidden_size: int, hidden_size: int):
        super().__init__(nn.Linear(vision_hidden_size, hidden_size), nn.GELU(), nn.Linear(hidden_size, hidden_size))


class EventGPTFeatureAdaptor(nn.Linear):
    """The event-language adapter: one square linear layer on the projected features of each chunk."""

    def __init__(self, hidden_size: int):
        super().__init__(hidden_size, hidden_size)


def _positions_from_attention_mask(attention_mask: torch.Tensor, query_length: int) -> torch.Tensor:
    """Llama positions that skip left padding; ``attention_mask`` covers cached and new tokens."""
    positions = attention_mask.long().cumsum(-1) - 1
    positions = positions.masked_fill(attention_mask == 0, 1)
    return positions[:, -query_length:]


class EventGPTPreTrainedModel(LlamaPreTrainedModel):
    """Llama's weight init and attention back-ends, with EventGPT's config class."""

    config_class = EventGPTConfig
    config: EventGPTConfig


class EventGPTModel(EventGPTPreTrainedModel, LlamaModel):
    """EventGPT's ``EventChatLlamaModel``: the Llama decoder plus the event encoder, projector and adaptor."""

    def __init__(self, config: EventGPTConfig):
        # LlamaModel.__init__ builds and initialises the decoder; post_init runs again for the event modules.
        super().__init__(config)
        self.visual_tower = EventGPTVisualTower(config.vision_config)
        self.visual_projector = EventGPTProjector(config.vision_config.hidden_size, config.hidden_size)
        self.feature_adaptor = EventGPTFeatureAdaptor(config.hidden_size)
        self.post_init()

    @property
    def vision_dtype(self) -> torch.dtype:
        """The CLIP tower's dtype (``load_eventgpt``'s ``vision_dtype``): its pixels are cast to it."""
        return self.visual_tower.visual_tower.embeddings.class_embedding.dtype

    def get_event_features(self, event_pixel_values: torch.Tensor) -> torch.Tensor:
        """``[B, T, 3, S, S]`` CLIP-normalised event images -> ``[B, T + N, hidden_size]`` visual tokens."""
        if event_pixel_values.ndim != 5:
            raise ValueError(
                f"event_pixel_values must be [batch, n_chunks, 3, size, size], got {tuple(event_pixel_values.shape)}"
            )
        batch, chunks = event_pixel_values.shape[:2]
        patches = self.visual_tower(event_pixel_values.flatten(0, 1).to(self.vision_dtype))
        features = self.feature_adaptor(self.visual_projector(patches).to(self.get_input_embeddings().weight.dtype))
        return spatio_temporal_aggregate(features.unflatten(0, (batch, chunks)))

    def merge_event_features(
        self, input_ids: torch.LongTensor, inputs_embeds: torch.Tensor, event_features: torch.Tensor
    ) -> torch.Tensor:
        """Write each sample's visual tokens over its event tokens, in order."""
        event_mask = input_ids == self.config.event_token_index
        per_sample = event_mask.sum(dim=-1)
        if event_features.shape[0] != input_ids.shape[0] or bool((per_sample != event_features.shape[1]).any()):
            raise ValueError(
                f"event tokens per sample in input_ids {per_sample.tolist()} do not match the visual tokens "
                f"({event_features.shape[0]} samples x {event_features.shape[1]}); build prompt ids with "
                f"event_prompt_ids() (config.event_token_index={self.config.event_token_index})"
            )
        mask = event_mask.unsqueeze(-1).to(inputs_embeds.device)
        return inputs_embeds.masked_scatter(mask, event_features.to(inputs_embeds.device, inputs_embeds.dtype))

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        event_pixel_values: torch.Tensor | None = None,
        event_features: torch.Tensor | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPast:
        """Llama forward with visual tokens at the event positions.

        ``event_features`` (from ``get_event_features``) can replace ``event_pixel_values`` when the encoder has
        already run. Without ``position_ids``, positions follow ``attention_mask`` so left padding does not shift
        them (plain Llama counts from the first column).
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids or inputs_embeds")
        if event_pixel_values is not None and event_features is not None:
            raise ValueError("pass event_pixel_values or event_features, not both")
        if event_pixel_values is not None:
            event_features = self.get_event_features(event_pixel_values)
        if inputs_embeds is None:
            event_mask = input_ids == self.config.event_token_index
            inputs_embeds = self.embed_tokens(input_ids.masked_fill(event_mask, 0))
            if event_features is not None:
                inputs_embeds = self.merge_event_features(input_ids, inputs_embeds, event_features)
        elif event_features is not None:
            raise ValueError("event features are placed by the event tokens in input_ids; pass input_ids")
        query_length = inputs_embeds.shape[1]
        past_length = past_key_values.get_seq_length() if past_key_values is not None else 0
        if (
            position_ids is None
            and attention_mask is not None
            and attention_mask.ndim == 2
            and attention_mask.shape[1] == past_length + query_length
        ):
            position_ids = _positions_from_attention_mask(attention_mask, query_length)
        return super().forward(
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            **kwargs,
        )


class EventGPTForCausalLM(EventGPTPreTrainedModel, GenerationMixin):
    """EventGPT's ``EventChatModel``: ``EventGPTModel`` under ``model`` plus the LM head ``lm_head``."""

    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}

    def __init__(self, config: EventGPTConfig):
        super().__init__(config)
        self.model = EventGPTModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    @property
    def llm_hidden_size(self) -> int:
        return self.config.hidden_size

    def get_output_embeddings(self) -> nn.Module:
        return self.lm_head

    def get_event_features(self, event_pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model.get_event_features(event_pixel_values)

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        event_pixel_values: torch.Tensor | None = None,
        event_features: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs,
    ) -> CausalLMOutputWithPast:
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            event_pixel_values=event_pixel_values,
            event_features=event_features,
            **kwargs,
        )
        logits = self.lm_head(slice_logits_to_keep(outputs.last_hidden_state, logits_to_keep))
        loss = None
        if labels is not None:
            loss = self.loss_function(logits=logits, labels=labels, vocab_size=self.config.vocab_size, **kwargs)
        return CausalLMOutputWithPast(
            loss=loss,
            logits=logits,
            past_key_values=outputs.past_key_values,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )

    def prepare_inputs_for_generation(
        self,
        input_ids: torch.LongTensor,
        event_pixel_values: torch.Tensor | None = None,
        event_features: torch.Tensor | None = None,
        is_first_iteration: bool | None = False,
        **kwargs,
    ):
        """Visual inputs go to the prefill step only; later steps read them from the KV cache."""
        model_inputs = super().prepare_inputs_for_generation(
            input_ids, is_first_iteration=is_first_iteration, **kwargs
        )
        if is_first_iteration or not kwargs.get("use_cache", True):
            model_inputs["event_pixel_values"] = event_pixel_values
            model_inputs["event_features"] = event_features
        return model_inputs


AutoConfig.register(MODEL_TYPE, EventGPTConfig, exist_ok=True)
AutoModelForCausalLM.register(EventGPTConfig, EventGPTForCausalLM, exist_ok=True)
# transformers v5 dropped CLIPVisionModel's `vision_model.` level. Renaming EventGPT's keys on load, and back on
# save, keeps every checkpoint we write in EventGPT's own key layout.
register_checkpoint_conversion_mapping(
    EventGPTForCausalLM.__name__,
    [WeightRenaming(r"^model\.visual_tower\.visual_tower\.vision_model\.", "model.visual_tower.visual_tower.")],
    overwrite=True,
)


def tiny_eventgpt_config(
    *,
    vocab_size: int,
    event_token_index: int,
    pad_token_id: int,
    bos_token_id: int,
    eos_token_id: int,
    image_size: int = 64,
    patch_size: int = 8,
    vision_hidden: int = 64,
    vision_layers: int = 2,
    vision_heads: int = 4,
    llm_hidden: int = 128,
    llm_layers: int = 4,
    llm_heads: int = 4,
    llm_intermediate: int = 344,
    n_chunks: int = 5,
    max_position_embeddings: int = 2048,
) -> EventGPTConfig:
    """A small EventGPT for CPU experiments; the CLIP weights live in the checkpoint (no ``mm_visual_tower``)."""
    vision = CLIPVisionConfig(
        hidden_size=vision_hidden,
        intermediate_size=4 * vision_hidden,
        num_hidden_layers=vision_layers,
        num_attention_heads=vision_heads,
        image_size=image_size,
        patch_size=patch_size,
        projection_dim=vision_hidden,
    )
    return EventGPTConfig(
        vocab_size=vocab_size,
        hidden_size=llm_hidden,
        intermediate_size=llm_intermediate,
        num_hidden_layers=llm_layers,
        num_attention_heads=llm_heads,
        max_position_embeddings=max_position_embeddings,
        rms_norm_eps=1e-5,
        pad_token_id=pad_token_id,
        bos_token_id=bos_token_id,
        eos_token_id=eos_token_id,
        vision_config=vision,
        event_token_index=event_token_index,
        num_event_chunks=n_chunks,
        mm_use_im_patch_token=False,  # the toy's word-level vocabulary gets no <ev_patch>
    )


def load_eventgpt(
    path: str | os.PathLike,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    quant: str = "none",
    vision_dtype: torch.dtype | None = None,
) -> EventGPTForCausalLM:
    """Load an EventGPT checkpoint directory strictly, in eval mode.

    ``vision_dtype``: the CLIP tower's and the projector's dtype (EventGPT's code builds both in bfloat16 whatever
    the LLM's dtype and feeds them bfloat16 pixels: ``load_drafter``'s default); None keeps ``dtype``. Not applied to
    a quantized model.

    Raises ``ModelLoadError`` naming the path when the directory, its config.json or its weights are missing,
    when it is another architecture, or when its weights do not match EventGPT's layout. ``quant`` is
    ``none``, ``4bit`` or ``8bit`` (bitsandbytes). CLIP weights
    missing from the checkpoint are read from the CLIP model ``mm_visual_tower`` names (``clip_tower_dir``).
    """
    path = Path(path)
    if not path.is_dir():
        raise ModelLoadError(f"EventGPT checkpoint directory {path} does not exist")
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ModelLoadError(f"{path} has no config.json; expected an EventGPT checkpoint directory")
    raw = json.loads(config_file.read_text())
    if raw.get("model_type") != MODEL_TYPE:
        raise ModelLoadError(
            f"{path} holds model_type={raw.get('model_type')!r} (architectures={raw.get('architectures')}), "
            f"not EventGPT: expected model_type={MODEL_TYPE!r} (EventGPT's EventChatModel)"
        )
    if not _has_weights(path):
        raise ModelLoadError(f"{path} has no weights; expected one of {', '.join(WEIGHT_FILES)}")

    config = EventGPTConfig.from_pretrained(path)
    clip_dir = clip_tower_dir(config.mm_visual_tower, path, path.parent)
    if "vision_config" not in raw and clip_dir is not None:
        config.vision_config = CLIPVisionConfig.from_pretrained(clip_dir)
    # Mismatched shapes are collected (not raised) so the error below can name them with the path.
    bnb = quantization_config(quant, dtype)
    placement = device_placement(device) | ({"quantization_config": bnb} if bnb else {})
    model, info = EventGPTForCausalLM.from_pretrained(
        path, config=config, dtype=dtype, output_loading_info=True, ignore_mismatched_sizes=True, **placement
    )
    missing = sorted(info["missing_keys"])
    tower_only = missing and all(key.startswith("model.visual_tower.") for key in missing)
    if tower_only and clip_dir is not None and _has_weights(clip_dir):
        clip = CLIPVisionModel.from_pretrained(clip_dir, dtype=dtype, **device_placement(device))
        model.model.visual_tower.visual_tower.load_state_dict(clip.state_dict(), strict=True)
        missing = []
    mismatched = [f"{key} (checkpoint {tuple(got)}, model {tuple(want)})" for key, got, want in info["mismatched_keys"]]
    unexpected = sorted(info["unexpected_keys"])
    problems = {"missing": missing, "unexpected": unexpected, "shape-mismatched": sorted(mismatched)}
    details = "; ".join(
        f"{len(keys)} {kind} weights, e.g. {', '.join(keys[:5])}" for kind, keys in problems.items() if keys
    )
    if details:
        raise ModelLoadError(f"{path} is not a complete EventGPT checkpoint: {details}")
    if vision_dtype is not None and quant == "none":
        model.model.visual_tower.to(vision_dtype)
        model.model.visual_projector.to(vision_dtype)
    return model.eval()
