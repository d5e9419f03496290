"""The pipeline on checkpoints shaped like Video-LLaVA-7B-hf and EventGPT-7B: extraction end to end, vocabularies
that differ above 32000, a tokenizer without a pad token, hub ids through the cache, and bad input."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
import zarr

from eventspec import config as config_mod
from eventspec.extract import extract_features, load_pair
from eventspec.models.backend import greedy_generate, receivable_tokens, teacher_forced_hidden
from eventspec.models.drafter import load_drafter
from eventspec.models.eventgpt import EVENT_TOKEN_INDEX, num_event_tokens
from eventspec.models.loading import ModelLoadError, check_device, resolve_checkpoint
from eventspec.models.verifier import load_verifier
from real_checkpoints import VICUNA_VOCAB, VIDEO_LLAVA_ADDED, eventgpt_prompt_ids, lay_out_hub_cache

QUESTIONS = ["What objects are in the scene?", "Is it day or night?", "Describe the scene."]
REPO_ID = "LanguageBind/Video-LLaVA-7B-hf"


def extraction_config(models: dict, **models_extra) -> dict:
    return config_mod.validate(
        {
            "models": {name: {"path": str(path)} | models_extra.get(name, {}) for name, path in models.items()},
            "extract": {"max_new_tokens": 6, "batch_size": 4, "write_rows": 4, "chunk_rows": 4, "max_questions": 2,
                        "max_samples": 3},
        }
    )  # fmt: skip


def window_inputs(tiny_world, rows=slice(0, 3)):
    g = zarr.open_group(tiny_world[1]["test"][0], mode="r")
    return np.asarray(g["frames"][rows]), np.asarray(g["event_images"][rows])


@pytest.fixture(scope="module")
def pair(real_shaped_models):
    return load_pair(extraction_config(real_shaped_models)["models"])


def test_fixtures_have_the_published_ids(pair):
    verifier, drafter = pair
    assert drafter.tokenizer is not verifier.tokenizer
    assert (drafter.tokenizer.vocab_size, len(drafter.tokenizer), drafter.tokenizer.pad_token) == (32000, 32000, None)
    assert {t: verifier.tokenizer.convert_tokens_to_ids(t) for t in VIDEO_LLAVA_ADDED} == VIDEO_LLAVA_ADDED
    assert verifier.tokenizer.pad_token_id == 32002 and verifier.model.config.text_config.vocab_size == 32064
    assert (verifier.model.config.image_token_index, verifier.model.config.video_token_index) == (32000, 32001)
    assert drafter.model.config.vocab_size == VICUNA_VOCAB and drafter.model.config.event_token_index == -200
    assert "<event>" not in drafter.tokenizer.get_vocab()


def test_drafter_prompt_holds_one_id_per_visual_token(pair):
    _, drafter = pair
    ids = drafter.prompt_ids("What is shown in this image?")
    n = num_event_tokens(drafter.model.config)
    golden = eventgpt_prompt_ids()
    at = golden.index(EVENT_TOKEN_INDEX)
    assert ids == golden[:at] + [EVENT_TOKEN_INDEX] * n + golden[at + 1 :]


def test_extraction_runs_end_to_end(tiny_world, real_shaped_models, tmp_path):
    samples, digest = tiny_world[1]["test"]
    out = extract_features(extraction_config(real_shaped_models), "test", samples, digest, tmp_path / "f.zarr")
    g = zarr.open_group(out, mode="r")
    n = g.attrs["n_committed"]
    assert n == 3 * 2 and g["drafter_hidden_tf"].shape == (n, 6, 32)
    lengths = g["verifier_len"][:]
    tokens = g["verifier_tokens"][:]
    valid = np.arange(6)[None] < lengths[:, None]
    assert (tokens[~valid] == -1).all() and (tokens[valid] >= 0).all()
    assert np.isfinite(g["drafter_hidden_tf"][:].astype(np.float32)).all()
    # The hidden-state invariant on what was stored: lm_head(h[t]) gives token[t] (float16 storage: near ties aside).
    verifier, _ = load_pair(extraction_config(real_shaped_models)["models"])
    hidden = torch.from_numpy(g["verifier_hidden"][:].astype(np.float32))
    with torch.no_grad():
        predicted = verifier.lm_head(hidden).argmax(-1).numpy()
    assert (predicted == tokens)[valid].mean() > 0.95


def test_verifier_only_tokens_reach_the_drafter_as_unk(pair, tiny_world):
    """Video-LLaVA's ids >= 32000 (its <image>, <video>, pad, padded rows) never index EventGPT's 32000 embeddings."""
    verifier, drafter = pair
    _, events = window_inputs(tiny_world, slice(0, 2))
    tokens = torch.tensor([[5618, 32000, 338, 32063, 4318], [319, 32002, 32002, 32002, 32002]])
    lengths = torch.tensor([5, 1])
    ids, valid = receivable_tokens(drafter, tokens, lengths, VICUNA_VOCAB)
    assert ids.tolist() == [[5618, 0, 338, 0, 4318], [319, 0, 0, 0, 0]]
    assert valid.tolist() == [[True] * 5, [True] + [False] * 4]
    inputs = drafter.prepare(events, QUESTIONS[:2])
    hidden = teacher_forced_hidden(drafter, inputs, tokens, lengths, VICUNA_VOCAB)
    as_unk = teacher_forced_hidden(drafter, inputs, ids, lengths, VICUNA_VOCAB)
    torch.testing.assert_close(hidden, as_unk)
    alone = teacher_forced_hidden(drafter, drafter.prepare(events[1:], QUESTIONS[1:2]), tokens[1:, :1], lengths[1:], VICUNA_VOCAB)
    torch.testing.assert_close(hidden[1, :1], alone[0], atol=1e-5, rtol=1e-5)


def test_drafter_without_pad_token_batches_like_single_rows(pair, tiny_world):
    """Vicuna has no pad token: prompts are padded with unk under mask 0, finished rows likewise."""
    _, drafter = pair
    assert drafter.tokenizer.pad_token_id is None and drafter.pad_token_id == 0
    _, events = window_inputs(tiny_world)
    inputs = drafter.prepare(events, QUESTIONS)
    assert (inputs.input_ids[inputs.attention_mask == 0] == 0).all() and (inputs.attention_mask == 0).any()
    batch = greedy_generate(drafter, inputs, 6)
    for i, q in enumerate(QUESTIONS):
        alone = greedy_generate(drafter, drafter.prepare(events[i : i + 1], [q]), 6)
        assert alone.lengths[0] == batch.lengths[i]
        n = int(alone.lengths[0])
        assert alone.tokens[0, :n].tolist() == batch.tokens[i, :n].tolist()


def test_verifier_prompt_ids_are_video_llava_processors(pair, tiny_world, monkeypatch):
    """Prompt ids of a clip against transformers' own ``VideoLlavaProcessor`` text path: its ``<video>`` expansion
    (``replace_video_token``, sized by the clip's pixel values) and its tokenizer call. Its video processor needs
    torchvision (not in our pins): the processor is built without one, and the pixel values it sizes the expansion
    by are ours (the pixels themselves are compared in the next test, where torchvision is installed)."""
    from transformers import VideoLlavaProcessor

    from eventspec.models.verifier import PROMPT

    verifier, _ = pair
    frames, _ = window_inputs(tiny_world, slice(0, 1))
    check = VideoLlavaProcessor.check_argument_for_proper_class
    monkeypatch.setattr(VideoLlavaProcessor, "check_argument_for_proper_class",
                        lambda self, name, arg: None if name == "video_processor" else check(self, name, arg))
    processor = VideoLlavaProcessor(
        image_processor=verifier.image_processor, video_processor=None, tokenizer=verifier.tokenizer,
        patch_size=verifier.model.config.vision_config.patch_size,
    )  # fmt: skip
    pixels = verifier.visual_inputs(frames)["pixel_values_videos"]
    expansion = processor.replace_video_token({"pixel_values_videos": pixels}, video_idx=0)
    prompt = PROMPT.format(question=QUESTIONS[0])
    text, _ = processor.get_text_with_replacements([prompt], videos_replacements=[expansion])
    theirs = processor.tokenizer(text, return_tensors="pt")
    processor._check_special_mm_tokens(text, theirs, modalities=["video"])

    ids = verifier.prompt_ids(QUESTIONS[0])
    assert theirs["input_ids"][0].tolist() == ids
    assert ids.count(verifier.model.config.video_token_index) == len(expansion) // len(processor.video_token) > 0


def test_verifier_pixels_are_video_llava_processors(pair, tiny_world):
    """Prompt ids and pixel values of a clip against transformers' own ``VideoLlavaProcessor``, video processor
    included. That needs torchvision (not in our pins; our frames go through ``VideoLlavaImageProcessor``, the PIL
    processor the HF port used for videos): ids are equal, pixels equal up to the two bicubic resamplers
    (torchvision's vs PIL's)."""
    pytest.importorskip("torchvision", reason="VideoLlavaProcessor's video processor needs torchvision")
    from transformers import VideoLlavaProcessor, VideoLlavaVideoProcessor

    from eventspec.models.verifier import PROMPT

    verifier, _ = pair
    frames, _ = window_inputs(tiny_world, slice(0, 1))
    images = verifier.image_processor
    video = VideoLlavaVideoProcessor(**{k: getattr(images, k) for k in ("size", "crop_size", "image_mean", "image_std")})
    processor = VideoLlavaProcessor(
        image_processor=images, video_processor=video, tokenizer=verifier.tokenizer,
        patch_size=verifier.model.config.vision_config.patch_size,
    )  # fmt: skip
    theirs = processor(text=PROMPT.format(question=QUESTIONS[0]), videos=[frames[0]], return_tensors="pt")

    assert theirs["input_ids"][0].tolist() == verifier.prompt_ids(QUESTIONS[0])
    ours = verifier.visual_inputs(frames)["pixel_values_videos"]
    torch.testing.assert_close(ours, theirs["pixel_values_videos"], rtol=0, atol=0.03)


# --- hub ids through the Hugging Face cache ---------------------------------------------------------------------


@pytest.fixture
def hub_cache(real_shaped_models, tmp_path, monkeypatch):
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    snapshot = lay_out_hub_cache(cache, REPO_ID, real_shaped_models["verifier"])
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache, snapshot


def test_hub_id_resolves_to_its_cached_snapshot(hub_cache, real_shaped_models):
    cache, snapshot = hub_cache
    assert resolve_checkpoint(REPO_ID) == snapshot
    verifier = load_verifier(REPO_ID)
    assert verifier.model.config.video_token_index == 32001


def test_hub_cache_is_found_through_hf_hub_cache(hub_cache):
    """A fresh process finds the cache from the environment variable, offline, as a transformers user expects."""
    cache, snapshot = hub_cache
    env = os.environ | {"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    code = f"from eventspec.models.loading import resolve_checkpoint; print(resolve_checkpoint({REPO_ID!r}))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(snapshot)


def test_hub_id_missing_from_cache_is_named(hub_cache, real_shaped_models):
    models = extraction_config({"verifier": "LanguageBind/Video-LLaVA-13B-hf", "drafter": real_shaped_models["drafter"]})
    with pytest.raises(ModelLoadError, match=r"models.verifier.path: 'LanguageBind/Video-LLaVA-13B-hf' is neither"):
        load_pair(models["models"])


# --- bad input: clear errors before any model work -------------------------------------------------------------


def test_missing_cuda_device_is_named(real_shaped_models):
    count = torch.cuda.device_count()
    models = extraction_config(real_shaped_models, drafter={"device": f"cuda:{count}"})["models"]
    with pytest.raises(ModelLoadError, match=rf"models.drafter.device: 'cuda:{count}' asked for"):
        load_pair(models)
    with pytest.raises(ModelLoadError, match=r"models.verifier.device: 'tpu' is not a device"):
        check_device("tpu", "models.verifier.device")


def test_tokenizers_that_disagree_are_refused(real_shaped_models, tiny_models):
    models = extraction_config({"verifier": real_shaped_models["verifier"], "drafter": tiny_models["drafter"]})
    with pytest.raises(ModelLoadError) as err:
        load_pair(models["models"])
    message = str(err.value)
    assert str(real_shaped_models["verifier"]) in message and str(tiny_models["drafter"]) in message
    assert "disagree" in message


@pytest.mark.parametrize("kind", ["verifier", "drafter"])
def test_checkpoint_without_tokenizer_is_named(real_shaped_models, tmp_path, kind):
    broken = shutil.copytree(real_shaped_models[kind], tmp_path / kind)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (broken / name).unlink(missing_ok=True)
    with pytest.raises(ModelLoadError, match=rf"{broken}: no tokenizer"):
        (load_verifier if kind == "verifier" else load_drafter)(broken)


@pytest.mark.parametrize("kind,key", [("verifier", "language_model.lm_head.weight"), ("drafter", "lm_head.weight")])
def test_checkpoint_without_lm_head_is_named(real_shaped_models, tmp_path, kind, key):
    from safetensors.torch import load_file, save_file

    broken = shutil.copytree(real_shaped_models[kind], tmp_path / kind)
    weights = load_file(broken / "model.safetensors")
    del weights[key]
    save_file(weights, str(broken / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ModelLoadError, match="lm_head") as err:
        (load_verifier if kind == "verifier" else load_drafter)(broken)
    assert str(broken) in str(err.value)


@pytest.mark.parametrize(
    ("flags", "size", "markers"),
    [({"mm_use_im_start_end": True}, 32002, [32000, 32001]), ({"mm_use_im_patch_token": True}, 32001, None)],
)
def test_drafter_gets_eventgpts_tokens_and_resized_embeddings(real_shaped_models, tmp_path, flags, size, markers):
    """As EventGPT's inference: ``<ev_patch>`` / the markers added to the tokenizer, embeddings resized to it."""
    drafter_dir = shutil.copytree(real_shaped_models["drafter"], tmp_path / "drafter")
    config = json.loads((drafter_dir / "config.json").read_text()) | flags
    (drafter_dir / "config.json").write_text(json.dumps(config))

    drafter = load_drafter(drafter_dir)

    assert len(drafter.tokenizer) == size and drafter.model.config.vocab_size == size
    assert drafter.embed.weight.shape[0] == drafter.lm_head.weight.shape[0] == size
    ids = drafter.prompt_ids("What is shown in this image?")
    first, last = ids.index(EVENT_TOKEN_INDEX), len(ids) - 1 - ids[::-1].index(EVENT_TOKEN_INDEX)
    assert markers is None or [ids[first - 1], ids[last + 1]] == markers


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("quant", ["none", "4bit"])
def test_extraction_on_cuda(tiny_world, real_shaped_models, tmp_path, quant):
    """Both models straight onto the GPU (``cuda`` and ``cuda:0`` spellings), plain and 4-bit, end to end."""
    devices = {"verifier": {"device": "cuda", "quant": quant}, "drafter": {"device": "cuda:0", "quant": quant}}
    cfg = extraction_config(real_shaped_models, **devices)
    samples, digest = tiny_world[1]["test"]
    out = extract_features(cfg, "test", samples, digest, tmp_path / "f.zarr")
    assert zarr.open_group(out, mode="r").attrs["n_committed"] == 3 * 2
    verifier, drafter = load_pair(cfg["models"])
    for backend in (verifier, drafter):
        assert {p.device.type for p in backend.model.parameters()} == {"cuda"}


def test_lm_head_is_read_from_the_checkpoint_files_by_hub_id(pair, hub_cache, real_shaped_models):
    """Stage 0 on the real key layout, through a cached hub id: the head the loaded model computes with."""
    from eventspec.lm_head import read_lm_head

    verifier, _ = pair
    head = read_lm_head(REPO_ID)
    assert head.shape == (32064, verifier.hidden_size)
    torch.testing.assert_close(head.float(), verifier.lm_head.weight.float())


@pytest.mark.parametrize("vision_dtype, expected", [("bfloat16", torch.bfloat16), ("float32", torch.float32)])
def test_drafter_tower_and_projector_run_in_bfloat16_as_eventgpts_code(real_shaped_models, tiny_world, vision_dtype,
                                                                      expected):
    """EventGPT builds its CLIP tower and projector in bfloat16 whatever the LLM's dtype and feeds them bfloat16
    pixels (the default, ``models.drafter.vision_dtype``), or in the dtype the setting names."""
    drafter = load_drafter(real_shaped_models["drafter"], "float32", vision_dtype=vision_dtype)
    inner = drafter.model.model
    assert {p.dtype for m in (inner.visual_tower, inner.visual_projector) for p in m.parameters()} == {expected}
    assert {p.dtype for p in (*inner.layers.parameters(), *inner.feature_adaptor.parameters())} == {torch.float32}
    seen = []
    inner.visual_tower.register_forward_pre_hook(lambda module, args: seen.append(args[0].dtype))
    frames, events = window_inputs(tiny_world, slice(0, 1))
    drafter.prefill(drafter.prepare(events, ["What is shown in this image?"]))
    assert seen == [expected]
