"""Per-stage timings of the speedup estimates: from config (``evaluate.timing``), a cost profile, or a measured
benchmark summary.

The verifier's per-token cost is the strongest peer's, never the eager ``vl_baseline``'s: an estimate against a
slow baseline flatters every method (DESIGN §8: compiled greedy, 7.0 ms per token on an H200, not eager's 21.3).
"""

from __future__ import annotations

import json
from pathlib import Path

from ..adapters.errors import AdapterError
from .metrics import Timing


def timing_from_config(timing_cfg: dict) -> Timing:
    return Timing(**{k: float(timing_cfg[k]) for k in Timing.__dataclass_fields__})


def timing_from_summary(timing_cfg: dict, path: str | Path) -> Timing:
    """Config timings with the verifier's prefill and per-token decode and the drafter's prefill measured.

    From the benchmark's ``summary.json`` (xsd/bench_summary.schema.json of Stage 4): the strongest peer
    (``strongest_peer``, the fastest configuration needing no event camera) gives the verifier's per-token time
    (its median time less the prefill, over the tokens after the first); the prefill is the peer's own, or the
    run's median verifier prefill where the peer does not report one (transformers' ``generate``); the drafter's
    prefill is the median over configurations that ran it.
    """
    path = Path(path)
    try:
        summary = json.loads(path.read_text())
        peer = summary["configs"][summary["strongest_peer"]]
        prefill_s = peer.get("prefill_s_mean") or summary["component_costs_s"]["verifier_prefill_median"]
        vl_prefill_ms = 1000 * prefill_s
        vl_decode_ms = 1000 * (peer["wall_s_median"] - prefill_s) / max(peer["tokens_mean"] - 1, 1)
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise AdapterError(f"{path}: evaluate.bench_summary: no strongest peer with its timings ({err})") from err
    drafter = sorted(c["drafter_prefill_s_mean"] for c in summary["configs"].values()
                     if (c.get("drafter_prefill_s_mean") or 0) > 0)
    values = {k: float(timing_cfg[k]) for k in Timing.__dataclass_fields__}
    values |= {"vl_prefill_ms": vl_prefill_ms, "vl_decode_ms": vl_decode_ms}
    if drafter:
        values["egpt_prefill_ms"] = 1000 * drafter[len(drafter) // 2]
    return Timing(**values)


def timing_from_profile(profile: dict, frames: int = 8) -> Timing:
    """Every timing from a cost profile (``profiling.costs``): the verifier's prefill at ``frames``, its per-token
    time as the strongest greedy peer's there (the cheapest of the eager and compiled steps and transformers'
    ``generate``, where the setup has them), the drafter's prefill and step, the EAGLE-style head as the adapter."""
    from ..profiling.costs import verifier_prefill

    c = profile["costs_s"]
    greedy = [v for v in (*c["decode_step"].values(), *c["hf_generate_per_token"].values()) if v]
    return Timing(egpt_prefill_ms=1000 * c["drafter_prefill"], vl_prefill_ms=1000 * verifier_prefill(profile, frames),
                  vl_decode_ms=1000 * min(greedy), egpt_decode_ms=1000 * c["drafter_decode_step"],
                  adapter_ms=1000 * c["head_step"]["eager"])


def load_timing(eval_cfg: dict, summary: str | Path | None = None, profile: str | None = None) -> tuple[Timing, str]:
    """(timing, where it came from): a cost profile when given (argument or evaluate.profile: a reference name
    or a profile JSON), else a benchmark summary (argument or evaluate.bench_summary), else config."""
    profile = profile or eval_cfg.get("profile")
    if profile:
        from ..profiling.costs import load_profile

        loaded = load_profile(profile)
        return timing_from_profile(loaded), (f"cost profile {loaded['name']} ({loaded['kind']}): "
                                             f"{loaded['provenance']}; verifier per token: its strongest greedy peer")
    summary = summary or eval_cfg.get("bench_summary")
    if summary:
        return timing_from_summary(eval_cfg["timing"], summary), (
            f"measured (vl_prefill_ms, vl_decode_ms: the strongest peer; egpt_prefill_ms): {summary}; the rest: "
            f"config evaluate.timing")
    return timing_from_config(eval_cfg["timing"]), "config evaluate.timing"
