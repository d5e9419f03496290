"""The frames sweep: speedup against each frame count's strongest peer (medians), beside the verifier's prefill."""

SIZE = (8, 4.5)


def plot(fig, inputs: list[dict], tau: float) -> None:
    """``inputs``: [frames_summary.json]; ``tau`` unused."""
    summary, ax = inputs[0], fig.subplots()
    frames = summary["frames"]
    for name, c in summary["configs"].items():
        ax.plot(frames, c["speedup_vs_peer"], marker="o", label=name)
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xticks(frames)
    ax.set_xlabel("verifier frames per clip")
    ax.set_ylabel("speedup vs the strongest peer (same frames)")
    ax.set_title("strongest peer: " + ", ".join(f"{n} frames {p}" for n, p in zip(frames, summary["strongest_peer"])),
                 fontsize=8)
    prefill = ax.twinx()
    prefill.plot(frames, [s * 1e3 for s in summary["verifier_prefill_s_median"]], color="grey", ls="--",
                 label="verifier prefill (ms, right)")
    prefill.set_ylabel("verifier prefill, ms")
    lines, labels = ax.get_legend_handles_labels()
    more, more_labels = prefill.get_legend_handles_labels()
    ax.legend(lines + more, labels + more_labels, fontsize=8)
