"""The drafter reads what EventGPT's own inference feeds it: event images, prompt ids and CLIP pixels against
goldens made once by the official code (tests/goldens/eventgpt_official.json; its provenance and the command that
made it are in the file and in tests/goldens/make_eventgpt_goldens.py). No download: the stream and the tokenizer
are rebuilt here. Also: a checkpoint that ships only a sentencepiece ``tokenizer.model`` loads, as the slow
tokenizer reads it."""

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import sentencepiece as spm
import torch
from official_goldens import N_CHUNKS, QUESTION, image_digest, synthetic_event_stream
from sentencepiece_fixtures import QUESTIONS, VICUNA_V1_SYSTEM, train_vicuna_like_model

from eventspec.event_images import event_canvas, pad_to_sensor, render_event_chunks
from eventspec.models.eventgpt import (
    EVENT_TOKEN_INDEX,
    build_prompt,
    default_clip_processor,
    event_pixel_values,
    prepare_tokenizer,
    tokenizer_event_token,
)
from eventspec.models.loading import load_tokenizer

GOLDEN = json.loads((Path(__file__).parent / "goldens" / "eventgpt_official.json").read_text())


@pytest.fixture(scope="module")
def sentencepiece_checkpoint(tmp_path_factory) -> Path:
    """A checkpoint directory holding only a Vicuna-shaped ``tokenizer.model``."""
    out = tmp_path_factory.mktemp("spm")
    (out / "tokenizer.model").write_bytes(train_vicuna_like_model())
    return out


def test_sentencepiece_only_checkpoint_loads_as_the_slow_tokenizer(sentencepiece_checkpoint):
    tokenizer = load_tokenizer(sentencepiece_checkpoint)
    model = spm.SentencePieceProcessor(model_file=str(sentencepiece_checkpoint / "tokenizer.model"))
    assert type(tokenizer).__name__ == "LlamaTokenizer"
    assert (tokenizer.unk_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id) == (0, 1, 2)
    assert tokenizer.pad_token is None and tokenizer.vocab_size == model.get_piece_size()
    for text in [VICUNA_V1_SYSTEM, *QUESTIONS, "USER: x\nASSISTANT: a car moves left."]:
        assert tokenizer(text)["input_ids"] == [model.bos_id(), *model.encode(text)], text


def test_event_images_equal_the_official_ones():
    stream = synthetic_event_stream()
    assert stream["t"].max() - stream["t"].min() < 100_000  # EventGPT refuses streams of 100 ms or more
    images = render_event_chunks(stream["x"], stream["y"], stream["p"], N_CHUNKS)
    assert [list(image.shape) for image in images] == [c["shape"] for c in GOLDEN["chunks"]]
    assert [image_digest(image) for image in images] == [c["sha256"] for c in GOLDEN["chunks"]]
    stored = [event_canvas(pad_to_sensor(image, 640, 480)) for image in images]  # as the sample store keeps them
    assert [image_digest(image) for image in stored] == [c["sha256"] for c in GOLDEN["chunks"]]


def test_clip_pixels_equal_the_official_ones():
    stream = synthetic_event_stream()
    images = np.stack([pad_to_sensor(image, 640, 480)
                       for image in render_event_chunks(stream["x"], stream["y"], stream["p"], N_CHUNKS)])
    config = SimpleNamespace(num_event_chunks=N_CHUNKS)
    pixels = event_pixel_values(images[None], config, default_clip_processor(336))[0]
    probes = [tuple(p) for p in GOLDEN["pixel_probes"]]
    for chunk, golden in zip(pixels, GOLDEN["chunks"]):
        ours = torch.tensor([float(chunk[c, r, k]) for c, r, k in probes])
        torch.testing.assert_close(ours, torch.tensor(golden["pixels"]), rtol=0, atol=1e-5)
        ours_bf16 = [float(chunk.to(torch.bfloat16)[c, r, k]) for c, r, k in probes]
        assert ours_bf16 == golden["pixels_bfloat16"]


@pytest.mark.parametrize("start_end", [False, True])
def test_prompt_ids_equal_the_official_ones(sentencepiece_checkpoint, start_end):
    assert build_prompt(QUESTION) == GOLDEN["prompt"]
    tokenizer = load_tokenizer(sentencepiece_checkpoint)
    prepare_tokenizer(tokenizer, {"mm_use_im_start_end": start_end, "mm_use_im_patch_token": True})
    ids = tokenizer_event_token(build_prompt(QUESTION), tokenizer, EVENT_TOKEN_INDEX)
    assert ids == GOLDEN["prompt_ids"][f"mm_use_im_start_end={start_end}"]
