"""Accepted drafts per decode-phase round (rounds that had drafts), per configuration; ceilings hatched."""

from .common import CEILING_HATCH, configs, label

SIZE = (8, 4.5)


def plot(fig, inputs: list[dict], tau: float) -> None:
    """``inputs``: [summary.json]; ``tau`` unused."""
    summary, ax = inputs[0], fig.subplots()
    names, rows = configs(summary)
    keep = [(label(n, r), r) for n, r in zip(names, rows) if r["acceptance_histogram"]]
    width = 0.8 / max(len(keep), 1)
    for j, (name, row) in enumerate(keep):
        hist = row["acceptance_histogram"]
        total = sum(hist.values())
        ax.bar([int(k) + j * width for k in hist], [v / total for v in hist.values()], width, label=name,
               hatch=CEILING_HATCH if row.get("role") == "ceiling" else None)
    ax.set_xlabel("drafts accepted in a decode round")
    ax.set_ylabel("share of rounds")
    ax.legend(fontsize="small")
