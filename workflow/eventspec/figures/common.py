"""What several figures share; figure modules import it, the registry (``__init__``) they never do."""

from __future__ import annotations


def configs(summary: dict) -> tuple[list[str], list[dict]]:
    """The benchmark's configuration names and their summaries, in the benchmark's order."""
    return list(summary["configs"]), list(summary["configs"].values())


def tag(tau: float) -> str:
    """The metric-key suffix of a cosine threshold: 0.9 -> '90' (``accept_90``)."""
    return f"{round(tau * 100)}"


def names(metrics: dict, tau: float) -> list[tuple[str, str]]:
    """(metric suffix, label) of the accept maps plotted side by side: the cosine proxy at tau and token-exact."""
    return [(tag(tau), f"cos >= 0.{tag(tau)}"), ("token_exact", "token-exact")]
