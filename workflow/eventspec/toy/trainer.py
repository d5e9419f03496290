"""Stage ``toy_models``: build and train the toy verifier/drafter pair on the toy train split.

Both models share one word-level tokenizer and the same LLM size; the
verifier (Video-LLaVA) reads 8 RGB frames, the drafter (EventGPT) reads the
event images of the same window. Each model's vision tower is first
pretrained to tell which object each patch shows (from the toy world's object
maps), then the model learns to answer the toy questions with that tower
frozen. The two train side by side, are saved with ``save_pretrained``,
reloaded through the real loading code and scored per question type on the
test split.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import signal
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm
from transformers import CLIPVisionConfig, LlamaConfig, VideoLlavaConfig, VideoLlavaForConditionalGeneration
from transformers import VideoLlavaImageProcessor

from .. import store
from ..schemas import write_json
from ..toyworld.scene import CATEGORIES, COLORS, DIRECTIONS, SPEEDS
from ..models.backend import Backend, greedy_generate
from ..models.drafter import DrafterBackend, load_drafter
from ..models.eventgpt import EVENT_TOKEN_INDEX, EventGPTForCausalLM, tiny_eventgpt_config
from ..models.verifier import PROMPT as VERIFIER_PROMPT
from ..models.verifier import VerifierBackend, load_verifier, visual_tokens_per_frame
from .model_parts import model_parts
from .tokenizer import build_word_tokenizer


LABEL_FIELDS = {"category": CATEGORIES, "color": tuple(COLORS), "direction": DIRECTIONS, "speed": SPEEDS}
"""What the vision towers learn to tell at each patch; class 0 of each field is "no object here"."""
LABEL_DIRECTION = list(LABEL_FIELDS).index("direction")


@dataclass
class ToySplit:
    """The parts of a sample store one toy model learns from: its own modality and the ground truth."""

    images: np.ndarray  # frames [N, F, H, W, 3] or event images [N, C, H, W, 3]
    questions: list[dict]  # [{"qid", "text"}]
    answers: np.ndarray  # [N, Q] str
    object_maps: np.ndarray  # [N, F, H, W] uint8: 1 + object id per pixel, 0 for none
    objects: list[list[dict]]  # per window: its objects' ground truth

    @classmethod
    def read(cls, path: str | Path, modality: str) -> "ToySplit":
        """``modality``: "frames" (the verifier's) or "event_images" (the drafter's)."""
        group, n = store.open_committed(path)
        answers = np.asarray(group["answers"][:n]).astype(object)
        if (answers == "").any() or "object_maps" not in group:
            raise ValueError(f"{path}: toy models need a toy-world sample store (reference answers and object maps)")
        return cls(
            np.asarray(group[modality][:n]),
            group.attrs["questions"],
            answers,
            np.asarray(group["object_maps"][:n]),
            [json.loads(o) for o in group["objects"][:n]],
        )


def object_attributes(split: ToySplit) -> torch.Tensor:
    """[N, 1 + max objects, len(LABEL_FIELDS)]: row k holds the class ids of the object labelled k in the
    object maps (row 0, "no object", is all zeros)."""
    n_ids = int(split.object_maps.max(initial=0))
    attributes = torch.zeros((len(split.objects), n_ids + 1, len(LABEL_FIELDS)), dtype=torch.long)
    for n, objects in enumerate(split.objects):
        for obj in objects:
            attributes[n, obj["id"] + 1] = torch.tensor([v.index(obj[f]) + 1 for f, v in LABEL_FIELDS.items()])
    return attributes


def resize_object_maps(maps: np.ndarray, size: int) -> torch.Tensor:
    """Object maps [N, F, H, W] resampled (nearest) to the square ``size`` the image processors resize frames to."""
    rows = ((np.arange(size) + 0.5) * maps.shape[2] / size).astype(int)
    cols = ((np.arange(size) + 0.5) * maps.shape[3] / size).astype(int)
    return torch.from_numpy(np.ascontiguousarray(maps[:, :, rows][:, :, :, cols])).long()


def patch_labels(maps: torch.Tensor, attributes: torch.Tensor, grid: int, per_frame: bool, min_cover: float):
    """[B, L, grid, grid, len(LABEL_FIELDS)] class ids of the object covering most of each patch (0 = none).

    ``maps`` [B, F, S, S] hold, per pixel, a row of ``attributes`` [B, K, fields]
    (0 = no object). L is F with ``per_frame``; otherwise 1, the coverage
    summed over the window's frames (for tokens that average the window, like
    EventGPT's spatial tokens). An object labels a patch only if it covers at
    least ``min_cover`` of it.
    """
    b, f, size, _ = maps.shape
    one_hot = torch.nn.functional.one_hot(maps, attributes.shape[1]).float()  # B F S S K
    cover = one_hot.unflatten(2, (grid, size // grid)).unflatten(4, (grid, size // grid)).mean(dim=(3, 5))
    if not per_frame:
        cover = cover.mean(dim=1, keepdim=True)
    best = cover[..., 1:].argmax(dim=-1) + 1
    best[cover[..., 1:].amax(dim=-1) < min_cover] = 0
    rows = torch.arange(b)[:, None, None, None]
    return attributes[rows, best]


def corpus(split: ToySplit) -> list[str]:
    """Every text the toy models read or write (prompts use the Vicuna and Video-LLaVA templates)."""
    from ..models.eventgpt import EVENT_TOKEN, build_prompt

    texts = [VERIFIER_PROMPT, *build_prompt("").split(EVENT_TOKEN)]
    texts += [q["text"] for q in split.questions]
    texts += sorted(set(split.answers.ravel().tolist()))
    return texts


def tiny_verifier(tokenizer, cfg: dict, image_size: int, num_frames: int) -> VideoLlavaForConditionalGeneration:
    vision = CLIPVisionConfig(
        image_size=image_size,
        patch_size=cfg["verifier"]["patch_size"],
        hidden_size=cfg["vision_hidden"],
        intermediate_size=4 * cfg["vision_hidden"],
        num_hidden_layers=cfg["vision_layers"],
        num_attention_heads=4,
    )
    text = LlamaConfig(**llm_kwargs(tokenizer, cfg))
    config = VideoLlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        video_token_index=tokenizer.convert_tokens_to_ids("<video>"),
        vision_feature_layer=-1,
        image_seq_length=visual_tokens_per_frame(vision) - 1,
        video_seq_length=visual_tokens_per_frame(vision) * num_frames,
    )
    return VideoLlavaForConditionalGeneration(config)


def toy_image_processor(size: int) -> VideoLlavaImageProcessor:
    """The toy verifier's frame processor: the whole frame resized to ``size`` x ``size``, no crop."""
    return VideoLlavaImageProcessor(
        size={"height": size, "width": size}, crop_size={"height": size, "width": size}, do_center_crop=False
    )


