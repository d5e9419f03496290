"""Stage ``toy_models``: build and train the toy verifier/drafter pair on the toy train split.

Both models share one word-level tokenizer and the same LLM size; the
verifier (Video-LLaVA) reads 8 RGB frames, the drafter (EventGPT) reads the
event images of the same window. They are trained to answer the toy
questions, saved with ``save_pretrained`` and reloaded through the real
loading code, and scored per question type on the test split.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm
from transformers import CLIPVisionConfig, LlamaConfig, VideoLlavaConfig, VideoLlavaForConditionalGeneration
from transformers import VideoLlavaImageProcessor

from .. import store
from ..schemas import write_json
from .backend import Backend, greedy_generate
from .drafter import DrafterBackend, load_drafter
from .eventgpt import EventGPTForCausalLM, tiny_eventgpt_config
from .tokenizer import build_word_tokenizer
from .verifier import PROMPT as VERIFIER_PROMPT
from .verifier import VerifierBackend, load_verifier, visual_tokens_per_frame


@dataclass
class ToySplit:
    """The parts of a sample store the toy models learn from."""

    frames: np.ndarray  # [N, F, H, W, 3]
    event_images: np.ndarray  # [N, C, H, W, 3]
    questions: list[dict]  # [{"qid", "text"}]
    answers: np.ndarray  # [N, Q] str

    @classmethod
    def read(cls, path: str | Path) -> "ToySplit":
        group, n = store.open_committed(path)
        answers = np.asarray(group["answers"][:n]).astype(object)
        if (answers == "").any():
            raise ValueError(f"{path}: toy models need reference answers for every question (toy question set)")
        return cls(np.asarray(group["frames"][:n]), np.asarray(group["event_images"][:n]), group.attrs["questions"], answers)


def corpus(split: ToySplit) -> list[str]:
    """Every text the toy models read or write (prompts use the Vicuna and Video-LLaVA templates)."""
    from .eventgpt import VICUNA_V1_SYSTEM

    texts = [VERIFIER_PROMPT, VICUNA_V1_SYSTEM, "USER: ASSISTANT:"]
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
        event_token_index=tokenizer.convert_tokens_to_ids("<event>"),
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
        prompts = [tok(backend.prompt(q["text"]))["input_ids"] for q in split.questions]
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
    parts = [backend.visual_inputs(images[i : i + batch]) for i in range(0, len(images), batch)]
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


def warmup_cosine(opt: torch.optim.Optimizer, total: int, warmup_share: float):
    """Linear warmup over ``warmup_share`` of the steps, then cosine decay to 5% of the peak."""
    warmup = max(1, round(total * warmup_share))
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * s / total)))
    )


def answer_word_targets(backend: Backend, split: ToySplit) -> torch.Tensor:
    """[N, vocab] multi-hot: which tokens occur in any reference answer of each window."""
    tok = backend.tokenizer
    targets = torch.zeros(len(split.answers), len(tok))
    for w, row in enumerate(split.answers):
        ids = {i for a in row for i in tok(a, add_special_tokens=False)["input_ids"]}
        targets[w, sorted(ids)] = 1.0
    return targets


def pretrain_vision(backend: Backend, images: np.ndarray, split: ToySplit, cfg: dict, seed: int, desc: str) -> list[dict]:
    """Pretrain the vision tower and projector to tell which answer words fit a window.

    Real VLMs start from a pretrained CLIP; a tower trained from scratch only
    through the LLM gets a gradient diluted over every visual token and the
    LLM settles on the language prior first. Here a linear head on the
    mean- and max-pooled visual tokens predicts the bag of answer words (BCE),
    so every token learns features that tell objects, colours and motion
    apart; the head is then dropped and the whole model is trained as a VLM.
    """
    model = backend.model.train()
    visual = precompute_visual(backend, images)
    targets = answer_word_targets(backend, split)
    head = torch.nn.Linear(2 * backend.hidden_size, targets.shape[1])
    params = [p for p in model.parameters()] + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=cfg["vision_lr"], weight_decay=0.01)
    rng = np.random.default_rng(seed)
    batch = cfg["batch_windows"] * 4
    n_batches = math.ceil(len(targets) / batch)
    sched = warmup_cosine(opt, cfg["vision_epochs"] * n_batches, cfg["warmup"])
    history = []
    for epoch in tqdm(range(cfg["vision_epochs"]), desc=desc, unit="epoch"):
        losses = []
        for windows in np.array_split(rng.permutation(len(targets)), n_batches):
            tokens = backend.encode_visual({k: v[windows] for k, v in visual.items()})
            pooled = torch.cat([tokens.mean(1), tokens.amax(1)], dim=-1)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(head(pooled), targets[windows])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            losses.append(loss.item())
        history.append({"epoch": epoch, "loss": float(np.mean(losses))})
    return history


def train(backend: Backend, images: np.ndarray, split: ToySplit, cfg: dict, seed: int, desc: str) -> list[dict]:
    """Teach ``backend.model`` to answer: cross-entropy on answer tokens, AdamW, warmup + cosine.

    All questions of a window are packed into one sequence behind a single
    copy of the visual prompt (each question attends to the prompt and to
    itself only), so the visual tokens are processed once per window.
    """
    model = backend.model.train()
    visual = precompute_visual(backend, images)
    text = PackedText.encode(backend, split)
    n_windows = len(split.answers)
    batch = cfg["batch_windows"]
    total = cfg["epochs"] * math.ceil(n_windows / batch)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=0.01)
    sched = warmup_cosine(opt, total, cfg["warmup"])
    rng = np.random.default_rng(seed)
    history = []
    bar = tqdm(total=total, desc=desc, unit="step")
    for epoch in range(cfg["epochs"]):
        losses = []
        for windows in np.array_split(rng.permutation(n_windows), math.ceil(n_windows / batch)):
            ids, mask, positions, labels = collate_packed(text, windows, backend.pad_token_id)
            vis = {k: v[windows] for k, v in visual.items()}
            logits = model(input_ids=ids, attention_mask=mask, position_ids=positions, **vis).logits
            loss = torch.nn.functional.cross_entropy(
                logits[:, :-1].reshape(-1, logits.shape[-1]).float(), labels[:, 1:].reshape(-1), ignore_index=-100
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            losses.append(loss.item())
            bar.update()
            bar.set_postfix(loss=f"{loss.item():.3f}")
        history.append({"epoch": epoch, "loss": float(np.mean(losses))})
    bar.close()
    model.eval()
    return history


def answer_accuracy(backend: Backend, images: np.ndarray, split: ToySplit, max_new_tokens: int, batch: int = 32) -> dict:
    """Exact-match accuracy per question type of greedy answers on ``split``."""
    tok = backend.tokenizer
    n_windows, n_questions = split.answers.shape
    correct = np.zeros((n_windows, n_questions), dtype=bool)
    for q, question in enumerate(split.questions):
        for start in range(0, n_windows, batch):
            rows = slice(start, min(start + batch, n_windows))
            count = rows.stop - rows.start
            gen = greedy_generate(backend, backend.prepare(images[rows], [question["text"]] * count), max_new_tokens)
            for i in range(count):
                produced = gen.tokens[i, : gen.lengths[i]].tolist()
                expected = tok(split.answers[rows.start + i, q], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
                correct[rows.start + i, q] = produced == expected
    per_type = {question["qid"]: float(correct[:, q].mean()) for q, question in enumerate(split.questions)}
    return {"overall": float(correct.mean()), "per_question": per_type, "n_windows": int(n_windows)}


def build_toy_models(train_store, test_store, out: dict[str, Path], cfg: dict) -> dict:
    """Train the toy pair, save each to ``out[name]``, evaluate the reloaded models; return the report."""
    torch.set_num_threads(cfg["threads"])
    train_split, test_split = ToySplit.read(train_store), ToySplit.read(test_store)
    tokenizer = build_word_tokenizer(corpus(train_split) + corpus(test_split))
    image_size = cfg["image_size"]
    processor = VideoLlavaImageProcessor(
        size={"height": image_size, "width": image_size},
        crop_size={"height": image_size, "width": image_size},
        do_center_crop=False,
    )
    models = {
        "verifier": VerifierBackend(
            tiny_verifier(tokenizer, cfg, image_size, train_split.frames.shape[1]), tokenizer, processor
        ),
        "drafter": DrafterBackend(tiny_drafter(tokenizer, cfg, image_size, train_split.event_images.shape[1]), tokenizer),
    }
    report = {}
    for name, backend in models.items():
        images = train_split.frames if name == "verifier" else train_split.event_images
        start = time.perf_counter()
        torch.manual_seed(cfg["seed"])
        model_cfg = cfg | cfg[name]
        vision_history = pretrain_vision(backend, images, train_split, model_cfg, cfg["seed"], f"vision {name}")
        history = train(backend, images, train_split, model_cfg, cfg["seed"], f"train {name}")
        path = Path(out[name])
        backend.model.save_pretrained(path)
        tokenizer.save_pretrained(path)
        if name == "verifier":
            processor.save_pretrained(path)
        report[name] = {"history": history, "vision_history": vision_history}
        print(f"{name}: trained in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    reloaded = {"verifier": load_verifier(out["verifier"]), "drafter": load_drafter(out["drafter"])}
    for name, backend in reloaded.items():
        images = test_split.frames if name == "verifier" else test_split.event_images
        report[name]["test"] = answer_accuracy(backend, images, test_split, cfg["max_new_tokens"])
        report[name]["visual_tokens"] = backend.num_visual_tokens
    report["visual_token_ratio"] = report["verifier"]["visual_tokens"] / report["drafter"]["visual_tokens"]
    return report


def write_eval(report: dict, path) -> None:
    write_json(path, report, "toy_eval")
