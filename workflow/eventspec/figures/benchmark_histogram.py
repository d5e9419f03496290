"""Accepted drafts per decode round (rounds that had drafts), per configuration."""

from .common import configs

SIZE = (8, 4.5)


def plot(fig, inputs: list[dict], tau: float) -> None:
    """``inputs``: [summary.json]; ``tau`` unused."""
    summary, ax = inputs[0], fig.subplots()
    names, rows = configs(summary)
    keep = [(n, r["acceptance_histogram"]) for n, r in zip(names, rows) if r["acceptance_histogram"]]
    width = 0.8 / max(len(keep), 1)
    for j, (name, hist) in enumerate(keep):
        total = sum(hist.values())
        ax.bar([int(k) + j * width for k in hist], [v / total for v in hist.values()], width, label=name)
    ax.set_xlabel("drafts accepted in a round")
    ax.set_ylabel("share of rounds")
    ax.legend(fontsize="small")
