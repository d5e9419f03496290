"""Both backends: greedy decoding equals transformers generate, and the hidden-state convention holds."""

import numpy as np
import pytest
import torch
import zarr

from eventspec.models.backend import greedy_generate, teacher_forced_hidden
from eventspec.models.drafter import load_drafter
from eventspec.models.loading import ModelLoadError
from eventspec.models.verifier import load_verifier

QUESTIONS = ["What objects are in the scene?", "Is it day or night?", "Describe the scene."]


def load(kind, path, **kw):
    return (load_verifier if kind == "verifier" else load_drafter)(path, **kw)


def lengths_of(tokens: torch.Tensor, eos: int) -> list[int]:
    """Tokens up to and including the first EOS, per row (the whole row when it has none)."""
    return [row.index(eos) + 1 if eos in row else len(row) for row in tokens.tolist()]


def assert_same_greedy(ours, ref: torch.Tensor, eos: int, max_new_tokens: int):
    """Our greedy generation equals transformers' generate: same tokens, same lengths."""
    ref_lengths = lengths_of(ref, eos)
    assert ours.lengths.tolist() == ref_lengths
    assert max(ref_lengths) == ref.shape[1] <= max_new_tokens
    for i, n in enumerate(ref_lengths):
        assert ours.tokens[i, :n].tolist() == ref[i, :n].tolist()


def visual(tiny_world, kind, rows=slice(0, 3)):
    g = zarr.open_group(tiny_world[1]["test"][0], mode="r")
    return np.asarray(g["frames" if kind == "verifier" else "event_images"][rows])


@pytest.mark.parametrize("kind", ["verifier", "drafter"])
def test_greedy_equals_transformers_generate(tiny_world, tiny_models, kind):
    backend = load(kind, tiny_models[kind])
    inputs = backend.prepare(visual(tiny_world, kind), QUESTIONS)
    ours = greedy_generate(backend, inputs, 12)
    ref = backend.model.generate(
        input_ids=inputs.input_ids, attention_mask=inputs.attention_mask, **inputs.visual,
        max_new_tokens=12, do_sample=False, pad_token_id=backend.pad_token_id,
    )[:, inputs.input_ids.shape[1]:]
    assert_same_greedy(ours, ref, backend.eos_token_id, 12)


@pytest.mark.parametrize("kind", ["verifier", "drafter"])
def test_hidden_convention_and_batch_independence(tiny_world, tiny_models, kind):
    backend = load(kind, tiny_models[kind])
    images = visual(tiny_world, kind)
    batch = greedy_generate(backend, backend.prepare(images, QUESTIONS), 10)
    logits = backend.lm_head(batch.hidden)
    valid = torch.arange(batch.tokens.shape[1])[None] < batch.lengths[:, None]
    assert (logits.argmax(-1) == batch.tokens)[valid].all()
    for i, q in enumerate(QUESTIONS):
        alone = greedy_generate(backend, backend.prepare(images[i : i + 1], [q]), 10)
        n = int(alone.lengths[0])
        assert alone.tokens[0, :n].tolist() == batch.tokens[i, :n].tolist()
        torch.testing.assert_close(alone.hidden[0, :n], batch.hidden[i, :n], atol=1e-4, rtol=1e-4)


def test_crop_and_forward_many_tokens(tiny_world, tiny_models):
    backend = load("verifier", tiny_models["verifier"])
    inputs = backend.prepare(visual(tiny_world, "verifier", slice(0, 1)), QUESTIONS[:1])
    tokens = torch.randint(10, len(backend.tokenizer), (1, 5), generator=torch.Generator().manual_seed(0))
    state = backend.prefill(inputs)
    prompt_len = state.length
    at_once, _ = backend.forward(tokens, state)
    one_by_one = backend.prefill(inputs)
    steps = [backend.forward(tokens[:, i : i + 1], one_by_one)[0] for i in range(5)]
    torch.testing.assert_close(at_once, torch.cat(steps, 1), atol=1e-5, rtol=1e-5)
    backend.crop(state, prompt_len + 2)
    assert state.length == prompt_len + 2
    again, _ = backend.forward(tokens[:, 2:], state)
    torch.testing.assert_close(again, at_once[:, 2:], atol=1e-5, rtol=1e-5)


