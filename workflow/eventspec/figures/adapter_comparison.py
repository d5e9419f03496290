"""``adapter_comparison.png``: every adapter's cosine proxy against its token-exact acceptance."""

from __future__ import annotations

from .saving import plt, read, save


def plot(paths, out, tau: float = 0.9):
    """``paths``: acceptance_metrics.json of single adapters (two-phase files are skipped)."""
    results = [r for r in map(read, paths) if r["adapter"]["kind"] != "two_phase"]
    tag = f"{round(tau * 100)}"
    fig, (rate, cons) = plt.subplots(1, 2, figsize=(12, 5), constrained_layout=True)
    panels = ((rate, f"accept_{tag}", "token_top1_match", f"accept@0.{tag} (cosine proxy)", "token top-1 match"),
              (cons, f"consecutive_mean_{tag}", "consecutive_mean_token_exact", f"consecutive accepts @0.{tag}",
               "token-exact consecutive accepts"))
    for ax, proxy, exact, xlabel, ylabel in panels:
        for r in results:
            o = r["overall"]
            color = "C0" if r["adapter"]["kind"] == "prefill" else "C3"
            ax.scatter(o[proxy], o[exact], color=color)
            ax.annotate(r["adapter"]["name"], (o[proxy], o[exact]), fontsize=8, xytext=(3, 3), textcoords="offset points")
        low = min([0.0] + [min(r["overall"][proxy], r["overall"][exact]) for r in results])
        high = max([1.0] + [max(r["overall"][proxy], r["overall"][exact]) for r in results])
        ax.plot([low, high], [low, high], color="grey", ls=":", lw=1)
        ax.set(xlabel=xlabel, ylabel=ylabel)
    rate.set_title("blue: prefill adapters, red: decode heads")
    fig.suptitle("cosine proxy vs token-exact acceptance across adapters")
    return save(fig, out)
