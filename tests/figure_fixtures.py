"""Draw a registered figure through ``eventspec figure``, as its Snakemake job does, and check the PNG."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from PIL import Image

from eventspec.cli import main as cli_main
from eventspec.figures.render import DPI


def draw(out_dir: Path, name: str, *inputs: Path, tau: float | None = None) -> Path:
    """``eventspec figure name --inputs ... --out <out_dir>/<name>.png``; the PNG is the module's SIZE at DPI."""
    out = Path(out_dir) / f"{name}.png"
    args = ["figure", name, "--inputs", *map(str, inputs), "--out", str(out)]
    assert cli_main(args + (["--tau", str(tau)] if tau is not None else [])) == 0
    width, height = importlib.import_module(f"eventspec.figures.{name}").SIZE
    with Image.open(out) as png:
        assert png.size == pytest.approx((width * DPI, height * DPI), abs=1), (name, png.size)
    return out
