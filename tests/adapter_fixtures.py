"""Small synthetic feature stores for the adapter tests, written through the real store code.

The verifier's hidden state is a fixed smooth function of the drafter's at
the same position plus a little of the previous position (so there is
something to learn, for prefill and decode heads alike); tokens are what a
fixed LM head makes of it, as in a real store.
"""

from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from eventspec import store
from eventspec.extract import feature_layout

VOCAB = 24


def write_feature_store(path: Path, rows: int, T: int = 12, dd: int = 16, dv: int = 24, seed: int = 0,
                        shard_rows: int = 32) -> Path:
    gen = np.random.default_rng(seed)
    mix = np.random.default_rng(1234)  # the same mapping in every store
    w = mix.normal(size=(dd, dv)) / np.sqrt(dd)
    head = lm_head(dv)
    layout = feature_layout(T, dv, dd, "float16", min(8, shard_rows), 8)
    group = store.open_for_writing(path, layout, {"test": seed}, shard_rows, resume=False)
    group.attrs["logical_dtype"] = "float16"
    for start in range(0, rows, shard_rows):
        n = min(shard_rows, rows - start)
        drafter = gen.normal(size=(n, T, dd))
        mapped = np.tanh(drafter @ w)
        verifier = mapped + 0.5 * np.concatenate([np.zeros((n, 1, dv)), mapped[:, :-1]], axis=1)
        lengths = gen.integers(T // 2, T + 1, size=n)
        tokens = (torch.from_numpy(verifier).float() @ head.T).argmax(-1).numpy().astype(np.int32)
        for i, length in enumerate(lengths):
            tokens[i, length:] = -1
            drafter[i, length:] = verifier[i, length:] = 0
        store.append_rows(group, {
            "verifier_hidden": verifier.astype(np.float16),
            "drafter_hidden": (drafter + 0.1 * gen.normal(size=drafter.shape)).astype(np.float16),
            "drafter_hidden_tf": drafter.astype(np.float16),
            "verifier_tokens": tokens,
            "drafter_tokens": tokens,
            "sample_id": np.arange(start, start + n, dtype=np.int32),
            "question_id": np.zeros(n, dtype=np.int32),
            "verifier_len": lengths.astype(np.int32),
            "drafter_len": lengths.astype(np.int32),
        })
    return store.finish(path)


def lm_head(dv: int = 24) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(99).normal(size=(VOCAB, dv))).float()


def write_lm_head(path: Path, dv: int = 24) -> Path:
    save_file({"weight": lm_head(dv)}, str(path))
    return path


def write_verifier_embedding(directory: Path, dv: int = 24) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    table = torch.from_numpy(np.random.default_rng(5).normal(size=(VOCAB, dv))).float()
    save_file({"model.language_model.embed_tokens.weight": table}, str(directory / "model.safetensors"))
    return directory
