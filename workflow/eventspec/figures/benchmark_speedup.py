"""Measured speedup against the run's strongest peer (the fastest configuration needing no event camera), beside
the ideal from the baseline's measured verifier costs and each configuration's draft cost and acceptance.
Ceilings (``oracle*``) are hatched and set apart after a gap; a configuration without an ideal has no ideal bar."""

from .common import configs, label, mark_ceilings

SIZE = (8, 4.5)


def positions(rows: list[dict]) -> list[float]:
    """x of each configuration: one apart, with one more gap before the first ceiling."""
    x, out = 0.0, []
    for i, row in enumerate(rows):
        if i and row.get("role") == "ceiling" and rows[i - 1].get("role") != "ceiling":
            x += 1.0
        out.append(x)
        x += 1.0
    return out


def plot(fig, inputs: list[dict], tau: float) -> None:
    """``inputs``: [summary.json]; ``tau`` unused."""
    summary, ax = inputs[0], fig.subplots()
    names, rows = configs(summary)
    x = positions(rows)
    mark_ceilings(ax.bar([i - 0.2 for i in x], [r["speedup_vs_peer"] for r in rows], 0.4, label="measured (median)",
                         color="tab:blue"), rows)
    ideal = [(i, r) for i, r in zip(x, rows) if r["ideal_speedup_vs_peer"] is not None]
    mark_ceilings(ax.bar([i + 0.2 for i, _ in ideal], [r["ideal_speedup_vs_peer"] for _, r in ideal], 0.4,
                         label="ideal (baseline's verifier costs, own drafts, acceptance)", color="tab:orange"),
                  [r for _, r in ideal])
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_ylim(top=1.3 * max([r["speedup_vs_peer"] for r in rows] + [r["ideal_speedup_vs_peer"] for _, r in ideal]))
    ax.set_xticks(x, [label(n, r) for n, r in zip(names, rows)], rotation=45, ha="right")
    ax.set_ylabel("speedup vs the strongest peer")
    ax.set_title(f"strongest peer (fastest needing no event camera): {summary['strongest_peer']}", fontsize=9)
    ax.legend(fontsize=8, ncols=2, loc="upper center")
