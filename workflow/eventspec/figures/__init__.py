"""Figures, each from one small metrics JSON: restyling a plot never re-runs anything upstream.

``figure(name, summary_json, out_png)`` imports ``eventspec.figures.<name>`` and calls its ``plot(summary, ax)``.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path


def figure(name: str, source: str | Path, out: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    module = importlib.import_module(f"{__name__}.{name}")
    summary = json.loads(Path(source).read_text())
    fig, ax = plt.subplots(figsize=(8, 4.5), layout="constrained")
    module.plot(summary, ax)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)


CEILING_HATCH = "//"
"""How ceilings (``oracle*``: the engine's upper bound, not methods) are drawn: hatched, after the methods."""


def configs(summary: dict) -> tuple[list[str], list[dict]]:
    """Configuration names and their summaries: the strongest peer first, the ceilings last."""
    peer = summary.get("strongest_peer")
    items = sorted(summary["configs"].items(), key=lambda item: (item[0] != peer, item[1].get("role") == "ceiling"))
    return [name for name, _ in items], [row for _, row in items]


def mark_ceilings(bars, rows: list[dict]) -> None:
    """Hatch the bars of ceiling configurations (``bars`` in the order of ``rows``)."""
    for bar, row in zip(bars, rows):
        if row.get("role") == "ceiling":
            bar.set_hatch(CEILING_HATCH)
            bar.set_alpha(0.6)


def label(name: str, row: dict) -> str:
    """An axis label: ceilings say so."""
    return f"{name} (ceiling)" if row.get("role") == "ceiling" else name
