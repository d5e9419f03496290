"""EventGPT drafter architecture: checkpoint layout, save/load, batched generation, visual conditioning, errors."""

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, CLIPConfig, DynamicCache, LlamaConfig, LlamaForCausalLM

from eventspec.models.loading import ModelLoadError
from eventspec.models.eventgpt import (
    EVENT_TOKEN_INDEX,
    MODEL_TYPE,
    EventGPTConfig,
    EventGPTForCausalLM,
    build_prompt,
    clip_tower_dir,
    event_image_processor,
    event_pixel_values,
    event_prompt_ids,
    expand_event_placeholder,
    load_eventgpt,
    num_event_tokens,
    prepare_tokenizer,
    spatio_temporal_aggregate,
    tiny_eventgpt_config,
    tokenizer_event_token,
)
from real_checkpoints import (
    CLIP,
    EVENTGPT_PROMPT,
    LLM,
    TOWER_PREFIX,
    eventgpt_prompt_ids,
    original_shapes,
    vicuna_tokenizer,
    write_original_checkpoint,
)

VOCAB, EVENT_ID, PAD, BOS, EOS = 64, 63, 0, 1, 2
CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073])
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711])


def tiny_config() -> EventGPTConfig:
    config = tiny_eventgpt_config(
        vocab_size=VOCAB, event_token_index=EVENT_ID, pad_token_id=PAD, bos_token_id=BOS, eos_token_id=EOS
    )
    # Larger random weights than the default 0.02 give peaked logits, so greedy tokens depend on the input.
    config.initializer_range = 0.2
    return config


@pytest.fixture(scope="module")
def model() -> EventGPTForCausalLM:
    torch.manual_seed(0)
    return EventGPTForCausalLM(tiny_config()).eval()


def prompt_ids(config: EventGPTConfig, before: list[int], after: list[int]) -> list[int]:
    return [BOS, *before, *[config.event_token_index] * num_event_tokens(config), *after]


def random_events(config: EventGPTConfig, batch: int, seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(batch, config.num_event_chunks, 48, 80, 3), dtype=np.uint8)
    return event_pixel_values(images, config)

# --- EventGPT's checkpoint layout: real_checkpoints.py writes it key by key ---------------------------------------


def ours(original_key: str) -> str:
    """Our parameter name for an original key (transformers v5 CLIPVisionModel has no `vision_model.` level)."""
    return original_key.replace("visual_tower.visual_tower.vision_model.", "visual_tower.visual_tower.")


# --- 1. an EventGPT-layout checkpoint loads completely and exactly ------------------------------------------------


def test_original_layout_checkpoint_loads_exactly(tmp_path):
    checkpoint, written, _ = write_original_checkpoint(tmp_path)

    model, info = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32, output_loading_info=True)

    assert isinstance(model, EventGPTForCausalLM)
    assert info["missing_keys"] == set() and info["unexpected_keys"] == set() and info["mismatched_keys"] == set()
    loaded = model.state_dict()
    assert set(loaded) == {ours(k) for k in written}
    for key, tensor in written.items():
        assert torch.equal(loaded[ours(key)], tensor), key
    # The tower's architecture came from the local CLIP directory named by mm_visual_tower.
    assert model.config.vision_config.hidden_size == CLIP["hidden"]
    assert num_event_tokens(model.config) == 5 + (CLIP["image"] // CLIP["patch"]) ** 2 + 1
    assert model.config.event_token_index == -200

    strict = load_eventgpt(checkpoint)
    assert all(torch.equal(strict.state_dict()[ours(k)], t) for k, t in written.items())


def test_clip_weights_come_from_mm_visual_tower_when_not_in_checkpoint(tmp_path):
    checkpoint, written, clip_weights = write_original_checkpoint(tmp_path, with_tower=False)

    model = load_eventgpt(checkpoint)

    loaded = model.state_dict()
    for key, tensor in clip_weights.items():
        assert torch.equal(loaded["model.visual_tower.visual_tower." + key.removeprefix("vision_model.")], tensor)
    for key, tensor in written.items():
        assert torch.equal(loaded[key], tensor)


def test_out_of_vocabulary_event_index_runs(tmp_path):
    """EventGPT's own configs carry no event token: the default index -200 lies outside the vocabulary."""
    checkpoint, _, _ = write_original_checkpoint(tmp_path)
    model = load_eventgpt(checkpoint)
    ids = torch.tensor([[BOS, 5, *[-200] * num_event_tokens(model.config), 6]])
    pixels = torch.randn(1, 5, 3, CLIP["image"], CLIP["image"])

    logits = model(input_ids=ids, event_pixel_values=pixels).logits

    assert logits.shape == (1, ids.shape[1], LLM["vocab"]) and torch.isfinite(logits).all()


# --- 2. save_pretrained / from_pretrained round trip ------------------------------------------------------------


def test_save_load_round_trip_keeps_logits_and_layout(model, tmp_path):
    config = model.config
    ids = torch.tensor([prompt_ids(config, [5, 6], [7, 8, 9])])
    pixels = random_events(config, 1, seed=1)
    model.save_pretrained(tmp_path)

    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path)

    assert isinstance(reloaded, EventGPTForCausalLM)
    with torch.no_grad():
        before = model(input_ids=ids, event_pixel_values=pixels).logits
        after = reloaded(input_ids=ids, event_pixel_values=pixels).logits
    assert torch.equal(before, after)
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == MODEL_TYPE
    with safe_open(str(tmp_path / "model.safetensors"), "pt") as saved:
        keys = set(saved.keys())
    assert {
        TOWER_PREFIX + "embeddings.class_embedding",
        TOWER_PREFIX + "encoder.layers.0.self_attn.q_proj.weight",
        "model.visual_projector.0.weight",
        "model.visual_projector.2.weight",
        "model.feature_adaptor.weight",
        "model.layers.0.self_attn.q_proj.weight",
        "lm_head.weight",
    } <= keys


# --- 3. batched greedy generation with left padding ---------------------------------------------------------------


def test_left_padded_batch_generates_like_single_samples(model):
    config = model.config
    prompts = [prompt_ids(config, [5], [7, 8, 9, 10, 11]), prompt_ids(config, [12, 13, 14], [15])]
    prompts.append(prompt_ids(config, [], [20, 21, 22, 23, 24, 25, 26]))
    pixels = random_events(config, len(prompts), seed=2)
    width = max(len(p) for p in prompts)
    input_ids = torch.tensor([[PAD] * (width - len(p)) + p for p in prompts])
    attention_mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    greedy = {"max_new_tokens": 8, "do_sample": False, "pad_token_id": PAD}

    with torch.no_grad():
        batch = model.generate(
            input_ids=input_ids, attention_mask=attention_mask, event_pixel_values=pixels, **greedy
        )
        padded_logits = model(input_ids=input_ids, attention_mask=attention_mask, event_pixel_values=pixels).logits
        for row, prompt in enumerate(prompts):
            ids = torch.tensor([prompt])
            single = model.generate(
                input_ids=ids, attention_mask=torch.ones_like(ids), event_pixel_values=pixels[row : row + 1], **greedy
            )
            assert batch[row, width:].tolist() == single[0, len(prompt) :].tolist()
            alone = model(input_ids=ids, event_pixel_values=pixels[row : row + 1]).logits
            torch.testing.assert_close(padded_logits[row, -1], alone[0, -1], rtol=1e-4, atol=1e-5)
    assert len({tuple(row) for row in batch[:, width:].tolist()}) > 1


# --- 4. the visual tokens condition the output --------------------------------------------------------------------


