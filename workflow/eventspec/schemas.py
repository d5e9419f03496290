"""JSON Schemas (xsd/) of every JSON file the pipeline writes, checked before writing."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import jsonschema

XSD = Path(__file__).resolve().parent / "xsd"


@lru_cache
def _schema(name: str) -> dict:
    return json.loads((XSD / f"{name}.schema.json").read_text())


def write_json(path: str | Path, obj: dict, schema: str, indent: int = 2) -> dict:
    """Validate ``obj`` against ``xsd/<schema>.schema.json`` and write it; a violation is a bug, raised as such."""
    jsonschema.validate(obj, _schema(schema))
    Path(path).write_text(json.dumps(obj, indent=indent, sort_keys=True) + "\n")
    return obj