def test_teacher_forcing_reproduces_own_hidden_states(tiny_world, tiny_models):
    backend = load("drafter", tiny_models["drafter"])
    inputs = backend.prepare(visual(tiny_world, "drafter"), QUESTIONS)
    gen = greedy_generate(backend, inputs, 8)
    tf = teacher_forced_hidden(backend, inputs, gen.tokens, gen.lengths, len(backend.tokenizer))
    valid = torch.arange(gen.tokens.shape[1])[None] < gen.lengths[:, None]
    torch.testing.assert_close(tf[valid], gen.hidden[valid], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("quant", ["4bit", "8bit"])
@pytest.mark.parametrize("kind", ["verifier", "drafter"])
def test_quantized_loading_generates(tiny_world, tiny_models, kind, quant):
    backend = load(kind, tiny_models[kind], quant=quant)
    assert any("Linear" in type(m).__name__ and ("4bit" in type(m).__name__ or "8bit" in type(m).__name__)
               for m in backend.model.modules())
    gen = greedy_generate(backend, backend.prepare(visual(tiny_world, kind, slice(0, 2)), QUESTIONS[:2]), 5)
    assert gen.tokens.shape[0] == 2 and gen.lengths.tolist() == lengths_of(gen.tokens, backend.eos_token_id)
    logits = backend.lm_head(gen.hidden.to(backend.lm_head.weight.dtype))
    valid = torch.arange(gen.tokens.shape[1])[None] < gen.lengths[:, None]
    assert (logits.argmax(-1) == gen.tokens)[valid].all()


def test_bad_model_paths(tmp_path, tiny_models):
    with pytest.raises(ModelLoadError, match=r"nope: model directory missing"):
        load_verifier(tmp_path / "nope")
    with pytest.raises(ModelLoadError, match=r"architecture 'EventChat_llama', expected 'video_llava'"):
        load_verifier(tiny_models["drafter"])
    with pytest.raises(ModelLoadError, match=r"architecture 'video_llava', expected"):
        load_drafter(tiny_models["verifier"])
    with pytest.raises(ModelLoadError, match=r"quant: unknown mode '3bit'"):
        load_verifier(tiny_models["verifier"], quant="3bit")


def test_missing_weights_are_named(tmp_path, tiny_models):
    import shutil

    from safetensors.torch import load_file, save_file

    broken = tmp_path / "verifier"
    shutil.copytree(tiny_models["verifier"], broken)
    weights = load_file(broken / "model.safetensors")
    dropped = sorted(weights)[0]
    del weights[dropped]
    save_file(weights, broken / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ModelLoadError, match=r"verifier: weights do not match .*missing_keys"):
        load_verifier(broken)


@pytest.fixture(scope="module")
def tiny_llava_drafter(tiny_models, tmp_path_factory):
    """An HF Llava checkpoint as drafter, sharing the toy tokenizer."""
    from transformers import AutoTokenizer, CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    tok = AutoTokenizer.from_pretrained(tiny_models["drafter"])
    vision = CLIPVisionConfig(image_size=32, patch_size=8, hidden_size=32, intermediate_size=64,
                              num_hidden_layers=1, num_attention_heads=2)
    text = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                       num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
                       bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_index=tok.convert_tokens_to_ids("<image>"),
                         vision_feature_layer=-1, image_seq_length=16)
    torch.manual_seed(1)
    out = tmp_path_factory.mktemp("llava") / "drafter"
    LlavaForConditionalGeneration(config).save_pretrained(out)
    tok.save_pretrained(out)
    CLIPImageProcessorPil(size={"height": 32, "width": 32}, crop_size={"height": 32, "width": 32},
                          do_center_crop=False).save_pretrained(out)
    return out


def test_llava_checkpoint_as_drafter(tiny_world, tiny_llava_drafter):
    from eventspec.models.drafter import LlavaDrafterBackend

    backend = load_drafter(tiny_llava_drafter)
    assert isinstance(backend, LlavaDrafterBackend) and backend.num_visual_tokens == 16
    inputs = backend.prepare(visual(tiny_world, "drafter"), QUESTIONS)
    ours = greedy_generate(backend, inputs, 8)
    ref = backend.model.generate(input_ids=inputs.input_ids, attention_mask=inputs.attention_mask, **inputs.visual,
                                 max_new_tokens=8, do_sample=False, pad_token_id=backend.pad_token_id)
    assert_same_greedy(ours, ref[:, inputs.input_ids.shape[1]:], backend.eos_token_id, 8)


def test_overlay_keeps_latest_event_colour():
    from eventspec.models.drafter import overlay_event_chunks

    chunks = np.full((1, 3, 2, 2, 3), 255, dtype=np.uint8)
    chunks[0, 0, 0, 0] = (0, 0, 255)
    chunks[0, 2, 0, 0] = (255, 0, 0)
    chunks[0, 1, 1, 1] = (0, 0, 255)
    out = overlay_event_chunks(chunks)[0]
    assert tuple(out[0, 0]) == (255, 0, 0) and tuple(out[1, 1]) == (0, 0, 255) and tuple(out[0, 1]) == (255, 255, 255)


def test_lm_head_stage_writes_verifier_head(tiny_models, tmp_path):
    from safetensors import safe_open

    from eventspec.lm_head import extract_lm_head

    cfg = {"path": str(tiny_models["verifier"]), "dtype": "float32", "quant": "none", "device": "cpu"}
    extract_lm_head(cfg, tmp_path / "head.safetensors")
    backend = load_verifier(tiny_models["verifier"])
    with safe_open(tmp_path / "head.safetensors", "pt") as f:
        meta = f.metadata()
        weight = f.get_tensor("weight")
    assert weight.dtype == torch.float32
    assert (int(meta["vocab_size"]), int(meta["hidden_size"])) == tuple(backend.lm_head.weight.shape)
    torch.testing.assert_close(weight, backend.lm_head.weight)
