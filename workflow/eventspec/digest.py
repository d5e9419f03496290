"""Content digests of stores: the small files downstream rules depend on.

Snakemake checksums small inputs, so a recomputed store with identical content
yields an identical digest file and does not re-trigger what reads it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from .schemas import write_json
from .store import open_committed

ROWS_PER_READ = 256


def array_sha256(array, n_rows: int) -> str:
    """sha256 over dtype, row shape and the first ``n_rows`` rows of ``array``."""
    h = hashlib.sha256()
    h.update(f"{array.dtype}|{tuple(array.shape[1:])}|{n_rows}".encode())
    for start in range(0, n_rows, ROWS_PER_READ):
        block = np.asarray(array[start : min(start + ROWS_PER_READ, n_rows)])
        if block.dtype.kind in "OUT":
            for value in block.ravel():
                encoded = str(value).encode()
                h.update(len(encoded).to_bytes(8, "little") + encoded)
        else:
            h.update(np.ascontiguousarray(block).tobytes())
    return h.hexdigest()


def store_digest(path: str | Path) -> dict:
    """Digest of a committed store: per-array sha256, row count and the writer's identity attrs."""
    group, n = open_committed(path)
    arrays = {name: array_sha256(array, n) for name, array in sorted(group.arrays())}
    return {
        "n_committed": n,
        "arrays": arrays,
        "config": group.attrs.get("identity", {}),
    }


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def tree_sha256(root: str | Path) -> dict[str, str]:
    """sha256 of every file below ``root``, keyed by relative path."""
    root = Path(root)
    return {str(p.relative_to(root)): file_sha256(p) for p in sorted(root.rglob("*")) if p.is_file()}


def write_manifest(out: str | Path, trees: dict[str, str | Path], config: dict) -> dict:
    """A manifest of generated directories: per-file sha256 plus the config that made them."""
    content = {"config": config, "trees": {name: tree_sha256(path) for name, path in trees.items()}}
    return write_json(out, content, "manifest", indent=1)


def write_digest(store: str | Path, out: str | Path) -> dict:
    return write_json(out, store_digest(store), "digest")


def read_digest(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())
