"""The toy pair's shared word-level tokenizer, built with the ``tokenizers`` library.

Saved as a transformers tokenizer, so both toy models load it with
``AutoTokenizer`` like a real checkpoint's. Words and punctuation are tokens;
prompts start with ``<s>``; Video-LLaVA's placeholders are special tokens.
Like EventGPT's Vicuna tokenizer it has no ``<event>`` entry: the drafter's
prompt ids get EventGPT's placeholder id spliced in (``tokenizer_event_token``).
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

UNK, BOS, EOS, PAD = "<unk>", "<s>", "</s>", "<pad>"
VISUAL_TOKENS = ["<image>", "<video>"]


def build_word_tokenizer(texts: Iterable[str]) -> PreTrainedTokenizerFast:
    """A deterministic word-level tokenizer whose vocabulary covers ``texts``."""
    pre = pre_tokenizers.Whitespace()
    words = sorted({w for text in texts for w, _ in pre.pre_tokenize_str(text)} - set(VISUAL_TOKENS))
    specials = [UNK, BOS, EOS, PAD, *VISUAL_TOKENS]
    vocab = {tok: i for i, tok in enumerate(specials + [w for w in words if w not in specials])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tok.pre_tokenizer = pre
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    tok.add_special_tokens(specials)
    tok.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", special_tokens=[(BOS, vocab[BOS])])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token=UNK,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        extra_special_tokens={"image_token": "<image>", "video_token": "<video>"},
        padding_side="left",
    )
