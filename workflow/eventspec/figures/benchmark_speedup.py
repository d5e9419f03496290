"""Measured speedup against vl_baseline (same run), beside the ideal from measured component costs."""

from .common import configs

SIZE = (8, 4.5)


def plot(fig, inputs: list[dict], tau: float) -> None:
    """``inputs``: [summary.json]; ``tau`` unused."""
    summary, ax = inputs[0], fig.subplots()
    names, rows = configs(summary)
    x = range(len(names))
    ax.bar([i - 0.2 for i in x], [r["speedup"] for r in rows], 0.4, label="measured")
    ax.bar([i + 0.2 for i in x], [r["ideal_speedup"] or 0 for r in rows], 0.4, label="ideal (components x acceptance)")
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xticks(list(x), names, rotation=45, ha="right")
    ax.set_ylabel("speedup vs vl_baseline")
    ax.legend()
