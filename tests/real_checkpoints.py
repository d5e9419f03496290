"""Checkpoints shaped like the published Video-LLaVA-7B-hf and EventGPT-7B, at tiny dimensions, built offline.

What matches the published checkpoints: ``config.json`` keys and values that are not sizes (model_type, token
indices, vocabulary sizes, vision feature layer and strategy, EventGPT's ``mm_*`` keys), the tokenizers (a
Vicuna-7B v1.5 / Llama vocabulary of 32000 ids: ``<unk>`` 0, ``<s>`` 1, ``</s>`` 2, byte fallback pieces
``<0x00>``..``<0xFF>`` at 3..258, the pieces of the Vicuna v1 system prompt and of a short question at their real
ids; Video-LLaVA's copy adds ``<image>`` 32000, ``<video>`` 32001, ``<pad>`` 32002, EventGPT's has no pad and no
``<event>``), and the weight key names (EventGPT's written key by key; Video-LLaVA's as transformers saves them).
Every other id holds an unreachable filler piece. Weights are random.

Sources: LanguageBind/Video-LLaVA-7B-hf config.json and added_tokens.json; the Llama tokenizer's output for the
LLaVA v1 prompt "USER: <image>\\nWhat is shown in this image? ASSISTANT:" quoted in transformers' LLaVA-NeXT
docs and LLaVA-style ``tokenizer_image_token`` goldens (a bare placeholder; EventGPT's own prompt wraps it in
``<ev_start>``/``<ev_end>`` text: ``eventgpt_prompt_ids``).
"""

import json
import re
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers import AddedToken, CLIPConfig, CLIPVisionConfig, LlamaConfig, LlamaTokenizer
from transformers import VideoLlavaConfig, VideoLlavaForConditionalGeneration, VideoLlavaImageProcessor

VICUNA_VOCAB = 32000
VIDEO_LLAVA_TEXT_VOCAB = 32064
"""Video-LLaVA-7B-hf's embedding rows: 32000 + 3 added tokens, padded to a multiple of 64."""
VIDEO_LLAVA_ADDED = {"<image>": 32000, "<video>": 32001, "<pad>": 32002}

REAL_PIECES = {
    319: "▁A", 13563: "▁chat", 1546: "▁between", 263: "▁a", 12758: "▁curious", 5199: "▁human", 322: "▁and",
    385: "▁an", 23116: "▁artificial", 21082: "▁intelligence", 20255: "▁assistant", 29889: ".", 450: "▁The",
    4076: "▁gives", 8444: "▁helpful", 29892: ",", 13173: "▁detailed", 1248: "▁pol", 568: "ite",
    6089: "▁answers", 304: "▁to", 278: "▁the", 29915: "'", 29879: "s", 5155: "▁questions", 3148: "▁US",
    1001: "ER", 29901: ":", 29871: "▁", 5618: "What", 338: "▁is", 4318: "▁shown", 297: "▁in", 445: "▁this",
    1967: "▁image", 29973: "?", 1799: "SS", 9047: "IST", 13566: "ANT",
}
"""Llama pieces at their real ids: those of the Vicuna v1 system prompt, "USER:", "ASSISTANT:" and
"What is shown in this image?"."""

EVENTGPT_V1_IDS = [
    1, 319, 13563, 1546, 263, 12758, 5199, 322, 385, 23116, 21082, 20255, 29889, 450, 20255, 4076, 8444, 29892,
    13173, 29892, 322, 1248, 568, 6089, 304, 278, 5199, 29915, 29879, 5155, 29889, 3148, 1001, 29901, 29871, -200,
    29871, 13, 5618, 338, 4318, 297, 445, 1967, 29973, 319, 1799, 9047, 13566, 29901,
]  # fmt: skip
"""Published ids of LLaVA's Vicuna v1 generation prompt for "What is shown in this image?" with a bare visual
placeholder spliced in as -200 by LLaVA's ``tokenizer_image_token`` (EventGPT's ``tokenizer_event_token`` is the
same function with ``<event>``, but its prompt holds the markers too: ``eventgpt_prompt_ids``): note the dummy-prefix ``▁`` (29871) on both sides of the placeholder and the
newline as byte piece 13."""

EVENTGPT_PROMPT = (
    "A chat between a curious human and an artificial intelligence assistant. The assistant gives helpful, detailed, "
    "and polite answers to the human's questions. USER: <ev_start><event><ev_end>\nWhat is shown in this image? "
    "ASSISTANT:"
)
"""EventGPT's prompt for "What is shown in this image?" (``prepare_event_prompt`` with ``conv_eventgpt_v1``), by hand."""