def test_event_images_condition_the_logits(model):
    config = model.config
    ids = torch.tensor([prompt_ids(config, [5, 6], [7, 8])])
    first, second = random_events(config, 1, seed=3), random_events(config, 1, seed=4)

    with torch.no_grad():
        a = model(input_ids=ids, event_pixel_values=first).logits[0, -1]
        a_again = model(input_ids=ids, event_pixel_values=first).logits[0, -1]
        b = model(input_ids=ids, event_pixel_values=second).logits[0, -1]
        cached = model(input_ids=ids, event_features=model.get_event_features(first)).logits[0, -1]

    assert torch.equal(a, a_again)
    assert (a - b).abs().max() > 1e-3
    torch.testing.assert_close(cached, a)


# --- 5. bad checkpoints and bad inputs give clear errors ----------------------------------------------------------


def test_missing_weight_is_named(tmp_path):
    checkpoint, _, _ = write_original_checkpoint(tmp_path, drop=("model.feature_adaptor.bias",))

    with pytest.raises(ValueError, match="missing") as err:
        load_eventgpt(checkpoint)

    assert str(checkpoint) in str(err.value) and "model.feature_adaptor.bias" in str(err.value)


def test_wrong_shape_is_named(tmp_path):
    checkpoint, written, _ = write_original_checkpoint(tmp_path)
    written["model.feature_adaptor.bias"] = torch.zeros(7)
    save_file(written, str(checkpoint / "model.safetensors"), metadata={"format": "pt"})

    with pytest.raises(ValueError, match="shape-mismatched") as err:
        load_eventgpt(checkpoint)

    assert str(checkpoint) in str(err.value) and "model.feature_adaptor.bias (checkpoint (7,)" in str(err.value)


def test_other_architecture_is_rejected(tmp_path):
    llama = LlamaConfig(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2
    )
    LlamaForCausalLM(llama).save_pretrained(tmp_path)

    with pytest.raises(ValueError, match="model_type='llama'") as err:
        load_eventgpt(tmp_path)

    assert str(tmp_path) in str(err.value) and MODEL_TYPE in str(err.value)


