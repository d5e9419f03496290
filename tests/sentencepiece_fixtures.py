"""A tiny sentencepiece model shaped like Vicuna-7B v1.5's ``tokenizer.model`` (BPE, byte fallback, ``<unk>`` 0,
``<s>`` 1, ``</s>`` 2, no pad), trained here from a fixed text: a checkpoint that ships only ``tokenizer.model``.
Importable by plain Python too (the goldens' provenance command trains it the same way)."""

from __future__ import annotations

import io

VICUNA_V1_SYSTEM = ("A chat between a curious human and an artificial intelligence assistant. The assistant gives "
                    "helpful, detailed, and polite answers to the human's questions.")
"""EventGPT's ``eventgpt_v1`` system prompt (``dataset/conversation.py``)."""
QUESTIONS = ["What is happening in this event stream?", "Describe the scene in detail.",
             "Is there a car or a pedestrian moving?", "What objects are in the scene?"]


def corpus() -> list[str]:
    """The training text: Vicuna v1's system prompt and role names, the questions, a few descriptive lines."""
    lines = [VICUNA_V1_SYSTEM, "USER: ASSISTANT:", *QUESTIONS]
    words = ["a", "car", "moves", "left", "right", "the", "street", "pedestrian", "walks", "slowly", "fast", "scene",
             "shows", "event", "camera", "light", "dark", "road", "building", "tree", "sky", "in", "on", "and"]
    for i in range(200):  # deterministic word salad, so frequent pairs merge
        lines.append(" ".join(words[(i * k + k * k) % len(words)] for k in range(1, 9)) + ".")
    return lines


def train_vicuna_like_model(vocab_size: int = 400) -> bytes:
    """The serialized model (deterministic: one thread, fixed text, no sampling)."""
    import sentencepiece as spm

    out = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus()), model_writer=out, model_type="bpe", vocab_size=vocab_size,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, byte_fallback=True, character_coverage=1.0, num_threads=1,
        add_dummy_prefix=True, remove_extra_whitespaces=False, split_digits=True, normalization_rule_name="identity",
        allow_whitespace_only_pieces=True, minloglevel=2,
    )
    return out.getvalue()
