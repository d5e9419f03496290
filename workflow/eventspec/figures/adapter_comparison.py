"""``adapter_comparison.png``: every adapter's cosine proxy against its token-exact acceptance."""

from __future__ import annotations

from .common import tag

SIZE = (12, 5)


def plot(fig, inputs: list[dict], tau: float) -> None:
    """``inputs``: acceptance_metrics.json of single adapters (two-phase files are skipped)."""
    results = [r for r in inputs if r["adapter"]["kind"] != "two_phase"]
    t = tag(tau)
    rate, cons = fig.subplots(1, 2)
    panels = ((rate, f"accept_{t}", "token_top1_match", f"accept@0.{t} (cosine proxy)", "token top-1 match"),
              (cons, f"consecutive_mean_{t}", "consecutive_mean_token_exact", f"consecutive accepts @0.{t}",
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
