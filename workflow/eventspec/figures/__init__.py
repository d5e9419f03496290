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


def configs(summary: dict) -> tuple[list[str], list[dict]]:
    """Configuration names and their summaries, in the benchmark's order."""
    return list(summary["configs"]), list(summary["configs"].values())
