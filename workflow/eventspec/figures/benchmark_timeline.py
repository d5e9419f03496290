"""Prefill hiding: the verifier's prefill beside the drafter's prefill and drafting in the worker (means);
ceilings hatched."""

from .common import CEILING_HATCH, configs, label

SIZE = (8, 4.5)


def plot(fig, inputs: list[dict], tau: float) -> None:
    """``inputs``: [summary.json]; ``tau`` unused."""
    summary, ax = inputs[0], fig.subplots()
    names, rows = configs(summary)
    keep = [(n, r) for n, r in zip(names, rows) if r["drafter_prefill_s_mean"]]
    for i, (name, r) in enumerate(keep):
        v, d = 1e3 * r["prefill_s_mean"], 1e3 * r["drafter_prefill_s_mean"]
        hatch = CEILING_HATCH if r.get("role") == "ceiling" else None
        ax.barh(i + 0.2, v, 0.35, color="tab:blue", hatch=hatch, label="verifier prefill" if i == 0 else None)
        ax.barh(i - 0.2, d, 0.35, color="tab:orange", hatch=hatch, label="drafter prefill" if i == 0 else None)
        ax.barh(i - 0.2, 1e3 * r["wait_s_mean"], 0.35, left=v, color="tab:gray",
                label="verifier waits for the drafter" if i == 0 else None)
        ax.text(max(v + 1e3 * r["wait_s_mean"], d) * 1.02, i,
                f"{r['early_drafts_mean']:.1f} drafts, {r['early_accepted_mean']:.1f} acc.", va="center", fontsize=7)
    ax.set_yticks(range(len(keep)), [label(n, r) for n, r in keep])
    ends = [1e3 * max(r["prefill_s_mean"] + r["wait_s_mean"], r["drafter_prefill_s_mean"]) for _, r in keep]
    ax.set_xlim(0, 1.45 * max(ends, default=1.0))  # room for the annotations inside the axes
    ax.set_xlabel("ms from the start of the pair")
    ax.legend(fontsize="small", ncols=3, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
