"""Tokens per verifier forward (τ, bonus included) and draft acceptance rate per configuration (ceilings hatched)."""

from .common import configs, label, mark_ceilings

SIZE = (8, 4.5)


def plot(fig, inputs: list[dict], tau: float) -> None:
    """``inputs``: [summary.json]; ``tau`` unused."""
    summary, ax = inputs[0], fig.subplots()
    names, rows = configs(summary)
    keep = [(label(n, r), r) for n, r in zip(names, rows) if r["tau"] is not None]
    mark_ceilings(ax.bar([n for n, _ in keep], [r["tau"] for _, r in keep], color="tab:blue"), [r for _, r in keep])
    ax.set_ylabel("τ: tokens per verifier forward")
    ax.tick_params(axis="x", rotation=45)
    rate = ax.twinx()
    drafted = [(n, r["acceptance_rate"]) for n, r in keep if r["acceptance_rate"] is not None]
    rate.plot([n for n, _ in drafted], [a for _, a in drafted], "o", color="tab:red")
    rate.set_ylim(0, 1.05)
    rate.set_ylabel("draft acceptance rate", color="tab:red")
