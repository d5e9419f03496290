"""Stage 1: paired hidden states of the verifier and the drafter, into a feature store.

Per (window, question) pair:
- the verifier's greedy tokens and hidden states ``h_v``;
- the drafter's own free-running greedy tokens and hidden states ``h_d``;
- the drafter teacher-forced on the verifier's tokens (one forward), ``h_d_tf``:
  position t has read the same text prefix the verifier had when it produced
  token t, which is what drafting during decoding needs.

Pairs are ordered window-major and cut into batches; a shard is a contiguous
run of whole batches, so every batch (and so every float) is the same whether
a split is extracted by one job or by many, and resuming after a kill restarts
at the first uncommitted batch.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from . import store
from .config import ConfigError
from .digest import DigestMismatch, read_digest, verify_rows
from .hidden_dtype import STORAGE_DTYPES, to_storage
from .models.backend import Backend, greedy_generate, teacher_forced_hidden
from .models.drafter import load_drafter
from .models.eventgpt import MODEL_TYPE as EVENTGPT_MODEL_TYPE
from .models.loading import check_shared_vocabulary, load_tokenizer, locate_checkpoint, read_model_config, shared_vocab_size
from .models.verifier import load_verifier
from .store_layout import validate_layout

WHOLE_SHARD = 1 << 30
"""Chunk rows meaning "one chunk per shard" (store.open_for_writing caps chunks at the shard size)."""


class ExtractionError(RuntimeError):
    """Bad model output (NaN/Inf) or inconsistent inputs; the message names the sample."""


@dataclass(frozen=True)
class PairPlan:
    """Which (window, question) pairs a job extracts, in batches."""

    windows: np.ndarray  # [P] sample-store row of each pair
    questions: np.ndarray  # [P] question index of each pair
    batch_size: int

    @classmethod
    def for_split(cls, n_windows: int, n_questions: int, cfg: dict) -> "PairPlan":
        if cfg["max_samples"] >= 0:
            n_windows = min(n_windows, cfg["max_samples"])
        n_questions = min(n_questions, cfg["max_questions"])
        windows, questions = np.divmod(np.arange(n_windows * n_questions), n_questions)
        return cls(windows, questions, cfg["batch_size"])

    @property
    def n_batches(self) -> int:
        return math.ceil(len(self.windows) / self.batch_size)

    def shard(self, index: int, count: int) -> "PairPlan":
        """The ``index``-th of ``count`` contiguous runs of whole batches."""
        first = index * self.n_batches // count
        last = (index + 1) * self.n_batches // count
        rows = slice(first * self.batch_size, min(last * self.batch_size, len(self.windows)))
        return PairPlan(self.windows[rows], self.questions[rows], self.batch_size)


def padded(x: torch.Tensor, length: int, value=0) -> torch.Tensor:
    """Pad or cut axis 1 of ``x`` to ``length``."""
    if x.shape[1] >= length:
        return x[:, :length]
    pad = torch.full((x.shape[0], length - x.shape[1], *x.shape[2:]), value, dtype=x.dtype)
    return torch.cat([x, pad], dim=1)


def zero_after(x: torch.Tensor, lengths: torch.Tensor, value=0) -> torch.Tensor:
    """Set positions t >= lengths[b] to ``value`` (no stale values past a sequence's end)."""
    keep = torch.arange(x.shape[1])[None, :] < lengths[:, None]
    keep = keep.reshape(*keep.shape, *([1] * (x.dim() - 2)))
    return torch.where(keep, x, torch.as_tensor(value, dtype=x.dtype))


def check_finite(name: str, hidden: torch.Tensor, lengths: torch.Tensor, sample_ids: np.ndarray, question_ids: np.ndarray):
    bad = ~torch.isfinite(zero_after(hidden, lengths)).all(dim=(1, 2))
    if bad.any():
        i = int(bad.nonzero()[0])
        raise ExtractionError(
            f"{name}: NaN/Inf hidden state for sample {int(sample_ids[i])} question {int(question_ids[i])}"
        )


def check_lm_head_invariant(backend: Backend, hidden: torch.Tensor, tokens: torch.Tensor, lengths: torch.Tensor, sample_ids):
    """argmax(lm_head(h[t])) == token[t] on every generated position (before storage).

    Recomputing the logits may sum in another order than decoding did, so a
    token counts as reproduced when its logit is the maximum up to rounding
    of the model's dtype (an exact tie may then resolve either way).
    """
    with torch.no_grad():
        weight = backend.lm_head.weight
        logits = (hidden.to(weight.device, weight.dtype) @ weight.T).float().cpu()
    rel = 1e-4 if weight.dtype == torch.float32 else 1e-2
    best = logits.max(-1).values
    chosen = logits.gather(-1, tokens.clamp(min=0)[..., None])[..., 0]
    valid = torch.arange(tokens.shape[1])[None] < lengths[:, None]
    wrong = valid & (chosen < best - rel * best.abs().clamp(min=1.0))
    if wrong.any():
        i = int(wrong.any(1).nonzero()[0])
        raise ExtractionError(f"hidden-state convention broken for sample {int(sample_ids[i])}: lm_head(h) != token")


def extract_rows(verifier: Backend, drafter: Backend, samples, questions: list[str], w: np.ndarray, q: np.ndarray, ex: dict) -> dict:
    """Store rows of one batch of pairs (windows ``w``, question indices ``q``), checked before storage."""
    distinct, pair_window = np.unique(w, return_inverse=True)
    frames = np.asarray(samples["frames"].get_orthogonal_selection((distinct,)))
    events = np.asarray(samples["event_images"].get_orthogonal_selection((distinct,)))
    asked = [questions[i] for i in q]
    batch, raw = extract_batch(verifier, drafter, frames, events, asked, pair_window, ex["max_new_tokens"])
    check_finite("verifier", batch["verifier_hidden"], batch["verifier_len"], w, q)
    check_finite("drafter", batch["drafter_hidden"], batch["drafter_len"], w, q)
    check_finite("drafter (teacher-forced)", batch["drafter_hidden_tf"], batch["verifier_len"], w, q)
    check_lm_head_invariant(verifier, raw.hidden, raw.tokens, raw.lengths, w)
    return {
        "verifier_hidden": to_storage(batch["verifier_hidden"], ex["dtype"]),
        "drafter_hidden": to_storage(batch["drafter_hidden"], ex["dtype"]),
        "drafter_hidden_tf": to_storage(batch["drafter_hidden_tf"], ex["dtype"]),
        "verifier_tokens": batch["verifier_tokens"].numpy().astype(np.int32),
        "drafter_tokens": batch["drafter_tokens"].numpy().astype(np.int32),
        "sample_id": w.astype(np.int32),
        "question_id": q.astype(np.int32),
        "verifier_len": batch["verifier_len"].numpy().astype(np.int32),
        "drafter_len": batch["drafter_len"].numpy().astype(np.int32),
    }


def extract_batch(verifier: Backend, drafter: Backend, frames, event_images, questions, windows, max_new_tokens: int):
    """One batch of pairs: tokens, lengths and the three hidden-state tensors (float32, padded to T),
    plus the verifier's unpadded generation (for the hidden-state invariant check).

    ``frames`` and ``event_images`` hold each distinct window of the batch once; pair i asks
    ``questions[i]`` of window ``windows[i]``.
    """
    T = max_new_tokens
    v = greedy_generate(verifier, verifier.prepare(frames, questions, windows), T)
    d_inputs = drafter.prepare(event_images, questions, windows)
    d = greedy_generate(drafter, d_inputs, T)
    shared = shared_vocab_size(verifier.tokenizer, drafter.tokenizer)
    tf = teacher_forced_hidden(drafter, d_inputs, v.tokens, v.lengths, shared)
    return {
        "verifier_tokens": padded(zero_after(v.tokens, v.lengths, -1), T, -1),
        "drafter_tokens": padded(zero_after(d.tokens, d.lengths, -1), T, -1),
        "verifier_hidden": padded(zero_after(v.hidden, v.lengths), T),
        "drafter_hidden": padded(zero_after(d.hidden, d.lengths), T),
        "drafter_hidden_tf": padded(zero_after(tf, v.lengths), T),
        "verifier_len": v.lengths,
        "drafter_len": d.lengths,
    }, v


def feature_layout(
    T: int, dv: int, dd: int, dtype: str, chunk_rows: int, chunk_positions: int
) -> dict[str, store.ArraySpec]:
    """Arrays of a feature store; lengths come last so a row counts only once all of it is written.

    Hidden states are chunked along positions too: most answers are far
    shorter than ``max_new_tokens``, and a reader asks only for the positions
    its rows use.
    """
    spec = store.ArraySpec
    hidden_dtype = STORAGE_DTYPES[dtype]
    positions = min(chunk_positions, T)
    fast = store.FAST_READ_COMPRESSOR
    return {
        "verifier_hidden": spec((T, dv), hidden_dtype, chunk_rows, (positions, dv), fast),
        "drafter_hidden": spec((T, dd), hidden_dtype, chunk_rows, (positions, dd), fast),
        "drafter_hidden_tf": spec((T, dd), hidden_dtype, chunk_rows, (positions, dd), fast),
        "verifier_tokens": spec((T,), np.int32, WHOLE_SHARD),
        "drafter_tokens": spec((T,), np.int32, WHOLE_SHARD),
        "sample_id": spec((), np.int32, WHOLE_SHARD),
        "question_id": spec((), np.int32, WHOLE_SHARD),
        "verifier_len": spec((), np.int32, WHOLE_SHARD),
        "drafter_len": spec((), np.int32, WHOLE_SHARD),
    }


SAMPLE_ARRAYS_READ = ("frames", "event_images")
"""The sample-store arrays extraction reads (questions come from the store's attributes)."""


def check_sample_store(samples: str | Path, samples_digest: str | Path, windows: np.ndarray) -> dict:
    """Refuse a sample store that is not the one its digest (our input) describes, before any model work.

    Cheap: metadata plus the hashes of the blocks holding ``windows``, not a re-hash of the split.
    """
    expected = read_digest(samples_digest)
    try:
        verify_rows(samples, expected, samples_digest, list(SAMPLE_ARRAYS_READ), windows)
    except DigestMismatch as err:
        raise ExtractionError(f"{err} (built from another config or modified); rebuild the sample store") from err
    return expected


def identity(cfg: dict, split: str, samples_digest: dict) -> dict:
    """What a feature store's content depends on: models, extraction settings, the sample store."""
    ex = {k: v for k, v in cfg["extract"].items() if k not in ("shards",)}
    return {
        "stage": "features",
        "split": split,
        "models": cfg["models"],
        "extract": ex,
        "samples": {"n_committed": samples_digest["n_committed"], "arrays": samples_digest["arrays"]},
    }


def load_pair(models: dict) -> tuple[Backend, Backend]:
    """The verifier and drafter of ``models`` (the config's ``models`` section), checked as a pair first.

    Before any weights are read: both devices exist here, both paths resolve (directory or cached hub id),
    both configs are of the right architecture, both tokenizers load and agree on every id they share.
    """
    kinds = {"verifier": ("video_llava",), "drafter": (EVENTGPT_MODEL_TYPE, "llava")}
    paths = {}
    for name, model_types in kinds.items():
        paths[name], _ = locate_checkpoint(models[name]["path"], models[name]["device"], name)
        read_model_config(paths[name], model_types)
    tokenizers = {name: load_tokenizer(path) for name, path in paths.items()}
    check_shared_vocabulary(tokenizers["verifier"], tokenizers["drafter"], paths["verifier"], paths["drafter"])
    mv, md = models["verifier"], models["drafter"]
    verifier = load_verifier(paths["verifier"], mv["dtype"], mv["quant"], mv["device"])
    drafter = load_drafter(paths["drafter"], md["dtype"], md["quant"], md["device"],
                           vision_dtype=md.get("vision_dtype", "bfloat16"))
    return verifier, drafter


def extract_features(
    cfg: dict,
    split: str,
    samples: str | Path,
    samples_digest: str | Path,
    out: str | Path,
    shard: tuple[int, int] = (0, 1),
    resume: bool = True,
) -> Path:
    """Extract one shard of a split into ``out`` (a feature store), resuming from its committed rows."""
    ex = cfg["extract"]
    group, n_windows = store.open_committed(samples)
    validate_layout(samples, "sample")
    questions = [q["text"] for q in group.attrs["questions"]]
    plan = PairPlan.for_split(n_windows, len(questions), ex).shard(*shard)
    digest = check_sample_store(samples, samples_digest, np.unique(plan.windows))
    if ex["write_rows"] % ex["batch_size"] or ex["write_rows"] % ex["chunk_rows"]:
        raise ConfigError(
            f"extract.write_rows ({ex['write_rows']}) must be a multiple of extract.batch_size ({ex['batch_size']}) "
            f"and of extract.chunk_rows ({ex['chunk_rows']})"
        )
    mv, md = cfg["models"]["verifier"], cfg["models"]["drafter"]
    verifier, drafter = load_pair(cfg["models"])
    T = ex["max_new_tokens"]
    layout = feature_layout(
        T, verifier.hidden_size, drafter.hidden_size, ex["dtype"], ex["chunk_rows"], ex["chunk_positions"]
    )
    attrs = identity(cfg, split, digest) | {"shard": list(shard)}
    features = store.open_for_writing(out, layout, attrs, ex["write_rows"], resume)
    features.attrs.update(
        {
            "logical_dtype": ex["dtype"],
            "pad_token": -1,
            "model_ids": {"verifier": mv["path"], "drafter": md["path"]},
            "questions": group.attrs["questions"],
        }
    )
    done = store.n_committed(features)
    if done:
        print(f"extract[{split} {shard[0]}/{shard[1]}]: resuming at pair {done} of {len(plan.windows)}"
              f" ({done} committed by an earlier run)", file=sys.stderr, flush=True)
    bar = tqdm(total=len(plan.windows), initial=done, desc=f"extract[{split} {shard[0]}/{shard[1]}]", unit="pair")
    pending: list[dict] = []
    for start in range(done, len(plan.windows), plan.batch_size):
        rows = slice(start, start + plan.batch_size)
        pending.append(extract_rows(verifier, drafter, group, questions, plan.windows[rows], plan.questions[rows], ex))
        bar.update(len(pending[-1]["sample_id"]))
        if sum(len(p["sample_id"]) for p in pending) >= ex["write_rows"] or rows.stop >= len(plan.windows):
            store.append_rows(features, {name: np.concatenate([p[name] for p in pending]) for name in layout})
            pending = []
    bar.close()
    return store.finish(out, kind="feature")


def gather_features(parts: list[str | Path], out: str | Path) -> Path:
    """Concatenate shard stores (in order) into one store; its identity drops the shard index.

    Rows are regrouped so that every write fills exactly one shard of the
    gathered store, whatever the parts' sizes.
    """
    first, _ = store.open_committed(parts[0])
    attrs = {k: v for k, v in first.attrs["identity"].items() if k != "shard"}
    layout = {
        name: store.ArraySpec(
            tuple(a.shape[1:]), str if a.dtype.kind == "T" else a.dtype, a.chunks[0], a.chunks[1:], a.compressors[0]
        )
        for name, a in first.arrays()
    }
    shard_rows = first[next(iter(layout))].shards[0]
    gathered = store.open_for_writing(out, layout, attrs, shard_rows, resume=False)
    gathered.attrs.update({k: v for k, v in first.attrs.items() if k not in ("identity", "n_committed")})
    pending: dict[str, list[np.ndarray]] = {name: [] for name in layout}
    buffered = 0
    for part in parts:
        group, n = store.open_committed(part)
        for start in range(0, n, shard_rows):
            rows = slice(start, min(start + shard_rows, n))
            for name in layout:
                pending[name].append(np.asarray(group[name][rows]))
            buffered += rows.stop - rows.start
            while buffered >= shard_rows:
                joined = {name: np.concatenate(blocks) for name, blocks in pending.items()}
                store.append_rows(gathered, {name: rows_[:shard_rows] for name, rows_ in joined.items()})
                pending = {name: [rows_[shard_rows:]] for name, rows_ in joined.items()}
                buffered -= shard_rows
    if buffered:
        store.append_rows(gathered, {name: np.concatenate(blocks) for name, blocks in pending.items()})
    return store.finish(out, kind="feature")