def llm_kwargs(tokenizer, cfg: dict) -> dict:
    llm = cfg["llm"]
    return dict(
        vocab_size=len(tokenizer),
        hidden_size=llm["hidden"],
        intermediate_size=llm["intermediate"],
        num_hidden_layers=llm["layers"],
        num_attention_heads=llm["heads"],
        num_key_value_heads=llm["heads"],
        max_position_embeddings=llm["max_positions"],
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def tiny_drafter(tokenizer, cfg: dict, image_size: int, n_chunks: int) -> EventGPTForCausalLM:
    llm = llm_kwargs(tokenizer, cfg)
    config = tiny_eventgpt_config(
        vocab_size=llm["vocab_size"],
        event_token_index=EVENT_TOKEN_INDEX,
        pad_token_id=llm["pad_token_id"],
        bos_token_id=llm["bos_token_id"],
        eos_token_id=llm["eos_token_id"],
        image_size=image_size,
        patch_size=cfg["drafter"]["patch_size"],
        vision_hidden=cfg["vision_hidden"],
        vision_layers=cfg["vision_layers"],
        llm_hidden=llm["hidden_size"],
        llm_layers=llm["num_hidden_layers"],
        llm_heads=llm["num_attention_heads"],
        llm_intermediate=llm["intermediate_size"],
        n_chunks=n_chunks,
        max_position_embeddings=llm["max_position_embeddings"],
    )
    return EventGPTForCausalLM(config)


def common_prefix(seqs: list[list[int]]) -> int:
    n = 0
    while all(len(s) > n for s in seqs) and len({s[n] for s in seqs}) == 1:
        n += 1
    return n


@dataclass
class PackedText:
    """Token ids of a question set packed per window: one shared prompt prefix, then one segment per question."""

    prefix: list[int]  # BOS ... visual placeholders ... up to where the question starts
    questions: list[list[int]]  # per question: the rest of its prompt
    answers: list[list[list[int]]]  # per window, per question: answer ids + EOS

    @classmethod
    def encode(cls, backend: Backend, split: ToySplit) -> "PackedText":
        tok = backend.tokenizer
        prompts = [backend.prompt_ids(q["text"]) for q in split.questions]
        n = common_prefix(prompts)
        cache: dict[str, list[int]] = {}

        def encode_answer(a: str) -> list[int]:
            return cache.setdefault(a, tok(a, add_special_tokens=False)["input_ids"] + [tok.eos_token_id])

        answers = [[encode_answer(a) for a in row] for row in split.answers]
        return cls(prompts[0][:n], [p[n:] for p in prompts], answers)

    def window(self, w: int) -> tuple[list[int], list[int], list[int], list[int]]:
        """ids, segment index (0 = prefix), position ids and labels of window ``w``'s packed sequence."""
        ids, seg, pos, labels = list(self.prefix), [0] * len(self.prefix), list(range(len(self.prefix))), [-100] * len(self.prefix)
        for q, (question, answer) in enumerate(zip(self.questions, self.answers[w]), start=1):
            ids += question + answer
            seg += [q] * (len(question) + len(answer))
            pos += range(len(self.prefix), len(self.prefix) + len(question) + len(answer))
            labels += [-100] * len(question) + answer
        return ids, seg, pos, labels


def collate_packed(text: PackedText, windows: np.ndarray, pad_id: int):
    """Right-padded packed sequences with a 4D additive mask: a segment sees the prefix and itself, causally."""
    rows = [text.window(int(w)) for w in windows]
    length = max(len(r[0]) for r in rows)
    ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    labels = torch.full_like(ids, -100)
    positions = torch.zeros_like(ids)
    segment = torch.full_like(ids, -1)
    for i, (r_ids, r_seg, r_pos, r_labels) in enumerate(rows):
        n = len(r_ids)
        ids[i, :n], segment[i, :n] = torch.tensor(r_ids), torch.tensor(r_seg)
        positions[i, :n], labels[i, :n] = torch.tensor(r_pos), torch.tensor(r_labels)
    causal = torch.ones(length, length, dtype=torch.bool).tril()
    same = segment[:, :, None] == segment[:, None, :]
    sees_prefix = (segment[:, None, :] == 0) & (segment[:, :, None] >= 0)
    allowed = causal & (same | sees_prefix)
    allowed |= torch.eye(length, dtype=torch.bool)  # padding rows attend to themselves: no empty softmax
    mask = torch.zeros(allowed.shape, dtype=torch.float32).masked_fill(~allowed, torch.finfo(torch.float32).min)
    return ids, mask[:, None], positions, labels


def precompute_visual(backend: Backend, images: np.ndarray, batch: int = 64) -> dict[str, torch.Tensor]:
    """The model's visual input tensors (preprocessed pixels) of all ``images``, computed once for training."""
    parts = [backend.visual_inputs(images[i : i + batch]) for i in range(0, len(images), batch)]
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


def warmup_cosine(opt: torch.optim.Optimizer, total: int, warmup_share: float):
    """Linear warmup over ``warmup_share`` of the steps, then cosine decay to 5% of the peak."""
    warmup = max(1, round(total * warmup_share))
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * s / total)))
    )


