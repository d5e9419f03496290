"""``eventspec bench-store``: our feature store against the seeds' chunk layout, side by side.

The same features (drafter and verifier hidden states of every pair, and the
aligned length) are written twice, in one run:
- the seeds' layout: ``torch.save`` float32 chunks of ``chunk_size`` samples,
  padded to the chunk's longest sequence, keys ``egpt_hidden``, ``vl_hidden``,
  ``seq_lens``, plus ``index.json``;
- ours: a zarr v3 store written through ``eventspec.store`` with the feature
  store's own layout (float16 hidden states, Blosc lz4 + byte shuffle, one
  shard per write batch).
Then both are read the way training reads them (chunk/block-streamed, masked
batches in the stored dtype: float32 for theirs, float16 for ours) and bytes
on disk, throughput and their ratios are printed.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from . import store
from .extract import feature_layout
from .hidden_dtype import from_storage
from .features import FeatureStore

# Ours also carries the verifier's tokens, which training reads (CE term, token top-1); the seeds' chunks do not.
FIELDS = ("drafter_hidden", "verifier_hidden", "verifier_tokens", "verifier_len", "drafter_len")


def disk_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def load_features(path: str | Path, max_rows: int | None) -> tuple[dict[str, np.ndarray], str]:
    group, n = store.open_committed(path)
    n = min(n, max_rows) if max_rows else n
    return {name: np.asarray(group[name][:n]) for name in FIELDS}, group.attrs["logical_dtype"]


def aligned_lengths(features: dict) -> np.ndarray:
    return np.minimum(features["verifier_len"], features["drafter_len"]).astype(np.int64)


def write_seeds_layout(features: dict, logical_dtype: str, out: Path, chunk_size: int) -> None:
    """The seeds' ``chunked_*`` directory: float32 chunks padded to the chunk's longest sample."""
    (out / "chunks").mkdir(parents=True)
    lengths = aligned_lengths(features)
    n = len(lengths)
    chunks = []
    for start in range(0, n, chunk_size):
        rows = slice(start, min(start + chunk_size, n))
        width = max(int(lengths[rows].max()), 1)
        name = f"chunk_{start:06d}.pt"
        torch.save(
            {
                "egpt_hidden": from_storage(features["drafter_hidden"][rows, :width], logical_dtype).contiguous(),
                "vl_hidden": from_storage(features["verifier_hidden"][rows, :width], logical_dtype).contiguous(),
                "seq_lens": torch.from_numpy(lengths[rows]),
            },
            out / "chunks" / name,
        )
        chunks.append({"path": name, "start_idx": start, "n_samples": rows.stop - start})
    (out / "index.json").write_text(json.dumps({"total_samples": n, "chunk_size": chunk_size, "chunks": chunks}))


def write_our_layout(features: dict, logical_dtype: str, out: Path, shard_rows: int, chunks: tuple[int, int]) -> None:
    T, dv = features["verifier_hidden"].shape[1:]
    dd = features["drafter_hidden"].shape[2]
    layout = {k: v for k, v in feature_layout(T, dv, dd, logical_dtype, *chunks).items() if k in FIELDS}
    group = store.open_for_writing(out, layout, {"stage": "bench-store"}, shard_rows, resume=False)
    group.attrs["logical_dtype"] = logical_dtype
    n = len(features["verifier_len"])
    for start in range(0, n, shard_rows):
        store.append_rows(group, {name: features[name][start : start + shard_rows] for name in layout})
    store.finish(out)


def read_seeds_layout(path: Path, batch_size: int, seed: int) -> int:
    """Stream the chunks like the seeds' ChunkedTrainLoader (chunk order and rows shuffled); return samples served."""
    index = json.loads((path / "index.json").read_text())
    generator = torch.Generator().manual_seed(seed)
    served = 0
    for c in torch.randperm(len(index["chunks"]), generator=generator).tolist():
        chunk = index["chunks"][c]
        data = torch.load(path / "chunks" / chunk["path"])
        width = data["vl_hidden"].shape[1]
        order = torch.randperm(chunk["n_samples"], generator=generator)
        for i in range(0, chunk["n_samples"], batch_size):
            pick = order[i : i + batch_size]
            drafter, verifier = data["egpt_hidden"][pick], data["vl_hidden"][pick]
            mask = torch.arange(width)[None] < data["seq_lens"][pick, None]
            served += int(drafter.shape[0]) if verifier.shape[0] == mask.shape[0] else 0
    return served


