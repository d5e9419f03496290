"""Tokens per verifier forward (τ, bonus included) and draft acceptance rate per configuration."""

from .common import configs

SIZE = (8, 4.5)


def plot(fig, inputs: list[dict], tau: float) -> None:
    """``inputs``: [summary.json]; ``tau`` unused."""
    summary, ax = inputs[0], fig.subplots()
    names, rows = configs(summary)
    keep = [(n, r) for n, r in zip(names, rows) if r["tau"] is not None]
    ax.bar([n for n, _ in keep], [r["tau"] for _, r in keep], color="tab:blue")
    ax.set_ylabel("τ: tokens per verifier forward")
    ax.tick_params(axis="x", rotation=45)
    rate = ax.twinx()
    rate.plot([n for n, _ in keep], [r["acceptance_rate"] or 0 for _, r in keep], "o", color="tab:red")
    rate.set_ylim(0, 1.05)
    rate.set_ylabel("draft acceptance rate", color="tab:red")
