"""What several figures share; figure modules import it, the registry (``__init__``) they never do."""

from __future__ import annotations

CEILING_HATCH = "//"
"""How ceilings (``oracle*``: the engine's upper bound, not methods) are drawn: hatched, after the methods."""


def mark_ceilings(bars, rows: list[dict]) -> None:
    """Hatch the bars of ceiling configurations (``bars`` in the order of ``rows``)."""
    for bar, row in zip(bars, rows):
        if row.get("role") == "ceiling":
            bar.set_hatch(CEILING_HATCH)
            bar.set_alpha(0.6)


def label(name: str, row: dict) -> str:
    """An axis label: ceilings say so."""
    return f"{name} (ceiling)" if row.get("role") == "ceiling" else name


GROUPS = ("peer", "method", "ceiling")


def configs(summary: dict) -> tuple[list[str], list[dict]]:
    """Configuration names and their summaries grouped (peers, methods, ceilings), each group sorted by
    speedup against the strongest peer, fastest first."""
    items = sorted(summary["configs"].items(), key=lambda item: (
        GROUPS.index(item[1].get("role", "method")), -item[1].get("speedup_vs_peer", 0.0)))
    return [name for name, _ in items], [row for _, row in items]


def tag(tau: float) -> str:
    """The metric-key suffix of a cosine threshold: 0.9 -> '90' (``accept_90``)."""
    return f"{round(tau * 100)}"


def names(metrics: dict, tau: float) -> list[tuple[str, str]]:
    """(metric suffix, label) of the accept maps plotted side by side: the cosine proxy at tau and token-exact."""
    return [(tag(tau), f"cos >= 0.{tag(tau)}"), ("token_exact", "token-exact")]