def eventgpt_prompt_ids() -> list[int]:
    """``EVENTGPT_PROMPT``'s ids on ``vicuna_tokenizer()``, by hand: ``EVENTGPT_V1_IDS`` with the markers as text
    around the placeholder. This vocabulary has no merges for them, so each is spelt one character per id (a real
    Vicuna vocabulary has longer pieces, e.g. ``▁<``); the dummy prefix ``▁`` still opens the chunk after -200."""
    vocab, _ = llama_vocabulary()
    at = EVENTGPT_V1_IDS.index(-200)
    assert EVENTGPT_V1_IDS[at - 1 : at + 3] == [29871, -200, 29871, 13]  # ": ▁", placeholder, "▁", "\n"
    spelt = [vocab[c] for c in "<ev_start>"], [vocab[c] for c in "<ev_end>"]
    return EVENTGPT_V1_IDS[:at] + spelt[0] + [-200, 29871] + spelt[1] + EVENTGPT_V1_IDS[at + 2 :]


# --- tokenizers -------------------------------------------------------------------------------------------------


def llama_vocabulary() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A 32000-piece Llama BPE vocabulary and merges: specials, byte fallback, ``REAL_PIECES``, every printable
    ASCII character, the merge chains that build each real piece left to right, unreachable fillers."""
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2} | {f"<0x{b:02X}>": 3 + b for b in range(256)}
    vocab |= {piece: i for i, piece in REAL_PIECES.items()}
    free = iter(sorted(set(range(VICUNA_VOCAB)) - set(vocab.values())))
    merges: list[tuple[str, str]] = []
    pieces = ["▁"] + [chr(c) for c in range(33, 127)]
    for piece in REAL_PIECES.values():
        pieces += [piece[:end] for end in range(2, len(piece) + 1)]
    for piece in pieces:
        if piece not in vocab:
            vocab[piece] = next(free)
    for piece in REAL_PIECES.values():
        for end in range(2, len(piece) + 1):
            if (piece[: end - 1], piece[end - 1]) not in merges:
                merges.append((piece[: end - 1], piece[end - 1]))
    for n, i in enumerate(free):
        vocab[f"▁filler{n}"] = i
    return vocab, merges


def vicuna_tokenizer() -> LlamaTokenizer:
    """Vicuna-7B v1.5's tokenizer shape: LlamaTokenizer, 32000 ids, BOS added, no pad token."""
    vocab, merges = llama_vocabulary()
    return LlamaTokenizer(vocab=vocab, merges=merges, legacy=False, add_bos_token=True, padding_side="left")


def video_llava_tokenizer() -> LlamaTokenizer:
    """Video-LLaVA-7B-hf's: Vicuna's plus ``<image>`` 32000, ``<video>`` 32001 and the pad ``<pad>`` 32002."""
    tok = vicuna_tokenizer()
    tok.add_tokens([AddedToken(t, special=True, normalized=False) for t in VIDEO_LLAVA_ADDED], special_tokens=True)
    tok.pad_token = "<pad>"
    assert {t: tok.convert_tokens_to_ids(t) for t in VIDEO_LLAVA_ADDED} == VIDEO_LLAVA_ADDED
    return tok


# --- checkpoints ------------------------------------------------------------------------------------------------

TINY_VISION = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
               "image_size": 28, "patch_size": 14, "projection_dim": 16}  # fmt: skip
TINY_TEXT = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
             "num_key_value_heads": 2}  # fmt: skip


def write_video_llava(out: Path, frames_per_clip: int, seed: int = 0) -> Path:
    """Video-LLaVA-7B-hf at tiny sizes: ``VideoLlavaConfig``'s defaults (which mirror the release: token indices
    32000/32001, vision feature layer -2, strategy "default"), text vocabulary 32064, pad 32002, its tokenizer."""
    vision = CLIPVisionConfig(**TINY_VISION)
    text = LlamaConfig(
        vocab_size=VIDEO_LLAVA_TEXT_VOCAB, max_position_embeddings=4096, pad_token_id=0, rms_norm_eps=1e-5, **TINY_TEXT
    )
    grid = vision.image_size // vision.patch_size
    config = VideoLlavaConfig(
        vision_config=vision, text_config=text, image_seq_length=grid * grid,
        video_seq_length=(grid * grid + 1) * frames_per_clip,
    )  # fmt: skip
    config.pad_token_id = VIDEO_LLAVA_ADDED["<pad>"]
    torch.manual_seed(seed)
    VideoLlavaForConditionalGeneration(config).save_pretrained(out)
    # transformers v5 saves the CLIP towers without their `vision_model.` level; the release has it.
    weights = load_file(out / "model.safetensors")
    released = {re.sub(r"^(image_tower|video_tower)\.", r"\1.vision_model.", k): t for k, t in weights.items()}
    save_file(released, str(out / "model.safetensors"), metadata={"format": "pt"})
    video_llava_tokenizer().save_pretrained(out)
    size = vision.image_size
    VideoLlavaImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size}).save_pretrained(out)
    return out


