"""Per-stage timings of the speedup estimates: from config (``evaluate.timing``) or a measured benchmark summary."""

from __future__ import annotations

import json
from pathlib import Path

from ..adapters.errors import AdapterError
from .metrics import Timing


def timing_from_config(timing_cfg: dict) -> Timing:
    return Timing(**{k: float(timing_cfg[k]) for k in Timing.__dataclass_fields__})


def timing_from_summary(timing_cfg: dict, path: str | Path) -> Timing:
    """Config timings with the verifier's prefill and per-token decode and the drafter's prefill measured.

    From the benchmark's ``summary.json`` (xsd/bench_summary.schema.json of Stage 4):
    ``configs.vl_baseline`` gives the verifier's prefill and decode per token;
    the drafter's prefill is the median over configurations that ran it.
    """
    path = Path(path)
    try:
        summary = json.loads(path.read_text())
        baseline = summary["configs"]["vl_baseline"]
        vl_prefill_ms = 1000 * baseline["prefill_s_mean"]
        vl_decode_ms = 1000 * baseline["decode_s_mean"] / max(baseline["tokens_mean"] - 1, 1)
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise AdapterError(f"{path}: evaluate.bench_summary: no configs.vl_baseline prefill/decode timings ({err})") from err
    drafter = sorted(c["drafter_prefill_s_mean"] for c in summary["configs"].values()
                     if c.get("drafter_prefill_s_mean", 0) > 0)
    values = {k: float(timing_cfg[k]) for k in Timing.__dataclass_fields__}
    values |= {"vl_prefill_ms": vl_prefill_ms, "vl_decode_ms": vl_decode_ms}
    if drafter:
        values["egpt_prefill_ms"] = 1000 * drafter[len(drafter) // 2]
    return Timing(**values)


def load_timing(eval_cfg: dict, summary: str | Path | None = None) -> tuple[Timing, str]:
    """(timing, where it came from): a benchmark summary when given (argument or evaluate.bench_summary), else config."""
    summary = summary or eval_cfg.get("bench_summary")
    if summary:
        return timing_from_summary(eval_cfg["timing"], summary), (
            f"measured (vl_prefill_ms, vl_decode_ms, egpt_prefill_ms): {summary}; the rest: config evaluate.timing")
    return timing_from_config(eval_cfg["timing"]), "config evaluate.timing"
