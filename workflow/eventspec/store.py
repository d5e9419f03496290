"""Zarr v3 stores written under the ``n_committed`` commit protocol.

A store is a group of arrays that share their first axis (rows = samples).
Writers grow capacity with ``resize``, write whole shards, and only then bump
the group attribute ``n_committed``; readers trust nothing past it. A killed
writer therefore leaves a store whose first ``n_committed`` rows are complete,
and a restarted writer resumes from there. Writers work in ``<out>.partial``
and rename it to ``<out>`` at the end, so the declared output of a Snakemake
job appears only when it is whole, while a failed job keeps what it committed.
"""

from __future__ import annotations

import os
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr
from zarr.codecs import BloscCodec

COMPRESSOR = BloscCodec(cname="zstd", clevel=3, shuffle="shuffle")
# For arrays read over and over (hidden states, every training epoch): lz4 decompresses about twice as fast as
# zstd for ~13% more bytes (`eventspec bench-store` on the toy store: 246k vs 121k rows/s, 49.5 vs 43.8 MB).
FAST_READ_COMPRESSOR = BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")

# Snakemake marks directory outputs with a `.snakemake_timestamp` file, which
# zarr reports as a foreign object whenever a group is listed.
warnings.filterwarnings("ignore", message=r"Object at \.snakemake_timestamp is not recognized")


class StoreError(RuntimeError):
    """A store that cannot be written or read; the message names the path."""


@dataclass(frozen=True)
class ArraySpec:
    """Row layout of one array: per-row shape, dtype, rows per chunk and the chunk's per-row shape.

    ``chunk_inner`` (default: the whole row) lets a chunk hold part of each row,
    e.g. the first positions of a sequence, so reads of short sequences
    decompress only the chunks they need.
    """

    row_shape: tuple[int, ...]
    dtype: object
    chunk_rows: int = 1
    chunk_inner: tuple[int, ...] | None = None
    compressor: BloscCodec = COMPRESSOR


def partial_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".partial")


def open_for_writing(
    out: str | Path,
    specs: dict[str, ArraySpec],
    attrs: dict,
    shard_rows: int,
    resume: bool,
) -> zarr.Group:
    """Open ``<out>.partial`` to append rows; reuse it when ``resume`` and its attrs match.

    ``attrs`` identify what is being written (config, inputs); a partial store
    written with other attrs is never resumed, it is started afresh.
    """
    work = partial_path(out)
    if resume and work.exists():
        try:
            group = zarr.open_group(work, mode="r+")
            if group.attrs.get("identity") == _jsonable(attrs) and set(specs) <= set(group.array_keys()):
                return group
        except (OSError, ValueError, KeyError):
            pass
    if work.exists():
        shutil.rmtree(work)
    try:
        group = zarr.open_group(work, mode="w")
    except OSError as err:
        raise StoreError(f"{work}: cannot create store ({err})") from err
    for name, spec in specs.items():
        chunk_rows = min(spec.chunk_rows, shard_rows)
        inner = spec.chunk_inner or spec.row_shape
        shard_inner = tuple(-(-size // c) * c for size, c in zip(spec.row_shape, inner))
        group.create_array(
            name,
            shape=(0, *spec.row_shape),
            chunks=(chunk_rows, *inner),
            shards=(shard_rows, *shard_inner) if spec.dtype is not str else None,
            dtype=spec.dtype,
            compressors=spec.compressor,
            fill_value="" if spec.dtype is str else 0,
        )
    group.attrs.update({"identity": _jsonable(attrs), "n_committed": 0})
    return group


def n_committed(group: zarr.Group) -> int:
    return int(group.attrs.get("n_committed", 0))


def append_rows(group: zarr.Group, rows: dict[str, np.ndarray]) -> int:
    """Write ``rows`` after the committed ones, then commit them; return the new count.

    Arrays are written in the order given; callers put lengths last, so a row
    is only counted once every array holding it is on disk.
    """
    start = n_committed(group)
    n = {len(v) for v in rows.values()}
    if len(n) != 1:
        raise StoreError(f"{group.store}: rows of unequal length {sorted(n)}")
    stop = start + n.pop()
    try:
        for name, values in rows.items():
            array = group[name]
            if array.shape[0] < stop:
                array.resize((stop, *array.shape[1:]))
            array[start:stop] = values
        group.attrs["n_committed"] = stop
    except OSError as err:
        raise StoreError(
            f"{group.store}: write failed at rows {start}:{stop} ({err}); "
            f"the first {start} rows stay committed and readable"
        ) from err
    return stop


def finish(out: str | Path, kind: str | None = None) -> Path:
    """Trim arrays to the committed rows and move ``<out>.partial`` into place.

    With ``kind`` ("sample", "feature"), the trimmed store must first match its
    contract ``xsd/<kind>_store.schema.json``: a layout drift fails the writer,
    and the declared output never appears.
    """
    from .store_layout import validate_layout  # store_layout imports this module

    out = Path(out)
    work = partial_path(out)
    group = zarr.open_group(work, mode="r+")
    n = n_committed(group)
    for _, array in group.arrays():
        if array.shape[0] != n:
            array.resize((n, *array.shape[1:]))
    if kind is not None:
        validate_layout(work, kind)
    if out.exists():
        shutil.rmtree(out)
    os.replace(work, out)
    return out


def open_read_only(path: str | Path) -> zarr.Group:
    """The store at ``path``, read-only; a missing path or a non-zarr directory is a ``StoreError`` naming it."""
    path = Path(path)
    if not path.exists():
        raise StoreError(f"{path}: store missing")
    try:
        return zarr.open_group(path, mode="r")
    except (OSError, ValueError) as err:
        raise StoreError(f"{path}: not a zarr store ({err})") from err


def open_committed(path: str | Path) -> tuple[zarr.Group, int]:
    """Open a store read-only with its committed row count."""
    group = open_read_only(path)
    return group, n_committed(group)


def _jsonable(obj):
    """Round-trip through JSON types, so attrs compare equal after storage."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj
