"""Layout descriptions of zarr stores, checked against their contracts in ``xsd/<kind>_store.schema.json``.

A *layout description* is what a reader relies on, read from the store's own
zarr metadata, as plain JSON::

    {"zarr_format": 3,
     "attributes": {...group attributes...},
     "arrays": {name: {"data_type", "shape", "chunks", "shards", "codecs"}}}

``chunks`` is the unit a reader decompresses; ``shards`` (``None`` when not
sharded) is the unit a writer writes; ``codecs`` are those of one chunk (inside
its shard), each ``{"name", **configuration}``.

JSON Schema cannot relate one array's shape to another's, so the schemas name
each axis (``title`` of the shape's ``prefixItems``, e.g. ``N``, ``T``, ``Dv``)
and :func:`validate_layout` checks that an axis has one size across the store,
and that the rows axis ``N`` holds at least ``n_committed`` rows.

Readers import this module, so it imports no writer and no model code.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import jsonschema
import zarr

from .schemas import _schema
from .store import StoreError, open_read_only

KINDS = {"sample": "sample_store", "feature": "feature_store"}
"""Store kind -> schema name in ``xsd/``."""
ROWS = "N"
"""Title of the rows axis (axis 0 of every array) in the schemas."""


def describe(path: str | Path) -> dict:
    """The layout description of the store at ``path`` (see the module docstring)."""
    path = Path(path)
    group = open_read_only(path)
    if group.metadata.zarr_format != 3:
        raise StoreError(f"{path}: zarr format {group.metadata.zarr_format}, stores are zarr v3")
    return {
        "zarr_format": group.metadata.zarr_format,
        "attributes": dict(group.attrs),
        "arrays": {name: _describe_array(array) for name, array in sorted(group.arrays())},
    }


def _describe_array(array: zarr.Array) -> dict:
    meta = array.metadata.to_dict()
    chunks = meta["chunk_grid"]["configuration"]["chunk_shape"]
    codecs = meta["codecs"]
    shards = None
    if len(codecs) == 1 and codecs[0]["name"] == "sharding_indexed":
        # The grid of a sharded array is its shards; the chunks and their codecs are in the sharding codec.
        inner = codecs[0]["configuration"]
        shards, chunks, codecs = chunks, inner["chunk_shape"], inner["codecs"]
    return {
        "data_type": meta["data_type"],
        "shape": list(meta["shape"]),
        "chunks": list(chunks),
        "shards": None if shards is None else list(shards),
        "codecs": [{"name": c["name"], **c.get("configuration", {})} for c in codecs],
    }


@lru_cache
def _validator(kind: str) -> jsonschema.Draft202012Validator:
    if kind not in KINDS:
        raise ValueError(f"store kind {kind!r}: expected one of {sorted(KINDS)}")
    return jsonschema.Draft202012Validator(_schema(KINDS[kind]))


def validate_layout(path: str | Path, kind: str) -> dict:
    """Check the store at ``path`` against ``xsd/<kind>_store.schema.json``; return its layout description.

    Raises :class:`StoreError` naming the store, the schema and the failing key
    (e.g. ``arrays/verifier_len/data_type`` or ``attributes: 'n_committed' is a
    required property``).
    """
    validator = _validator(kind)
    layout = describe(path)
    errors = sorted(validator.iter_errors(layout), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        shown = "; ".join(f"{'/'.join(map(str, e.absolute_path)) or '(store)'}: {e.message}" for e in errors[:5])
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        raise _mismatch(path, kind, f"{shown}{more}")
    _check_axes(path, kind, layout)
    return layout


def _check_axes(path, kind: str, layout: dict) -> None:
    """Equal sizes for equally named axes across arrays (the first in schema order sets it);
    at least ``n_committed`` rows."""
    documented = _validator(kind).schema["properties"]["arrays"]["properties"]
    seen: dict[str, tuple[int, str]] = {}
    for name in (name for name in documented if name in layout["arrays"]):
        axes = documented[name]["properties"]["shape"]["prefixItems"]
        for axis, size in zip(axes, layout["arrays"][name]["shape"]):
            title = axis.get("title")
            if title is None:
                continue
            size0, name0 = seen.setdefault(title, (size, name))
            if size != size0:
                detail = f"arrays/{name}/shape: axis {title} has size {size}, but {size0} in arrays/{name0}"
                raise _mismatch(path, kind, detail)
    n = layout["attributes"]["n_committed"]
    if ROWS in seen and seen[ROWS][0] < n:
        rows, name = seen[ROWS]
        raise _mismatch(path, kind, f"attributes/n_committed is {n}, but arrays/{name} has {rows} rows")


def _mismatch(path, kind: str, detail: str) -> StoreError:
    return StoreError(f"{path}: layout does not match xsd/{KINDS[kind]}.schema.json: {detail}")
