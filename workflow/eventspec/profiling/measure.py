"""``eventspec profile``: component costs of the real pair at real shapes, random weights, no download.

Models are built from the published configurations: Video-LLaVA-7B-hf (``VideoLlavaConfig``'s defaults mirror
the release: CLIP ViT-L/14 video tower of 24 layers, Vicuna-7B of 32 layers at 4096, text vocabulary 32064),
EventGPT-7B (``EventGPTConfig``: CLIP ViT-L/14-336 of 24 layers, Vicuna-7B, vocabulary 32000) and an
EAGLE-style decode head (fc 2D -> D, one Llama decoder layer at 4096, the verifier's LM head). Each is timed
batch 1 the way the engine runs it: the verifier's vision + prefill at each frame count, its one-token decode
step and k-token verify forwards over a DynamicCache (eager) and, with ``compile``, over a StaticCache with a
``torch.compile``-d forward (CUDA graphs on CUDA); the drafter's vision + prefill at its token count and its
decode step; the head's step.

``depth="truncated"`` (the CPU default): at full width, each tower is built at 1 and at 2 layers, the
difference is the cost of one layer, and the full depth is extrapolated linearly (``t(1) + (N - 1) x
(t(2) - t(1))``); the profile says ``extrapolated``. ``depth="full"`` builds the real depth (a GPU).
``size="tiny"``: the same code at tiny dimensions (CI). The output follows xsd/cost_profile.schema.json, with the
raw timings under ``measurements``.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import torch
from tqdm import tqdm
from transformers import CLIPVisionConfig, DynamicCache, LlamaConfig, StaticCache, VideoLlavaConfig
from transformers import VideoLlavaForConditionalGeneration
from transformers.models.llama.modeling_llama import LlamaDecoderLayer, LlamaRMSNorm, LlamaRotaryEmbedding

from ..decoding.clock import now
from ..models.eventgpt import EventGPTConfig, EventGPTForCausalLM, num_event_tokens
from ..schemas import write_json
from .costs import validate

VIDEO_LLAVA_TEXT_VOCAB = 32064
PROMPT_TEXT_TOKENS = 34
"""Text tokens around the visual ones in Video-LLaVA's prompt (2090 - 2056 at 8 frames, DESIGN §11)."""
WIDTHS = [1, 2, 4, 6, 8, 12, 16]
COMPILED_WIDTHS = [1, 6, 16]
"""Compiled widths: each is its own graph (compile time); the projection reads the widest entry not above k."""

TINY_TEXT = {"hidden_size": 64, "intermediate_size": 172, "num_attention_heads": 4, "num_key_value_heads": 4}
TINY_VISION = {"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2, "patch_size": 14}


@dataclass
class Shapes:
    """Full depths and the configs to build at a given depth."""

    size: str  # "real" or "tiny"
    text_layers: int = 32
    vision_layers: int = 24

    def text(self, layers: int, vocab: int) -> dict:
        base = {} if self.size == "real" else TINY_TEXT
        return base | {"num_hidden_layers": layers, "vocab_size": vocab, "max_position_embeddings": 8192,
                       "rms_norm_eps": 1e-5}

    def vision(self, layers: int, image_size: int) -> dict:
        base = {} if self.size == "real" else TINY_VISION
        return base | {"num_hidden_layers": layers, "image_size": image_size if self.size == "real" else 28}


def timed(fn, device, repeats: int) -> float:
    """Median seconds of ``repeats`` calls after one untimed warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        t = now(device)
        fn()
        times.append(now(device) - t)
    return statistics.median(times)


def verifier(shapes: Shapes, text_layers: int, vision_layers: int, frames: int, dtype, device):
    vision = CLIPVisionConfig(**shapes.vision(vision_layers, 224))
    grid = vision.image_size // vision.patch_size
    config = VideoLlavaConfig(vision_config=vision, text_config=LlamaConfig(**shapes.text(text_layers,
                              VIDEO_LLAVA_TEXT_VOCAB)), image_seq_length=grid * grid,
                              video_seq_length=(grid * grid + 1) * frames)
    with torch.device(device):  # built where it runs: initialising 7B parameters on a host CPU takes minutes
        model = VideoLlavaForConditionalGeneration(config).to(dtype).eval()
    ids = torch.full((1, PROMPT_TEXT_TOKENS + config.video_seq_length), 319, device=device)
    ids[0, 5 : 5 + config.video_seq_length] = config.video_token_index
    pixels = torch.randn(1, frames, 3, vision.image_size, vision.image_size, device=device, dtype=dtype)
    return model, ids, pixels


def drafter(shapes: Shapes, text_layers: int, vision_layers: int, dtype, device):
    vision = CLIPVisionConfig(**(shapes.vision(vision_layers, 336) | {"projection_dim": 768}))
    config = EventGPTConfig(**shapes.text(text_layers, 32000), vision_config=vision)
    with torch.device(device):
        model = EventGPTForCausalLM(config).to(dtype).eval()
    n = num_event_tokens(config)
    ids = torch.full((1, PROMPT_TEXT_TOKENS + 48 + n), 319, device=device)
    ids[0, 40 : 40 + n] = config.event_token_index
    pixels = torch.randn(1, config.num_event_chunks, 3, vision.image_size, vision.image_size, device=device,
                         dtype=dtype)
    return model, ids, pixels


class EagleHead(torch.nn.Module):
    """EAGLE's draft head: fc over [token embedding, feature], one Llama decoder layer, norm; the verifier's LM
    head on top."""

    def __init__(self, config: LlamaConfig):
        super().__init__()
        d = config.hidden_size
        self.fc = torch.nn.Linear(2 * d, d, bias=False)
        self.layer = LlamaDecoderLayer(config, 0)
        self.norm = LlamaRMSNorm(d, config.rms_norm_eps)
        self.rotary = LlamaRotaryEmbedding(config)
        self.lm_head = torch.nn.Linear(d, config.vocab_size, bias=False)

    def forward(self, embeds, features, positions, cache):
        x = self.fc(torch.cat([embeds, features], -1))
        x = self.layer(x, position_embeddings=self.rotary(x, positions), position_ids=positions,
                       past_key_values=cache, use_cache=True, attention_mask=None)
        x = x[0] if isinstance(x, tuple) else x
        return self.lm_head(self.norm(x))


def llm_steps(model, ids, pixels, pixel_key: str, device, repeats: int, widths: list[int], compile: bool) -> dict:
    """Prefill (vision included), then the one-token step and k-token verify forwards over a DynamicCache, and
    with ``compile`` over a StaticCache with a compiled forward. Seconds, medians."""
    out = {}
    lm = model.model

    def prefill(cache=None):
        return model(input_ids=ids, **{pixel_key: pixels}, past_key_values=cache, use_cache=True, logits_to_keep=1)

    with torch.no_grad():
        out["prefill"] = timed(prefill, device, repeats)
        cache = prefill().past_key_values
        length = ids.shape[1]
        verify = {}
        for k in widths:
            tokens = torch.full((1, k), 319, device=device)
            positions = torch.arange(length, length + k, device=device)[None]

            def forward():
                hidden = lm(input_ids=tokens, position_ids=positions, past_key_values=cache, use_cache=True)
                model.lm_head(hidden.last_hidden_state)
                cache.crop(-k)

            verify[str(k)] = timed(forward, device, repeats)
        out["verify_eager"] = verify
        if compile:
            out["verify_compiled"] = compiled_verify(model, ids, pixels, pixel_key, device, repeats, COMPILED_WIDTHS)
    return out


def compiled_verify(model, ids, pixels, pixel_key, device, repeats, widths) -> dict:
    """k-token forwards on a StaticCache, ``torch.compile``-d (``reduce-overhead``: CUDA graphs on CUDA)."""
    length = ids.shape[1]
    cache = StaticCache(config=model.config.get_text_config(), max_cache_len=length + max(widths) + 8)
    model(input_ids=ids, **{pixel_key: pixels}, past_key_values=cache, use_cache=True, logits_to_keep=1)

    def step(tokens, positions):
        hidden = model.model(input_ids=tokens, position_ids=positions, cache_position=positions[0],
                             past_key_values=cache, use_cache=True).last_hidden_state
        return model.lm_head(hidden)

    compiled = torch.compile(step, mode="reduce-overhead" if torch.device(device).type == "cuda" else None)

    def crop():  # the next forward writes at ``length`` again (as ``StaticStep.crop``)
        for layer in cache.layers:
            layer.cumulative_length.fill_(length)

    out = {}
    for k in widths:
        tokens = torch.full((1, k), 319, device=device)
        positions = torch.arange(length, length + k, device=device)[None]
        out[str(k)] = timed(lambda: (compiled(tokens, positions), crop()), device, repeats)
    return out


def eagle_step(shapes: Shapes, dtype, device, context: int):
    """One EAGLE-style head step (fc + decoder layer + LM head) after ``context`` positions of its own cache, as a
    callable (the cache is cropped back after each call)."""
    config = LlamaConfig(**shapes.text(1, 32000))
    with torch.device(device):
        head = EagleHead(config).to(dtype).eval()
    d = config.hidden_size
    cache = DynamicCache()
    x = torch.randn(1, 1, d, device=device, dtype=dtype)
    positions = torch.tensor([[context]], device=device)
    with torch.no_grad():
        head(torch.randn(1, context, d, device=device, dtype=dtype), torch.randn(1, context, d, device=device,
             dtype=dtype), torch.arange(context, device=device)[None], cache)

    @torch.no_grad()
    def step():
        head(x, x, positions, cache)
        cache.crop(-1)

    return step


def head_step(shapes: Shapes, dtype, device, repeats: int, context: int) -> float:
    """Seconds of one ``eagle_step``."""
    return timed(eagle_step(shapes, dtype, device, context), device, repeats)


def extrapolate(at1: float, at2: float, layers: int) -> float:
    """Full-depth cost from costs at 1 and 2 layers: linear in the layer count."""
    return at1 + (layers - 1) * max(at2 - at1, 0.0)


def measure_model(build, shapes: Shapes, depth: str, measure) -> tuple[dict, dict]:
    """``measure(model parts)`` -> {cost: seconds or {width: seconds}} at full depth, or at (text, vision) depths
    (1,1), (2,1), (1,2) extrapolated per layer; returns (costs, raw timings)."""
    if depth == "full":
        costs = measure(build(shapes.text_layers, shapes.vision_layers))
        return costs, {"full": costs}
    raw = {key: measure(build(*key)) for key in ((1, 1), (2, 1), (1, 2))}

    def combine(base, text2, vision2, vision_counts: bool):
        if isinstance(base, dict):
            return {k: combine(base[k], text2[k], vision2[k], vision_counts) for k in base}
        text = extrapolate(base, text2, shapes.text_layers) - base
        vision = extrapolate(base, vision2, shapes.vision_layers) - base if vision_counts else 0.0
        return base + text + vision

    costs = {k: combine(raw[(1, 1)][k], raw[(2, 1)][k], raw[(1, 2)][k], k == "prefill") for k in raw[(1, 1)]}
    return costs, {f"text{t}_vision{v}": r for (t, v), r in raw.items()}


def run_profile(name: str, size: str = "real", depth: str | None = None, device: str = "cpu",
                dtype: str = "bfloat16", frames: list[int] = (8,), compile: bool = False, repeats: int = 5,
                gpus: int = 1, out: str | None = None) -> dict:
    """Measure, extrapolate where truncated, and write the profile (xsd/cost_profile.schema.json)."""
    device = torch.device(device)
    depth = depth or ("full" if device.type == "cuda" else "truncated")
    torch_dtype = getattr(torch, dtype)
    shapes = Shapes(size)
    if size == "tiny":
        shapes.text_layers, shapes.vision_layers = 4, 4
    widths = WIDTHS
    raw: dict = {}
    verifier_costs = {}
    jobs = [("verifier", f) for f in frames] + [("drafter", None), ("head", None)]
    for part, f in tqdm(jobs, desc=f"profile {name} ({size}, {depth}, {device})", unit="part"):
        if part == "verifier":
            build = lambda t, v, f=f: verifier(shapes, t, v, f, torch_dtype, device)  # noqa: E731
            costs, raw[f"verifier_{f}_frames"] = measure_model(
                build, shapes, depth,
                lambda parts: llm_steps(*parts, "pixel_values_videos", device, repeats,
                                        widths if f == frames[0] else [], compile and f == frames[0]))
            verifier_costs[f] = costs
        elif part == "drafter":
            build = lambda t, v: drafter(shapes, t, v, torch_dtype, device)  # noqa: E731
            drafter_costs, raw["drafter"] = measure_model(
                build, shapes, depth,
                lambda parts: llm_steps(*parts, "event_pixel_values", device, repeats, [1], False))
        else:
            raw["head"] = head_s = head_step(shapes, torch_dtype, device, repeats, 2100 if size == "real" else 64)
    first = verifier_costs[frames[0]]
    eager = first["verify_eager"]
    compiled = first.get("verify_compiled")
    extrapolated = depth != "full"
    how = ("full width, depth extrapolated per layer from 1- and 2-layer towers" if extrapolated
           else "full depth")
    profile = {
        "name": name, "kind": "extrapolated" if extrapolated else "measured",
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)",
        "dtype": dtype, "quant": "none", "extrapolated": extrapolated,
        "provenance": f"eventspec profile: {size} shapes (Video-LLaVA-7B-hf, EventGPT-7B, EAGLE-style head configs), "
                      f"random weights, {how}, batch 1, medians of {repeats}",
        "gpus": [1],
        "costs_s": {
            "verifier_prefill_by_frames": {str(f): c["prefill"] for f, c in verifier_costs.items()},
            "drafter_prefill": drafter_costs["prefill"],
            "decode_step": {"eager": eager["1"], "compiled": compiled["1"] if compiled else None},
            "verify_by_width": {"eager": eager, "compiled": compiled},
            "hf_generate_per_token": {"dynamic": None, "static": None},
            "head_step": {"eager": head_s, "compiled": None},
            "drafter_decode_step": drafter_costs["verify_eager"]["1"],
            "adapter_step": head_s,
            "round_overhead": 0.0,
            "same_device_prefill_slowdown": None,
        },
        "sources": {
            "hf_generate_per_token": "not measured by eventspec profile",
            "head_step": "EAGLE-style head, eager, DynamicCache after the verifier's prompt length",
            "adapter_step": "taken as the head step (a prefill adapter is at most one layer + the LM head)",
            "same_device_prefill_slowdown": "not measured by eventspec profile (needs two processes on one device)",
            "decode_step": "compiled: only with --compile",
        },
        "measurements": raw,
    }
    validate(profile, f"profile {name}")
    if out:
        write_json(out, profile, "cost_profile")
    return profile
