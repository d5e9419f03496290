"""``token_metrics.png``: token-exact acceptance beside the cosine proxy, per position and per question type."""

from __future__ import annotations

import numpy as np

from .common import names, tag

SIZE = (13, 4.2)


def plot(fig, inputs: list[dict], tau: float) -> None:
    """``inputs``: the adapter's acceptance_metrics.json and position_stats.json."""
    metrics, positions = inputs
    t = tag(tau)
    pos, quest = fig.subplots(1, 2)
    rows = positions["overall"]
    x = [r["position"] for r in rows]
    pos.plot(x, [r["token_top1_match"] for r in rows], marker="o", color="k", label="token top-1")
    pos.plot(x, [r[f"accept_{t}"] for r in rows], marker="s", label=f"cos >= 0.{t}")
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
                 f"{o['consecutive_mean_token_exact']:.2f} vs cosine-proxy {o[f'consecutive_mean_{t}']:.2f}")