def test_missing_directory_config_and_weights(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_eventgpt(tmp_path / "nowhere")
    with pytest.raises(ModelLoadError, match="config.json"):
        load_eventgpt(tmp_path)
    tiny_config().save_pretrained(tmp_path)
    with pytest.raises(ModelLoadError, match="no weights") as err:
        load_eventgpt(tmp_path)
    assert str(tmp_path) in str(err.value)


def test_wrong_number_of_event_tokens_is_an_error(model):
    config = model.config
    ids = torch.tensor([prompt_ids(config, [5], [6])[:-3]])

    with pytest.raises(ValueError, match="event tokens per sample"):
        model(input_ids=ids, event_pixel_values=random_events(config, 1, seed=5))


# --- helpers and interface ------------------------------------------------------------------------------------


def test_visual_token_counts():
    assert num_event_tokens(tiny_config()) == 5 + 64 + 1
    assert num_event_tokens(EventGPTConfig()) == 5 + 576 + 1


@pytest.fixture(scope="module")
def vicuna():
    return vicuna_tokenizer()


def test_prompt_is_eventgpts_with_the_markers_always():
    """``prepare_event_prompt`` writes ``<ev_start><event><ev_end>`` whatever ``mm_use_im_start_end`` says."""
    assert build_prompt("What is shown in this image?") == EVENTGPT_PROMPT


def test_prompt_ids_splice_the_placeholder_between_the_marker_texts(vicuna):
    """Without marker tokens (the released config) the markers are text around the spliced -200."""
    config = tiny_config()

    ids = tokenizer_event_token(build_prompt("What is shown in this image?"), vicuna)

    assert ids == eventgpt_prompt_ids()
    expanded = event_prompt_ids("What is shown in this image?", config, vicuna)
    at = ids.index(EVENT_TOKEN_INDEX)
    assert expanded == ids[:at] + [config.event_token_index] * num_event_tokens(config) + ids[at + 1 :]


@pytest.mark.parametrize(
    ("flags", "added"),
    [
        ({}, ["<ev_patch>"]),  # a config without the key: EventGPT adds <ev_patch>
        ({"mm_use_im_patch_token": True}, ["<ev_patch>"]),
        ({"mm_use_im_patch_token": False}, []),
        ({"mm_use_im_patch_token": False, "mm_use_im_start_end": True}, ["<ev_start>", "<ev_end>"]),
        ({"mm_use_im_start_end": True}, ["<ev_patch>", "<ev_start>", "<ev_end>"]),
    ],
)
def test_tokenizer_gets_eventgpts_tokens(flags, added):
    tokenizer = vicuna_tokenizer()

    size = prepare_tokenizer(tokenizer, flags)

    assert size == len(tokenizer) == 32000 + len(added)
    assert tokenizer.convert_ids_to_tokens(list(range(32000, size))) == added


def test_marker_tokens_surround_the_placeholder():
    tokenizer = vicuna_tokenizer()
    prepare_tokenizer(tokenizer, {"mm_use_im_patch_token": False, "mm_use_im_start_end": True})

    ids = tokenizer_event_token(build_prompt("What is shown in this image?"), tokenizer)

    at = ids.index(EVENT_TOKEN_INDEX)
    assert ids[at - 1 : at + 2] == [32000, EVENT_TOKEN_INDEX, 32001]


def test_prompt_without_exactly_one_placeholder_is_an_error():
    config = tiny_config()
    for ids, count in (([1, 5, 6], 0), ([1, EVENT_TOKEN_INDEX, 5, EVENT_TOKEN_INDEX], 2)):
        with pytest.raises(ValueError, match=rf"exactly one event placeholder \(-200\), got {count}"):
            expand_event_placeholder(ids, config)


def test_event_pixel_values_resizes_and_normalises():
    config = tiny_config()
    images = np.zeros((2, config.num_event_chunks, 48, 80, 3), dtype=np.uint8)
    images[1] = 255

    pixels = event_pixel_values(images, config)

    assert pixels.shape == (2, 5, 3, 64, 64) and pixels.dtype == torch.float32
    for sample, value in ((0, 0.0), (1, 1.0)):
        expected = torch.tensor((value - CLIP_MEAN) / CLIP_STD, dtype=torch.float32)
        torch.testing.assert_close(pixels[sample].mean(dim=(0, 2, 3)), expected, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="num_event_chunks"):
        event_pixel_values(images[:, :3], config)


def test_spatio_temporal_aggregate_values():
    """Two chunks x three positions, values by hand: temporal tokens (chunk means) first, then spatial (position means)."""
    features = torch.tensor([[[[1.0], [3.0], [8.0]], [[5.0], [11.0], [2.0]]]])

    tokens = spatio_temporal_aggregate(features)

    assert tokens[0, :, 0].tolist() == [4.0, 6.0, 3.0, 7.0, 5.0]


def test_pipeline_interface(model):
    config = model.config
    ids = torch.tensor([prompt_ids(config, [5], [6, 7])])

    with torch.no_grad():
        out = model(input_ids=ids, event_pixel_values=random_events(config, 1, seed=6), output_hidden_states=True)
        step = model(input_ids=torch.tensor([[9]]), past_key_values=out.past_key_values, use_cache=True)

    assert model.llm_hidden_size == config.hidden_size == 128
    assert model.get_input_embeddings() is model.model.embed_tokens
    assert model.get_output_embeddings() is model.lm_head
    assert isinstance(out.past_key_values, DynamicCache)
    assert out.past_key_values.get_seq_length() == ids.shape[1] + 1
    # hidden_states[-1] is the final-normed state whose LM-head projection is the logits.
    torch.testing.assert_close(model.lm_head(out.hidden_states[-1]), out.logits)
    assert step.logits.shape == (1, 1, VOCAB)


def test_event_images_are_cut_back_to_their_canvas():
    """A stored (sensor-padded) image is processed as EventGPT processes its canvas: here a 2 x 3 all-red canvas
    fills the whole crop, so every pixel is red, not the white of the padding."""
    config = tiny_config()
    images = np.full((1, config.num_event_chunks, 48, 80, 3), 255, dtype=np.uint8)
    images[:, :, :2, :3] = (255, 0, 0)

    pixels = event_pixel_values(images, config)

    expected = torch.tensor((np.array([1.0, 0.0, 0.0]) - CLIP_MEAN) / CLIP_STD, dtype=torch.float32)
    torch.testing.assert_close(pixels.amin(dim=(0, 1, 3, 4)), expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(pixels.amax(dim=(0, 1, 3, 4)), expected, rtol=0, atol=1e-5)


def test_feature_adaptor_is_built_whatever_the_key_says(tmp_path):
    """EventGPT builds the adaptor when its config has the key at all (and always applies it)."""
    checkpoint, written, _ = write_original_checkpoint(tmp_path, event_feature_adaptor=False)

    model = load_eventgpt(checkpoint)

    assert torch.equal(model.model.feature_adaptor.weight, written["model.feature_adaptor.weight"])
    pixels = torch.randn(1, 5, 3, CLIP["image"], CLIP["image"])
    projected = model.model.visual_projector(model.model.visual_tower(pixels[0]))
    adapted = model.model.feature_adaptor(projected)
    torch.testing.assert_close(model.get_event_features(pixels)[0, 5:], adapted.mean(dim=0))


def test_hub_id_tower_resolves_through_the_cache(tmp_path, monkeypatch):
    """``mm_visual_tower`` as a hub id (as EventGPT's from_pretrained takes it): the tower's weights and its own
    preprocessor settings come from the cached snapshot."""
    from huggingface_hub import constants

    from real_checkpoints import lay_out_hub_cache

    repo_id = "openai/clip-vit-large-patch14-336"
    checkpoint, _, clip_weights = write_original_checkpoint(tmp_path, with_tower=False, mm_visual_tower=repo_id)
    clip_dir = tmp_path / "clip-vit-tiny"
    (clip_dir / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "CLIPImageProcessor", "do_resize": True, "size": {"shortest_edge": 40},
        "do_center_crop": True, "crop_size": {"height": 32, "width": 32}, "do_rescale": True,
        "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.25, 0.25, 0.25],
        "resample": 3, "do_convert_rgb": True,
    }))  # fmt: skip
    cache = tmp_path / "hub"
    snapshot = lay_out_hub_cache(cache, repo_id, clip_dir)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))

    assert clip_tower_dir(repo_id) == snapshot
    model = load_eventgpt(checkpoint)
    loaded = model.state_dict()
    for key, tensor in clip_weights.items():
        assert torch.equal(loaded["model.visual_tower.visual_tower." + key.removeprefix("vision_model.")], tensor)
    processor = event_image_processor(model.config)
    assert processor.size == {"shortest_edge": 40} and processor.crop_size == {"height": 32, "width": 32}
    white = np.full((1, 5, 48, 80, 3), 255, dtype=np.uint8)
    white[:, :, 47, 79] = 0  # one black event pixel at the far corner keeps the whole sensor as the canvas
    pixels = event_pixel_values(white, model.config, processor)
    assert pixels.shape == (1, 5, 3, 32, 32)
    assert torch.allclose(pixels, torch.full_like(pixels, (1.0 - 0.5) / 0.25))  # the tower's mean and std


def test_tower_outside_cache_and_disk_falls_back_to_clip_defaults(tmp_path):
    config = tiny_config()
    config.mm_visual_tower = "openai/clip-vit-large-patch14-336"
    assert clip_tower_dir(config.mm_visual_tower, tmp_path) is None
    processor = event_image_processor(config)
    assert processor.crop_size == {"height": 64, "width": 64}
    np.testing.assert_allclose(processor.image_mean, CLIP_MEAN)
