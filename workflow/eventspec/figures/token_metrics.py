"""``token_metrics.png``: token-exact acceptance beside the cosine proxy, per position and per question type."""

from __future__ import annotations

import numpy as np

from .saving import names, plt, read, save


def plot(paths, out, tau: float = 0.9):
    """``paths``: the adapter's acceptance_metrics.json and position_stats.json."""
    metrics, positions = read(paths[0]), read(paths[1])
    tag = f"{round(tau * 100)}"
    fig, (pos, quest) = plt.subplots(1, 2, figsize=(13, 4.2), constrained_layout=True)
    rows = positions["overall"]
    x = [r["position"] for r in rows]
    pos.plot(x, [r["token_top1_match"] for r in rows], marker="o", color="k", label="token top-1")
    pos.plot(x, [r[f"accept_{tag}"] for r in rows], marker="s", label=f"cos >= 0.{tag}")
    pos.set(title="per position", xlabel="output position", ylim=(0, 1.02))
    pos.legend(fontsize=8)
    questions = sorted(metrics["per_question"])
    width = 0.38
    for i, (name, label) in enumerate(names(metrics, tau)):
        quest.bar(np.arange(len(questions)) + (i - 0.5) * width,
                  [metrics["per_question"][q][f"consecutive_mean_{name}"] for q in questions], width, label=label)
    quest.set_xticks(range(len(questions)), questions, rotation=35, ha="right")
    quest.set(title="consecutive accepts per question type", ylabel="tokens")
    quest.legend(fontsize=8)
    o = metrics["overall"]
    fig.suptitle(f"{metrics['adapter']['name']}: token top-1 {o['token_top1_match']:.3f}, token-exact consecutive "
                 f"{o['consecutive_mean_token_exact']:.2f} vs cosine-proxy {o[f'consecutive_mean_{tag}']:.2f}")
    return save(fig, out)
