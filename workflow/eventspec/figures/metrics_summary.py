"""``metrics_summary.png``: cosine histogram, per-position acceptance, consecutive accepts, speedup estimates."""

from __future__ import annotations

import numpy as np

from .common import names, tag

SIZE = (11, 7.5)
THRESHOLD_TAGS = ("80", "85", "90", "95")


def plot(fig, inputs: list[dict], tau: float) -> None:
    """``inputs``: the adapter's acceptance_metrics.json and position_stats.json."""
    metrics, positions = inputs
    overall = metrics["overall"]
    (hist, pos), (cons, speed) = fig.subplots(2, 2)
    edges = np.array(metrics["cos_histogram"]["edges"])
    hist.bar(edges[:-1], metrics["cos_histogram"]["counts"], width=np.diff(edges), align="edge", color="C0")
    hist.axvline(tau, color="k", ls="--", lw=1, label=f"tau = {tau:.2f}")
    hist.set(title=f"cosine similarity (mean {overall['cos_sim_mean']:.3f})", xlabel="cos", ylabel="positions")
    hist.legend()
    rows = positions["overall"]
    x = [r["position"] for r in rows]
    t = tag(tau)
    pos.plot(x, [r[f"accept_{t}"] for r in rows], marker="o", label=f"accept@0.{t}")
    pos.plot(x, [r["cos_mean"] for r in rows], marker="s", label="mean cos")
    pos.plot(x, [r["token_top1_match"] for r in rows], marker="^", ls="--", color="k", label="token top-1")
    pos.set(title="per position", xlabel="output position", ylim=(0, 1.02))
    pos.legend(fontsize=8)
    labels = [f"0.{t}" for t in THRESHOLD_TAGS] + ["token-exact"]
    keys = list(THRESHOLD_TAGS) + ["token_exact"]
    cons.bar(labels, [overall[f"consecutive_mean_{k}"] for k in keys],
             yerr=[overall[f"consecutive_std_{k}"] for k in keys], color=["C0"] * 4 + ["k"], capsize=3)
    cons.set(title="consecutive accepts per row (mean, std)", ylabel="tokens")
    stages = ["prefill", f"decode_gamma{metrics['gamma']}", "e2e"]
    width = 0.38
    for i, (name, label) in enumerate(names(metrics, tau)):
        speed.bar(np.arange(3) + (i - 0.5) * width, [overall[f"estimated_speedup_{s}_{name}"] for s in stages],
                  width, label=label)
    speed.axhline(1, color="grey", lw=1)
    speed.set_xticks(range(3), ["prefill", "decode", "end to end"])
    speed.set(title="ESTIMATED speedup (formula, config timing)", ylabel="x")
    speed.legend(fontsize=8)
    fig.suptitle(f"{metrics['adapter']['name']}: held-out acceptance ({overall['num_rows']} rows)")
