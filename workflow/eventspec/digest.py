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

BYTES_PER_BLOCK = 16 << 20
"""Upper bound on the bytes one digest read holds (a 1440x1080 DSEC clip of 8 frames is 37 MB per row)."""


def block_rows(array) -> int:
    """Rows per hashed block: as many as fit ``BYTES_PER_BLOCK``, from the array's metadata alone.

    Depends only on dtype and row shape, so block boundaries (and hence the
    digest) are the same on every machine and for every reader.
    """
    row_bytes = max(1, int(np.prod(array.shape[1:], dtype=np.int64)) * max(array.dtype.itemsize, 1))
    return max(1, BYTES_PER_BLOCK // row_bytes)


def block_sha256(array, rows: slice) -> str:
    """sha256 of rows ``rows`` of ``array`` (strings length-prefixed, so boundaries cannot shift)."""
    h = hashlib.sha256()
    block = np.asarray(array[rows])
    if block.dtype.kind in "OUT":
        for value in block.ravel():
            encoded = str(value).encode()
            h.update(len(encoded).to_bytes(8, "little") + encoded)
    else:
        h.update(memoryview(np.ascontiguousarray(block)).cast("B"))
    return h.hexdigest()


def block_slices(array, n_rows: int) -> list[slice]:
    step = block_rows(array)
    return [slice(start, min(start + step, n_rows)) for start in range(0, n_rows, step)]


def array_blocks(array, n_rows: int) -> list[str]:
    """sha256 of each block of the first ``n_rows`` rows, read one byte-bounded block at a time."""
    return [block_sha256(array, rows) for rows in block_slices(array, n_rows)]


def array_sha256(array, n_rows: int, blocks: list[str]) -> str:
    """sha256 over dtype, row shape, row count and the block hashes (a two-level hash of the rows)."""
    h = hashlib.sha256(f"{array.dtype}|{tuple(array.shape[1:])}|{n_rows}".encode())
    for block in blocks:
        h.update(bytes.fromhex(block))
    return h.hexdigest()


def store_digest(path: str | Path) -> dict:
    """Digest of a committed store: per-array sha256 and block hashes, row count, the writer's identity attrs."""
    group, n = open_committed(path)
    blocks = {name: array_blocks(array, n) for name, array in sorted(group.arrays())}
    return {
        "n_committed": n,
        "arrays": {name: array_sha256(group[name], n, blocks[name]) for name in blocks},
        "blocks": blocks,
        "config": group.attrs.get("identity", {}),
    }


def verify_rows(path: str | Path, digest: dict, digest_path: str | Path, arrays: list[str], rows: np.ndarray) -> None:
    """Check, cheaply, that a store is the one ``digest`` describes, for the rows a reader will use.

    Compares metadata (row count, writer identity, array names) and re-hashes
    only the blocks of ``arrays`` that hold ``rows``, not the whole store.
    Raises ``DigestMismatch`` naming the store, the digest and the array.
    """
    group, n = open_committed(path)
    if n != digest["n_committed"] or group.attrs.get("identity", {}) != digest["config"]:
        raise DigestMismatch(f"{path}: committed rows or writer config differ from {digest_path}")
    if sorted(name for name, _ in group.arrays()) != sorted(digest["arrays"]):
        raise DigestMismatch(f"{path}: arrays differ from those listed in {digest_path}")
    for name in arrays:
        array = group[name]
        step = block_rows(array)
        for b in sorted(set((np.asarray(rows) // step).tolist())):
            if block_sha256(array, slice(b * step, min((b + 1) * step, n))) != digest["blocks"][name][b]:
                raise DigestMismatch(f"{path}: rows {b * step}.. of '{name}' do not match {digest_path}")


class DigestMismatch(ValueError):
    """A store whose content is not what its digest says; the message names both files."""


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
