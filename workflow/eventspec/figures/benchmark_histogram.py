"""Accepted drafts per decode round (rounds that had drafts), per configuration."""

from . import configs


def plot(summary: dict, ax) -> None:
    names, rows = configs(summary)
    keep = [(n, r["acceptance_histogram"]) for n, r in zip(names, rows) if r["acceptance_histogram"]]
    width = 0.8 / max(len(keep), 1)
    for j, (name, hist) in enumerate(keep):
        total = sum(hist.values())
        ax.bar([int(k) + j * width for k in hist], [v / total for v in hist.values()], width, label=name)
    ax.set_xlabel("drafts accepted in a round")
    ax.set_ylabel("share of rounds")
    ax.legend(fontsize="small")