def optimizer_step(opt: torch.optim.Optimizer, sched, params: list, loss: torch.Tensor) -> float:
    """Backpropagate ``loss``, clip the gradient norm to 1, step optimiser and schedule; return the loss."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    sched.step()
    return loss.item()


def shift_and_mirror(pixels: torch.Tensor, maps: torch.Tensor, attributes: torch.Tensor, rng: np.random.Generator):
    """Augment a batch of windows alike across their frames: a random sideways shift by any number of pixels
    (wrapping around) and a mirror for half of them, which swaps the left/right directions in ``attributes``.

    ``pixels`` [B, L, 3, S, S] and object ``maps`` [B, F, S, S] move together, so patch labels computed
    from the shifted maps stay exact even when an object now straddles other patches.
    """
    size = pixels.shape[-1]
    shifts = rng.integers(0, size, size=len(pixels))
    mirror = torch.from_numpy(rng.random(len(pixels)) < 0.5)
    pixels = torch.stack([x.roll(int(s), dims=-1) for x, s in zip(pixels, shifts)])
    maps = torch.stack([m.roll(int(s), dims=-1) for m, s in zip(maps, shifts)])
    pixels = torch.where(mirror[:, None, None, None, None], pixels.flip(-1), pixels)
    maps = torch.where(mirror[:, None, None, None], maps.flip(-1), maps)
    direction = attributes[..., LABEL_DIRECTION]
    left, right = DIRECTIONS.index("left") + 1, DIRECTIONS.index("right") + 1
    swapped = torch.where(direction == left, right, torch.where(direction == right, left, direction))
    attributes = attributes.clone()
    attributes[..., LABEL_DIRECTION] = torch.where(mirror[:, None], swapped, direction)
    return pixels, maps, attributes


def window_patch_labels(backend: Backend, split: ToySplit, size: int, min_cover: float) -> torch.Tensor:
    """[N, L, grid, grid, len(LABEL_FIELDS)] attribute labels of every patch token of ``backend`` on ``split``."""
    maps = resize_object_maps(split.object_maps, size)
    attributes = object_attributes(split)
    parts = model_parts(backend)
    grid, per_frame = parts.grid, parts.per_frame
    return torch.cat(
        [patch_labels(maps[i : i + 64], attributes[i : i + 64], grid, per_frame, min_cover) for i in range(0, len(maps), 64)]
    )


def attribute_heads(hidden_size: int) -> torch.nn.ModuleList:
    """One linear classifier per field of LABEL_FIELDS (plus its "no object" class)."""
    return torch.nn.ModuleList([torch.nn.Linear(hidden_size, len(v) + 1) for v in LABEL_FIELDS.values()])


def attribute_loss(heads: torch.nn.ModuleList, tokens: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Summed cross-entropy of ``heads`` on patch ``tokens`` [..., D] against ``labels`` [..., fields]."""
    return sum(
        torch.nn.functional.cross_entropy(head(tokens).flatten(0, -2), labels[..., k].flatten())
        for k, head in enumerate(heads)
    )


