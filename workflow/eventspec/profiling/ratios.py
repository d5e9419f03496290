"""The wind tunnel's dimensionless cost ratios (DESIGN §4) beside a reference profile's (issue 25).

Which configuration wins is decided by a few ratios of component costs, not by absolute times. ``cost_ratios``
computes them from a benchmark run's own ``summary.json`` (``component_costs_s`` and per-configuration fields)
and from a cost profile (default ``h200-bf16``: the real pair at real shapes); ``markdown`` prints the table.
A ratio the run cannot measure (no compiled baseline, no head, no width 16) is None, and so is a reference
the profile lacks. The benchmark summary is meant to call ``cost_ratios`` and store the result as
``summary.json["cost_ratios"]`` (printed under summary.md's headline by ``markdown``).
"""

from __future__ import annotations

import statistics

from . import costs as C

REFERENCE_ANSWER_TOKENS = 50
"""Answer length of the reference's decode share (Video-LLaVA's answers run 20-50 tokens; the seeds cap 50)."""

RATIOS = {
    "head_over_step_compiled": "draft head step ÷ verifier decode step (compiled)",
    "head_over_step_eager": "draft head step ÷ verifier decode step (eager)",
    "verify6_over_verify1": "verify of 6 tokens ÷ one-token verify",
    "verify16_over_verify1": "verify of 16 tokens ÷ one-token verify",
    "prefill_over_step": "verifier prefill ÷ decode step",
    "decode_share": "decode share of a greedy answer's time",
    "drafter_prefill_over_verifier_prefill": "drafter prefill ÷ verifier prefill (vision + prefill forwards)",
    "drafter_step_over_verifier_step": "drafter decode step ÷ verifier decode step (eager)",
}


def _div(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def _fastest_head(summary: dict, compiled: bool) -> float | None:
    """The cheapest decode draft among the chain decode-head configurations on the compiled (or an eager) path (a
    tree's cost per drafted node is not a head step: one head call grows a whole level)."""
    draft = summary["component_costs_s"].get("draft_by_config", {})
    costs = [draft[n] for n, c in summary["configs"].items() if c["settings"].get("decode_adapter")
             and not c["settings"].get("tree") and bool(c["settings"].get("compile")) == compiled and draft.get(n)]
    return min(costs) if costs else None


def measured_ratios(summary: dict) -> dict[str, float | None]:
    """The ratios of one benchmark run (tolerant of added fields)."""
    costs = summary["component_costs_s"]
    by_path = costs["baseline_by_path"]
    eager = C.path_baseline(by_path, "dynamic", "static")
    compiled = C.path_baseline(by_path, "compiled")
    step_eager = eager["step_s"] if eager else None
    step_compiled = compiled["step_s"] if compiled else None
    step = step_compiled or step_eager
    widths = (compiled or eager or {}).get("verify_by_width", {})
    one = step  # the one-token verify is the decode step on that path (as in the reference column)
    reference = (compiled or eager or {}).get("config")
    greedy = summary["configs"].get(reference, {})
    # model forwards on both sides, as in a profile: the verifier's preprocessing is outside the timing
    drafter_prefill = [c["drafter_prefill_s_mean"] - c.get("drafter_prepare_s_mean", 0.0)
                       for c in summary["configs"].values() if c.get("drafter_prefill_s_mean")]
    drafter_step = [costs["draft_by_config"][n] for n, c in summary["configs"].items()
                    if c["kind"] == "token_sd" and costs.get("draft_by_config", {}).get(n)]
    prefill = costs["verifier_prefill_median"]
    return {
        "head_over_step_compiled": _div(_fastest_head(summary, True) or _fastest_head(summary, False), step_compiled),
        "head_over_step_eager": _div(_fastest_head(summary, False), step_eager),
        "verify6_over_verify1": _div(widths.get("6"), one),
        "verify16_over_verify1": _div(widths.get("16"), one),
        "prefill_over_step": _div(prefill, step),
        "decode_share": _div(greedy.get("decode_s_mean"), greedy.get("wall_s_median")),
        "drafter_prefill_over_verifier_prefill": _div(statistics.median(drafter_prefill) if drafter_prefill else None,
                                                      prefill),
        "drafter_step_over_verifier_step": _div(statistics.median(drafter_step) if drafter_step else None, step_eager),
    }


def reference_ratios(profile: dict, frames: int = 8) -> dict[str, float | None]:
    """The same ratios from a cost profile (the compiled step where it has one, else the eager one)."""
    c = profile["costs_s"]
    step_eager, step_compiled = c["decode_step"]["eager"], c["decode_step"]["compiled"]
    step = step_compiled or step_eager
    head_compiled = c["head_step"]["compiled"] or c["head_step"]["eager"]
    prefill = c["verifier_prefill_by_frames"].get(str(frames))
    decode = (REFERENCE_ANSWER_TOKENS - 1) * step
    return {
        "head_over_step_compiled": _div(head_compiled, step_compiled),
        "head_over_step_eager": _div(c["head_step"]["eager"], step_eager),
        "verify6_over_verify1": _div(C.verify(profile, "compiled" if step_compiled else None, 6), step),
        "verify16_over_verify1": _div(C.verify(profile, "compiled" if step_compiled else None, 16), step),
        "prefill_over_step": _div(prefill, step),
        "decode_share": None if prefill is None else decode / (prefill + decode),
        "drafter_prefill_over_verifier_prefill": _div(c["drafter_prefill"], prefill),
        "drafter_step_over_verifier_step": _div(c["drafter_decode_step"], step_eager),
    }


def cost_ratios(summary: dict, reference_profile: dict) -> dict:
    """Per ratio: ``measured`` (this run), ``reference`` (the profile's, at the run's frame count), ``source``
    (the profile's name and provenance) and ``within_2x`` (None where either side is missing)."""
    frames = summary.get("settings", {}).get("frames", 8)
    measured, reference = measured_ratios(summary), reference_ratios(reference_profile, frames)
    source = f"{reference_profile['name']} ({reference_profile['kind']}): {reference_profile['provenance']}"
    out = {}
    for key, label in RATIOS.items():
        m, r = measured[key], reference[key]
        out[key] = {"label": label, "measured": m, "reference": r, "source": source,
                    "within_2x": None if m is None or r is None else bool(0.5 <= m / r <= 2.0)}
    return out


def markdown(ratios: dict) -> str:
    """The ratio table: measured beside the reference, and whether it is within 2x."""
    def f(x):
        return "–" if x is None else f"{x:.3g}"

    lines = ["| ratio | this run | reference | within 2x |", "|---|---|---|---|"]
    for r in ratios.values():
        ok = "–" if r["within_2x"] is None else ("yes" if r["within_2x"] else "**no**")
        lines.append(f"| {r['label']} | {f(r['measured'])} | {f(r['reference'])} | {ok} |")
    source = next(iter(ratios.values()))["source"] if ratios else ""
    return "\n".join(lines) + f"\n\nReference: {source}\n"