def read_our_layout(path: Path, batch_size: int, seed: int) -> int:
    # Our copy holds only FIELDS, not a whole feature store: no layout check.
    batches = FeatureStore(path, check_layout=False).batches(batch_size, teacher_forced=False, shuffle=True, seed=seed)
    return sum(int(b.drafter.shape[0]) for b in batches)


def store_codec(path: Path) -> str:
    """How our copy stores hidden states, e.g. ``float16 lz4``."""
    hidden = store.open_committed(path)[0]["verifier_hidden"]
    return f"{hidden.dtype} " + "+".join(f"blosc {c.cname.value}" for c in hidden.compressors)


def drop_page_cache() -> bool:
    """Evict the page cache (needs root); False where the kernel does not allow it."""
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def best_rate(read, path: Path, batch_size: int, repeats: int, cold: bool) -> float:
    """Samples per second, best of ``repeats`` full passes; ``cold`` drops the page cache before each."""
    rates = []
    for seed in range(repeats):
        if cold:
            drop_page_cache()
        start = time.perf_counter()
        served = read(path, batch_size, seed)
        rates.append(served / (time.perf_counter() - start))
    return max(rates)


def bench_store(
    features_path: str | Path,
    work_dir: str | Path,
    chunk_size: int = 1000,
    batch_size: int = 64,
    repeats: int = 3,
    max_rows: int | None = None,
    chunk_rows: int | None = None,
    chunk_positions: int | None = None,
) -> dict:
    work = Path(work_dir)
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    features, logical_dtype = load_features(features_path, max_rows)
    source = FeatureStore(features_path)
    shard_rows = source.shard_rows
    chunk_rows = chunk_rows or source.group["verifier_hidden"].chunks[0]
    chunk_positions = chunk_positions or source.group["verifier_hidden"].chunks[1]
    seeds, ours = work / "seeds_chunked", work / "ours.zarr"
    write_seeds_layout(features, logical_dtype, seeds, chunk_size)
    write_our_layout(features, logical_dtype, ours, shard_rows, (chunk_rows, chunk_positions))
    modes = ["warm", "cold"] if drop_page_cache() else ["warm"]
    result = {
        "samples": int(len(features["verifier_len"])),
        "hidden": {"T": int(features["verifier_hidden"].shape[1]), "Dv": int(features["verifier_hidden"].shape[2]),
                   "Dd": int(features["drafter_hidden"].shape[2])},
        "batch_size": batch_size,
        "ours_chunk": [int(chunk_rows), int(chunk_positions)],
        "ours_shard_rows": int(shard_rows),
        "ours_codec": store_codec(ours),
    }
    for name, path, read in (("seeds", seeds, read_seeds_layout), ("ours", ours, read_our_layout)):
        result[name] = {"bytes": disk_bytes(path)} | {
            f"read_{mode}_samples_per_s": best_rate(read, path, batch_size, repeats, mode == "cold") for mode in modes
        }
    result["bytes_ratio"] = result["ours"]["bytes"] / result["seeds"]["bytes"]
    for mode in modes:
        key = f"read_{mode}_samples_per_s"
        result[f"read_{mode}_ratio"] = result["ours"][key] / result["seeds"][key]
    return result


def format_result(r: dict) -> str:
    modes = [m for m in ("warm", "cold") if f"read_{m}_ratio" in r]
    header = "".join(f"{'read ' + m + ' samples/s':>24}" for m in modes)
    lines = [
        f"bench-store: {r['samples']} pairs, T={r['hidden']['T']}, Dv={r['hidden']['Dv']}, Dd={r['hidden']['Dd']},"
        f" shuffled batches of {r['batch_size']}",
        f"{'layout':<28}{'bytes on disk':>16}{header}",
    ]
    for name, label in (("seeds", "seeds (float32 torch.save)"), ("ours", f"ours (zarr {r['ours_codec']})")):
        rates = "".join(f"{r[name][f'read_{m}_samples_per_s']:>24,.0f}" for m in modes)
        lines.append(f"{label:<28}{r[name]['bytes']:>16,}{rates}")
    ratios = ", ".join(f"read {m} {r[f'read_{m}_ratio']:.2f}x" for m in modes)
    lines.append(f"ratio ours/seeds: bytes {r['bytes_ratio']:.3f} (target <= 0.35), {ratios} (target >= 1)")
    return "\n".join(lines)
