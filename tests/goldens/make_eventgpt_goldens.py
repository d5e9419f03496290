"""Make tests/goldens/eventgpt_official.json with EventGPT's own code (github XduSyL/EventGPT), once, outside this
repository's environment. Nothing of EventGPT is copied here: this script imports it from a checkout.

    python3.11 -m venv /tmp/egpt-venv
    /tmp/egpt-venv/bin/pip install torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl transformers==4.37.2 \
        tokenizers==0.15.2 numpy==1.26.4 pillow==10.4.0 sentencepiece==0.1.99 protobuf==5.28.2
    # EventGPT's requirements.txt pins, but torch 2.1.2 -> the local 2.13.0 CPU wheel (only its bfloat16 cast of
    # the pixels is used; the CLIP processor computes in numpy)
    git -C <EventGPT clone> archive HEAD common dataset model/__init__.py | tar -x -C /tmp/egpt-src
    git -C <EventGPT clone> rev-parse HEAD > /tmp/egpt-src/COMMIT   # recorded in the output
    /tmp/egpt-venv/bin/python tests/goldens/make_eventgpt_goldens.py /tmp/egpt-src tests/goldens/eventgpt_official.json

It runs EventGPT's ``get_event_images_list`` (5 chunks), ``prepare_event_prompt`` (``eventgpt_v1``) and
``tokenizer_event_token`` with the slow ``LlamaTokenizer`` its inference loads (``use_fast=False``) on the tiny
Vicuna-shaped sentencepiece model of tests/sentencepiece_fixtures.py, tokens added as its inference adds them, and
``CLIPImageProcessor`` with openai/clip-vit-large-patch14-336's preprocessor_config.json values (the tower's processor
``process_event_data`` applies), on tests/official_goldens.py's seeded stream.
"""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import transformers
from transformers import CLIPImageProcessor, LlamaTokenizer

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))
from official_goldens import N_CHUNKS, PIXEL_PROBES, QUESTION, image_digest, synthetic_event_stream  # noqa: E402
from sentencepiece_fixtures import train_vicuna_like_model  # noqa: E402

CLIP_336 = {"crop_size": 336, "do_center_crop": True, "do_normalize": True, "do_resize": True,
            "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
            "resample": 3, "size": 336}
"""openai/clip-vit-large-patch14-336's preprocessor_config.json (the hub file's values)."""


def main(source: Path, out: Path) -> None:
    sys.path.insert(0, str(source))
    from common.common import get_event_images_list, tokenizer_event_token
    from dataset.constants import (DEFAULT_EV_END_TOKEN, DEFAULT_EV_START_TOKEN, DEFAULT_EVENT_PATCH_TOKEN,
                                   EVENT_TOKEN_INDEX)
    from dataset.conversation import prepare_event_prompt

    stream = synthetic_event_stream()
    images = get_event_images_list(stream, N_CHUNKS)
    processor = CLIPImageProcessor(**CLIP_336)
    chunks = []
    for image in images:
        pixels = processor(image, return_tensors="pt")["pixel_values"][0]
        chunks.append({"shape": list(image.shape), "sha256": image_digest(image),
                       "pixels": [float(pixels[c, r, k]) for c, r, k in PIXEL_PROBES],
                       "pixels_bfloat16": [float(pixels.to(torch.bfloat16)[c, r, k]) for c, r, k in PIXEL_PROBES]})
    prompt = prepare_event_prompt(QUESTION, "eventgpt_v1")
    prompt_ids = {}
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "tokenizer.model").write_bytes(train_vicuna_like_model())
        for start_end in (False, True):  # the config's mm_use_im_start_end; mm_use_im_patch_token true
            tokenizer = LlamaTokenizer.from_pretrained(tmp)  # the slow tokenizer, as use_fast=False loads it
            tokenizer.add_tokens([DEFAULT_EVENT_PATCH_TOKEN], special_tokens=True)
            if start_end:
                tokenizer.add_tokens([DEFAULT_EV_START_TOKEN, DEFAULT_EV_END_TOKEN], special_tokens=True)
            prompt_ids[f"mm_use_im_start_end={start_end}"] = tokenizer_event_token(prompt, tokenizer,
                                                                                    EVENT_TOKEN_INDEX)
    commit = subprocess.run(["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True, text=True)
    commit = commit.stdout.strip() or ((source / "COMMIT").read_text().strip() if (source / "COMMIT").is_file() else "")
    golden = {
        "provenance": {
            "made_by": "tests/goldens/make_eventgpt_goldens.py (its docstring has the exact commands)",
            "eventgpt_repository": "github XduSyL/EventGPT", "eventgpt_commit": commit or None,
            "functions": ["common.common.get_event_images_list", "dataset.conversation.prepare_event_prompt",
                          "common.common.tokenizer_event_token", "transformers.CLIPImageProcessor"],
            "transformers": transformers.__version__, "torch": torch.__version__, "numpy": np.__version__,
        },
        "prompt": prompt, "prompt_ids": prompt_ids, "pixel_probes": PIXEL_PROBES, "chunks": chunks,
    }
    out.write_text(json.dumps(golden, indent=1) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
