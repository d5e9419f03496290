"""The toy world as a Snakemake output: generated sequences plus a content manifest.

Downstream rules depend on the manifest (a small file Snakemake checksums), not
on the directory (which Snakemake never checksums), so regenerating an
identical world does not re-run what reads it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ..digest import write_manifest
from .generate import generate_toy_world


def write_toy_world(root: str | Path, toy_cfg: dict, manifest: str | Path, workers: int | None = None) -> dict:
    """Generate the toy world into ``root`` (replacing it) and write its manifest."""
    root = Path(root)
    if root.exists():
        shutil.rmtree(root)
    generate_toy_world(root, toy_cfg, workers=workers)
    return write_manifest(manifest, {"toy_dsec": root}, toy_cfg)
