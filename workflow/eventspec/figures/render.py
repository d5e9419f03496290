"""``render(name, sources, out, tau)``: how every registered figure becomes a PNG (``eventspec figure``).

A ``matplotlib.figure.Figure`` without pyplot: no global figure state and no GUI backend machinery to
import, so a figure job (one per PNG, dozens per run) starts faster; ``savefig`` writes through Agg.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

from matplotlib.figure import Figure

DPI = 110


def render(name: str, sources: list[str | Path], out: str | Path, tau: float) -> Path:
    """Draw figure ``name`` (a registered module of this package) from the JSON files ``sources`` into ``out``."""
    module = importlib.import_module(f"{__package__}.{name}")
    inputs = [json.loads(Path(source).read_text()) for source in sources]
    fig = Figure(figsize=module.SIZE, layout="constrained")
    module.plot(fig, inputs, tau)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=DPI)
    return out
