"""``stage_timeline.png``: per-stage time, verifier alone vs speculative decoding (ESTIMATED from the metrics' timing)."""

from __future__ import annotations

from .common import names

SIZE = (11, 5.2)


def stages(metrics: dict, name: str) -> tuple[list, list]:
    """(baseline, SD) as lists of (stage, start ms, duration ms) for the accept map ``name``."""
    t, o = metrics["timing"], metrics["overall"]
    tokens = o["num_hidden_tokens_mean"]
    free = o[f"prefill_free_tokens_mean_{name}"]
    speedup = o[f"estimated_speedup_decode_gamma{metrics['gamma']}_{name}"]
    baseline = [("verifier prefill", 0.0, t["vl_prefill_ms"]),
                ("verifier decode", t["vl_prefill_ms"], tokens * t["vl_decode_ms"])]
    start = max(t["vl_prefill_ms"], t["egpt_prefill_ms"])
    sd = [("drafter prefill", 0.0, t["egpt_prefill_ms"]),
          ("drafts behind prefill", t["egpt_prefill_ms"], max(start - t["egpt_prefill_ms"], 0.0)),
          ("verifier prefill", 0.0, t["vl_prefill_ms"]),
          ("SD decode", start, max(tokens - free, 0.0) * t["vl_decode_ms"] / speedup)]
    return baseline, sd


def plot(fig, inputs: list[dict], tau: float) -> None:
    """``inputs``: [acceptance_metrics.json] of an adapter or a two-phase pair."""
    metrics = inputs[0]
    variants = names(metrics, tau)
    axes = fig.subplots(len(variants), 1, sharex=True)
    colors = {"verifier prefill": "C0", "verifier decode": "C1", "drafter prefill": "C2",
              "drafts behind prefill": "C4", "SD decode": "C3"}
    for ax, (name, label) in zip(axes, variants):
        baseline, sd = stages(metrics, name)
        lanes = [("baseline", baseline), ("SD: verifier", [s for s in sd if s[0].startswith(("verifier", "SD"))]),
                 ("SD: drafter", [s for s in sd if s[0].startswith("draft")])]
        for y, (_, parts) in enumerate(lanes):
            for stage, start, length in parts:
                ax.barh(y, length, left=start, color=colors[stage], edgecolor="k", lw=0.5, label=stage)
        ax.set_yticks(range(len(lanes)), [lane for lane, _ in lanes])
        ax.invert_yaxis()
        total_b = sum(p[2] for p in baseline)
        total_sd = max(s[1] + s[2] for s in sd)
        ax.set(xlabel="ms (estimated)",
               title=f"{label}: {total_b:.0f} ms -> {total_sd:.0f} ms, ESTIMATED speedup {total_b / total_sd:.2f}x")
        handles, labels = ax.get_legend_handles_labels()
        unique = dict(zip(labels, handles))
        ax.legend(unique.values(), unique.keys(), fontsize=7, loc="lower right")
    fig.suptitle(f"{metrics['adapter']['name']}: stage timeline (timing: {metrics['timing']['source']})")