REAL_SHAPED_LLM = {"hidden": 32, "intermediate": 64, "layers": 2, "heads": 2, "vocab": VICUNA_VOCAB}


def write_eventgpt(root: Path, n_chunks: int) -> Path:
    """EventGPT-7B at tiny sizes: its config.json keys (``EventChat_llama``, ``mm_visual_tower`` naming a local
    CLIP directory, ``mm_use_im_start_end`` false, vocab 32000), its key layout, Vicuna's tokenizer."""
    extra = {} if n_chunks == 5 else {"num_event_chunks": n_chunks}  # 5 is EventGPT's (and our config's) default
    checkpoint, _, _ = write_original_checkpoint(root, llm=REAL_SHAPED_LLM, **extra)
    vicuna_tokenizer().save_pretrained(checkpoint)
    return checkpoint


def lay_out_hub_cache(cache: Path, repo_id: str, checkpoint: Path, revision: str = "0" * 40) -> Path:
    """``checkpoint``'s files in a Hugging Face hub cache as a download leaves them: blobs, a snapshot of links to
    them, ``refs/main`` naming the revision. Returns the snapshot directory."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / revision
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    for file in sorted(p for p in checkpoint.rglob("*") if p.is_file()):
        blob = repo / "blobs" / f"{file.relative_to(checkpoint).as_posix().replace('/', '_')}-blob"
        blob.write_bytes(file.read_bytes())
        link = snapshot / file.relative_to(checkpoint)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(Path("../" * (len(link.relative_to(repo).parts) - 1)) / "blobs" / blob.name)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(revision)
    return snapshot
# --- EventGPT's checkpoint layout, written key by key (also used by test_eventgpt.py) -------------------------------------------------------------

LLM = {"hidden": 64, "intermediate": 128, "layers": 2, "heads": 4, "vocab": 80}
CLIP = {"hidden": 32, "intermediate": 64, "layers": 2, "heads": 2, "image": 32, "patch": 8}


def original_config_json(clip_dir, llm: dict = LLM) -> dict:
    """config.json as EventGPT's training code saves it (EventChatConfig = LlamaConfig + mm keys, transformers 4.37)."""
    return {
        "_name_or_path": "./checkpoints/vicuna-7b-v1.5",
        "architectures": ["EventChatModel"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "event_feature_adaptor": True,
        "hidden_act": "silu",
        "hidden_size": llm["hidden"],
        "initializer_range": 0.02,
        "intermediate_size": llm["intermediate"],
        "max_position_embeddings": 4096,
        "mm_use_im_patch_token": False,
        "mm_use_im_start_end": False,
        "mm_visual_tower": str(clip_dir),
        "model_type": "EventChat_llama",
        "num_attention_heads": llm["heads"],
        "num_hidden_layers": llm["layers"],
        "num_key_value_heads": llm["heads"],
        "pad_token_id": 0,
        "pretraining_tp": 1,
        "rms_norm_eps": 1e-05,
        "rope_scaling": None,
        "rope_theta": 10000.0,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "transformers_version": "4.37.2",
        "use_cache": True,
        "vocab_size": llm["vocab"],
    }


def clip_tower_shapes(prefix: str, clip: dict = CLIP) -> dict[str, tuple[int, ...]]:
    """CLIPVisionModel keys as transformers 4.x saves them (with the `vision_model.` level)."""
    d, i, p = clip["hidden"], clip["intermediate"], clip["patch"]
    positions = (clip["image"] // p) ** 2 + 1
    shapes = {
        f"{prefix}embeddings.class_embedding": (d,),
        f"{prefix}embeddings.patch_embedding.weight": (d, 3, p, p),
        f"{prefix}embeddings.position_embedding.weight": (positions, d),
        f"{prefix}pre_layrnorm.weight": (d,),
        f"{prefix}pre_layrnorm.bias": (d,),
        f"{prefix}post_layernorm.weight": (d,),
        f"{prefix}post_layernorm.bias": (d,),
    }
    for layer in range(clip["layers"]):
        block = f"{prefix}encoder.layers.{layer}."
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            shapes[f"{block}self_attn.{proj}.weight"] = (d, d)
            shapes[f"{block}self_attn.{proj}.bias"] = (d,)
        for norm in ("layer_norm1", "layer_norm2"):
            shapes[f"{block}{norm}.weight"] = (d,)
            shapes[f"{block}{norm}.bias"] = (d,)
        shapes[f"{block}mlp.fc1.weight"] = (i, d)
        shapes[f"{block}mlp.fc1.bias"] = (i,)
        shapes[f"{block}mlp.fc2.weight"] = (d, i)
        shapes[f"{block}mlp.fc2.bias"] = (d,)
    return shapes


TOWER_PREFIX = "model.visual_tower.visual_tower.vision_model."


def original_shapes(with_tower: bool = True, llm: dict = LLM, clip: dict = CLIP) -> dict[str, tuple[int, ...]]:
    """Every tensor of an EventGPT (EventChatModel) checkpoint, by its original name."""
    d, i, v = llm["hidden"], llm["intermediate"], llm["vocab"]
    shapes = {"model.embed_tokens.weight": (v, d), "model.norm.weight": (d,), "lm_head.weight": (v, d)}
    for layer in range(llm["layers"]):
        block = f"model.layers.{layer}."
        for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
            shapes[f"{block}self_attn.{proj}.weight"] = (d, d)
        shapes[f"{block}mlp.gate_proj.weight"] = (i, d)
        shapes[f"{block}mlp.up_proj.weight"] = (i, d)
        shapes[f"{block}mlp.down_proj.weight"] = (d, i)
        shapes[f"{block}input_layernorm.weight"] = (d,)
        shapes[f"{block}post_attention_layernorm.weight"] = (d,)
    if with_tower:
        shapes.update(clip_tower_shapes(TOWER_PREFIX, clip))
    shapes.update(
        {
            "model.visual_projector.0.weight": (d, clip["hidden"]),
            "model.visual_projector.0.bias": (d,),
            "model.visual_projector.2.weight": (d, d),
            "model.visual_projector.2.bias": (d,),
            "model.feature_adaptor.weight": (d, d),
            "model.feature_adaptor.bias": (d,),
        }
    )
    return shapes


def random_tensors(shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {name: 0.05 * torch.randn(shape, generator=generator) for name, shape in shapes.items()}


def write_clip_dir(root, with_weights: bool = False, clip: dict = CLIP) -> tuple:
    """A local CLIP model directory in the openai/clip-vit-* format (full CLIPConfig, `vision_model.` keys)."""
    clip_dir = root / "clip-vit-tiny"
    vision = {
        "hidden_size": clip["hidden"],
        "intermediate_size": clip["intermediate"],
        "num_hidden_layers": clip["layers"],
        "num_attention_heads": clip["heads"],
        "image_size": clip["image"],
        "patch_size": clip["patch"],
    }
    text = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2}
    CLIPConfig(vision_config=vision, text_config=text, projection_dim=16).save_pretrained(clip_dir)
    weights = {}
    if with_weights:
        weights = random_tensors(clip_tower_shapes("vision_model.", clip), seed=7)
        save_file(weights, str(clip_dir / "model.safetensors"), metadata={"format": "pt"})
    return clip_dir, weights


def write_original_checkpoint(
    root, drop: tuple[str, ...] = (), with_tower: bool = True, llm: dict = LLM, clip: dict = CLIP, **config
) -> tuple:
    """An EventGPT checkpoint directory as EventGPT's code saves it (``config`` overrides config.json keys)."""
    clip_dir, clip_weights = write_clip_dir(root, with_weights=not with_tower, clip=clip)
    checkpoint = root / "EventGPT-tiny"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text(json.dumps(original_config_json(clip_dir, llm) | config, indent=2))
    shapes = original_shapes(with_tower, llm, clip)
    tensors = {k: v for k, v in random_tensors(shapes, seed=3).items() if k not in drop}
    save_file(tensors, str(checkpoint / "model.safetensors"), metadata={"format": "pt"})
    return checkpoint, tensors, clip_weights