def cell_categories(fine_labels: torch.Tensor, cells: int) -> torch.Tensor:
    """Patch labels on a grid ``cells`` times finer [B, L, G * cells, G * cells, fields] -> the category of
    each cell of each patch [B, L, G, G, cells * cells], cells in row-major order."""
    grid = fine_labels.shape[2] // cells
    categories = fine_labels[..., 0].unflatten(2, (grid, cells)).unflatten(4, (grid, cells))  # B L G c G c
    return categories.transpose(3, 4).flatten(-2)


def cell_loss(cell_head: torch.nn.Linear, tokens: torch.Tensor, fine_labels: torch.Tensor, cells: int) -> torch.Tensor:
    """Cross-entropy of the category of every cell of every patch, predicted from the patch's token [B, L, G, G, D]."""
    logits = cell_head(tokens).unflatten(-1, (cells * cells, -1))
    return torch.nn.functional.cross_entropy(logits.flatten(0, -2), cell_categories(fine_labels, cells).flatten())


def training_precision(cfg: dict):
    """Autocast for the forward passes of training: bfloat16 matmuls where ``cfg["train_dtype"]`` asks for them."""
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg["train_dtype"] == "bfloat16")


def pretrain_vision(backend: Backend, visual: dict, split: ToySplit, cfg: dict, seed: int, desc: str) -> list[dict]:
    """Pretrain the vision tower and projector to tell, at every patch, which object is there.

    Real VLMs start from a pretrained CLIP; a tower trained from scratch only
    through the LLM gets a gradient diluted over every visual token, and the
    LLM settles on the language prior first. Here linear heads on each patch
    token predict the category, colour, direction and speed of the object
    covering that patch (from the toy world's object maps), so every token
    learns local features; another head predicts the category in each of
    ``subpatch_cells`` x ``subpatch_cells`` cells of the patch, so the token
    also says where in its patch an object sits (what tells slow motion from
    none across frames). Windows are shifted and mirrored, labels following.
    The heads are then dropped and the whole model is trained as a VLM.
    """
    model = backend.model.train()
    (key, pixels), = visual.items()
    maps = resize_object_maps(split.object_maps, pixels.shape[-1])
    attributes = object_attributes(split)
    parts = model_parts(backend)
    grid, per_frame, cover = parts.grid, parts.per_frame, cfg["min_patch_cover"]
    heads = attribute_heads(backend.hidden_size)
    cells = cfg["subpatch_cells"]
    if cells and (pixels.shape[-1] // grid) % cells:
        raise ValueError(f"toy_models.subpatch_cells = {cells} must divide the patch size {pixels.shape[-1] // grid}")
    cell_head = torch.nn.Linear(backend.hidden_size, cells * cells * (len(CATEGORIES) + 1))
    params = list(model.parameters()) + list(heads.parameters()) + list(cell_head.parameters())
    opt = torch.optim.AdamW(params, lr=cfg["vision_lr"], weight_decay=0.01)
    rng = np.random.default_rng(seed)
    batch = cfg["batch_windows"] * 4
    n_batches = math.ceil(len(pixels) / batch)
    sched = warmup_cosine(opt, cfg["vision_epochs"] * n_batches, cfg["warmup"])
    history = []
    for epoch in tqdm(range(cfg["vision_epochs"]), desc=desc, unit="epoch"):
        losses = []
        for windows in np.array_split(rng.permutation(len(pixels)), n_batches):
            x, m, a = shift_and_mirror(pixels[windows], maps[windows], attributes[windows], rng)
            y = patch_labels(m, a, grid, per_frame, cover)
            with training_precision(cfg):
                tokens = parts.patch_tokens(parts.visual_tokens({key: x}))
            loss = attribute_loss(heads, tokens.float(), y)
            if cells:
                loss = loss + cell_loss(cell_head, tokens.float(), patch_labels(m, a, grid * cells, per_frame, cover), cells)
            losses.append(optimizer_step(opt, sched, params, loss))
        history.append({"epoch": epoch, "loss": float(np.mean(losses))})
    return history


def train(backend: Backend, visual: dict, split: ToySplit, cfg: dict, seed: int, desc: str) -> list[dict]:
    """Teach ``backend.model`` to answer: cross-entropy on answer tokens, AdamW, warmup + cosine.

    All questions of a window are packed into one sequence behind a single
    copy of the visual prompt (each question attends to the prompt and to
    itself only), so the visual tokens are processed once per window. The
    pretrained vision tower stays frozen: trained on, it drifts towards
    memorising the training scenes. With ``aux_weight``, the attribute heads
    of the vision pretraining come back on the LLM's last hidden states at the
    patch positions: the LLM is told, at every patch of every frame, what is
    there and how it moves, which it can only learn by comparing frames.
    """
    model = backend.model.train()
    parts = model_parts(backend)
    parts.vision_tower.requires_grad_(False)
    text = PackedText.encode(backend, split)
    (size,) = {v.shape[-1] for v in visual.values()}
    patch_targets = window_patch_labels(backend, split, size, cfg["min_patch_cover"])
    visual_positions = torch.tensor([i for i, t in enumerate(text.prefix) if t == parts.visual_token_id])
    heads = attribute_heads(backend.hidden_size)
    n_windows = len(split.answers)
    batch = cfg["batch_windows"]
    total = cfg["epochs"] * math.ceil(n_windows / batch)
    params = [p for p in model.parameters() if p.requires_grad] + list(heads.parameters())
    opt = torch.optim.AdamW(params, lr=cfg["lr"], weight_decay=0.01)
    sched = warmup_cosine(opt, total, cfg["warmup"])
    rng = np.random.default_rng(seed)
    history = []
    bar = tqdm(total=total, desc=desc, unit="step")
    for epoch in range(cfg["epochs"]):
        losses = []
        for windows in np.array_split(rng.permutation(n_windows), math.ceil(n_windows / batch)):
            ids, mask, positions, labels = collate_packed(text, windows, backend.pad_token_id)
            vis = {k: v[windows] for k, v in visual.items()}
            with training_precision(cfg):
                hidden = model.model(input_ids=ids, attention_mask=mask, position_ids=positions, **vis).last_hidden_state
                logits = backend.lm_head(hidden)
            hidden = hidden.float()
            loss = torch.nn.functional.cross_entropy(
                logits[:, :-1].reshape(-1, logits.shape[-1]).float(), labels[:, 1:].reshape(-1), ignore_index=-100
            )
            if cfg["aux_weight"]:
                patch_hidden = parts.patch_tokens(hidden[:, visual_positions])
                loss = loss + cfg["aux_weight"] * attribute_loss(heads, patch_hidden, patch_targets[windows])
            losses.append(optimizer_step(opt, sched, params, loss))
            bar.update()
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
        history.append({"epoch": epoch, "loss": float(np.mean(losses))})
    bar.close()
    model.eval()
    return history


def answer_accuracy(backend: Backend, split: ToySplit, max_new_tokens: int, batch_windows: int = 4) -> dict:
    """Exact-match accuracy per question type of greedy answers on ``split``, and beside it each type's token
    accuracy: the share of the reference's tokens (EOS included) the answer has at the same position (what a
    long answer gets mostly right).

    Each batch asks every question of ``batch_windows`` windows, so a window is preprocessed once.
    """
    tok = backend.tokenizer
    n_windows, n_questions = split.answers.shape
    texts = [question["text"] for question in split.questions]
    correct = np.zeros((n_windows, n_questions), dtype=bool)
    tokens_right = np.zeros((n_windows, n_questions))
    for start in range(0, n_windows, batch_windows):
        rows = np.arange(start, min(start + batch_windows, n_windows))
        windows, asked = np.divmod(np.arange(len(rows) * n_questions), n_questions)
        inputs = backend.prepare(split.images[rows], [texts[q] for q in asked], windows)
        gen = greedy_generate(backend, inputs, max_new_tokens)
        for i, (w, q) in enumerate(zip(rows[windows], asked)):
            produced = gen.tokens[i, : gen.lengths[i]].tolist()
            expected = tok(split.answers[w, q], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
            correct[w, q] = produced == expected
            matched = [a == b for a, b in zip(produced, expected)]
            tokens_right[w, q] = sum(matched) / len(expected)
    per_type = {question["qid"]: float(correct[:, q].mean()) for q, question in enumerate(split.questions)}
    token_accuracy = {question["qid"]: float(tokens_right[:, q].mean()) for q, question in enumerate(split.questions)}
    return {"overall": float(correct.mean()), "per_question": per_type, "token_accuracy": token_accuracy,
            "n_windows": int(n_windows)}


MODEL_NAMES = ("verifier", "drafter")


def build_toy_models(train_store, test_store, out: dict[str, Path], cfg: dict) -> dict:
    """Train the toy pair, save each to ``out[name]``, evaluate the reloaded models; return the report.

    The two models train side by side, one spawned process each, sharing
    ``cfg["threads"]``: tiny models keep one core busier than two.
    """
    workers = min(len(MODEL_NAMES), cfg["threads"])
    threads = max(1, cfg["threads"] // workers)
    jobs = {name: (name, train_store, test_store, Path(out[name]), cfg, threads) for name in MODEL_NAMES}
    if workers == 1:
        report = {name: build_toy_model(*job) for name, job in jobs.items()}
    else:
        with ending_children_on_signals(), ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            futures = {name: pool.submit(build_toy_model, *job) for name, job in jobs.items()}
            report = {name: future.result() for name, future in futures.items()}
    report["visual_token_ratio"] = report["verifier"]["visual_tokens"] / report["drafter"]["visual_tokens"]
    report["language_prior"] = language_prior_accuracy(train_store, test_store)
    return report


ENDING_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextmanager
def ending_children_on_signals():
    """While inside: SIGTERM or SIGINT ends this process's multiprocessing children, then this process (exit status
    128 + the signal). A spawned worker does not die with its parent: killed, the parent would leave it training."""

    def end_children(signum, frame):
        for child in multiprocessing.active_children():
            child.terminate()
        raise SystemExit(128 + signum)

    previous = {sig: signal.signal(sig, end_children) for sig in ENDING_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def language_prior_accuracy(train_store, test_store) -> dict:
    """Exact-match accuracy on the test split of always giving each question's most frequent train answer.

    What a model that ignores its visual input can reach: the floor a trained toy model must beat.
    """
    (train, n_train), (test, n_test) = store.open_committed(train_store), store.open_committed(test_store)
    train_answers = np.asarray(train["answers"][:n_train]).astype(object)
    test_answers = np.asarray(test["answers"][:n_test]).astype(object)
    correct = np.zeros(test_answers.shape, dtype=bool)
    for q in range(train_answers.shape[1]):
        values, counts = np.unique(train_answers[:, q], return_counts=True)
        correct[:, q] = test_answers[:, q] == values[np.argmax(counts)]
    per_type = {question["qid"]: float(correct[:, q].mean()) for q, question in enumerate(test.attrs["questions"])}
    return {"overall": float(correct.mean()), "per_question": per_type, "n_windows": int(n_test)}


def build_toy_model(name: str, train_store, test_store, out: Path, cfg: dict, threads: int) -> dict:
    """Train one toy model (``verifier`` or ``drafter``), save it to ``out``, reload and score it on the test split."""
    torch.set_num_threads(threads)
    torch.manual_seed(cfg["seed"])
    modality = "frames" if name == "verifier" else "event_images"
    train_split, test_split = ToySplit.read(train_store, modality), ToySplit.read(test_store, modality)
    tokenizer = build_word_tokenizer(corpus(train_split) + corpus(test_split))
    size = cfg["image_size"]
    if name == "verifier":
        model = tiny_verifier(tokenizer, cfg, size, train_split.images.shape[1])
        backend, load = VerifierBackend(model, tokenizer, toy_image_processor(size)), load_verifier
    else:
        model = tiny_drafter(tokenizer, cfg, size, train_split.images.shape[1])
        backend, load = DrafterBackend(model, tokenizer), load_drafter
    # Training attention (not saved in the config): at these sizes the eager kernel beats the CPU flash kernel under
    # bfloat16 autocast, and loses to it by about a quarter in float32 (12 layers x 64 wide, packed windows).
    model.set_attn_implementation("eager" if cfg["train_dtype"] == "bfloat16" else "sdpa")
    start = time.perf_counter()
    model_cfg = cfg | cfg[name]
    visual = precompute_visual(backend, train_split.images)
    vision_history = pretrain_vision(backend, visual, train_split, model_cfg, cfg["seed"], f"vision {name}")
    history = train(backend, visual, train_split, model_cfg, cfg["seed"], f"train {name}")
    for part in (model, tokenizer, getattr(backend, "image_processor", None)):
        if part is not None:
            part.save_pretrained(out)
    print(f"{name}: trained in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    reloaded = load(out)
    return {
        "history": history,
        "vision_history": vision_history,
        "test": answer_accuracy(reloaded, test_split, cfg["max_new_tokens"]),
        "visual_tokens": reloaded.num_visual_tokens,
    }


def write_eval(report: dict, path) -> None:
    write_json(path, report, "toy_eval")
