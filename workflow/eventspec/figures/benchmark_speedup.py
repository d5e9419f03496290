"""Measured speedup against the run's strongest peer (the fastest configuration needing no event camera) with its
95% bootstrap interval, beside the ideal from the baseline's measured verifier costs and each configuration's draft
cost and acceptance. Peers, methods and ceilings (``oracle*``, hatched) are groups set apart by a gap, each sorted by
speedup; a configuration without an ideal has no ideal bar. The legend sits above the axes, off the data."""

from .common import configs, label, mark_ceilings

SIZE = (8, 4.5)


def positions(rows: list[dict]) -> list[float]:
    """x of each configuration: one apart, with one more gap between groups (peers, methods, ceilings)."""
    x, out = 0.0, []
    for i, row in enumerate(rows):
        if i and row.get("role") != rows[i - 1].get("role"):
            x += 1.0
        out.append(x)
        x += 1.0
    return out


def plot(fig, inputs: list[dict], tau: float) -> None:
    """``inputs``: [summary.json]; ``tau`` unused."""
    summary, ax = inputs[0], fig.subplots()
    names, rows = configs(summary)
    x = positions(rows)
    measured = [r["speedup_vs_peer"] for r in rows]
    low = [m - r.get("speedup_vs_peer_ci95", [m, m])[0] for m, r in zip(measured, rows)]
    high = [r.get("speedup_vs_peer_ci95", [m, m])[1] - m for m, r in zip(measured, rows)]
    mark_ceilings(ax.bar([i - 0.2 for i in x], measured, 0.4, yerr=[low, high], capsize=2,
                         label="measured (geometric mean of paired ratios, 95% CI)", color="tab:blue"), rows)
    ideal = [(i, r) for i, r in zip(x, rows) if r["ideal_speedup_vs_peer"] is not None]
    mark_ceilings(ax.bar([i + 0.2 for i, _ in ideal], [r["ideal_speedup_vs_peer"] for _, r in ideal], 0.4,
                         label="ideal (baseline's verifier costs, own drafts, acceptance)", color="tab:orange"),
                  [r for _, r in ideal])
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_ylim(top=1.1 * max([m + h for m, h in zip(measured, high)] + [r["ideal_speedup_vs_peer"] for _, r in ideal]))
    ax.set_xticks(x, [label(n, r) for n, r in zip(names, rows)], rotation=45, ha="right")
    ax.set_ylabel("speedup vs the strongest peer")
    ax.set_title(f"strongest peer (fastest needing no event camera): {summary['strongest_peer']}", fontsize=9,
                 pad=24)
    ax.legend(fontsize=8, ncols=2, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
