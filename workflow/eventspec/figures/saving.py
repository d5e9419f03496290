"""What every Stage 3 figure shares: reading its metrics JSON and writing the PNG."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())


def save(fig, out: str | Path, dpi: int = 110) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)
    plt.close(fig)
    return out


def names(metrics: dict, tau: float) -> list[tuple[str, str]]:
    """(metric suffix, label) of the accept maps plotted side by side: the cosine proxy at tau and token-exact."""
    tag = f"{round(tau * 100)}"
    return [(tag, f"cos >= 0.{tag}"), ("token_exact", "token-exact")]
