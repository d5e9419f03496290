"""Cost profiles: component costs of the verifier/drafter pair on one setup (xsd/cost_profile.schema.json).

A profile is what the projection multiplies a run's rounds by. Shipped references
(``reference/<name>.json``): ``h200-bf16`` (DESIGN §11, random weights at real shapes on one H200) and
``seeds-4bit-2gpu`` (the seeds' 4-bit two-GPU benchmark), each cost with its source. ``eventspec profile``
writes measured or extrapolated ones; ``from_summary`` builds one from a benchmark run's own component costs
(the self-consistency check of the cost model: projected with it, each configuration must land on its measured
time).
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import jsonschema

from ..schemas import _schema

REFERENCE_DIR = Path(__file__).resolve().parent / "reference"


class ProfileError(ValueError):
    """A cost profile that cannot be found or does not follow xsd/cost_profile.schema.json."""


def reference_names() -> list[str]:
    return sorted(p.stem for p in REFERENCE_DIR.glob("*.json"))


def validate(profile: dict, origin: str) -> dict:
    try:
        jsonschema.validate(profile, _schema("cost_profile"))
    except jsonschema.ValidationError as err:
        raise ProfileError(f"{origin}: not a cost profile: {err.message} at {list(err.absolute_path)}") from None
    return profile


def load_profile(name_or_path: str | Path) -> dict:
    """A shipped reference by name (``h200-bf16``, ``seeds-4bit-2gpu``) or a profile JSON file, validated."""
    path = Path(name_or_path)
    if not path.is_file():
        if str(name_or_path) not in reference_names():
            raise ProfileError(f"{name_or_path}: no such profile file or reference (references: {reference_names()})")
        path = REFERENCE_DIR / f"{name_or_path}.json"
    try:
        profile = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ProfileError(f"{path}: not JSON ({err})") from None
    return validate(profile, str(path))


def path_kind(path: str | None) -> str:
    """The profile's step column of a benchmark verifier path: ``compiled``, else ``eager``."""
    return "compiled" if path == "compiled" else "eager"


def step(profile: dict, path: str | None) -> float | None:
    """The one-token verifier step on ``path``; None where the setup has none (no compiled step under 4-bit)."""
    return profile["costs_s"]["decode_step"][path_kind(path)]


def verify(profile: dict, path: str | None, width: int) -> float | None:
    """A verifier forward of ``width`` tokens on ``path`` (width 1: the step): the profile's table, linear
    between its nearest widths (its widest past the end); None where the setup has no such path."""
    table = profile["costs_s"]["verify_by_width"][path_kind(path)]
    if width == 1 or table is None:
        return step(profile, path) if width == 1 else None
    points = sorted((int(k), v) for k, v in table.items())
    if width >= points[-1][0]:
        return points[-1][1]
    (k0, v0), (k1, v1) = next((a, b) for a, b in zip(points, points[1:]) if a[0] <= width <= b[0])
    return v0 + (v1 - v0) * (width - k0) / (k1 - k0)


def head_step(profile: dict, path: str | None) -> float:
    costs = profile["costs_s"]["head_step"]
    return costs.get(path_kind(path)) or costs["eager"]


def verifier_prefill(profile: dict, frames: int) -> float:
    by_frames = profile["costs_s"]["verifier_prefill_by_frames"]
    if str(frames) not in by_frames:
        raise ProfileError(f"profile {profile['name']}: no verifier prefill at {frames} frames (has {sorted(by_frames)})")
    return by_frames[str(frames)]


def path_baseline(by_path: dict, *paths: str) -> dict | None:
    """The fastest baseline (smallest one-token step) of the first of ``paths`` present in ``component_costs_s``
    ``baseline_by_path``, whose keys are ``<path>/<threads>t`` (one per thread count), or a bare ``<path>``."""
    for path in paths:
        found = [ref for key, ref in by_path.items() if key == path or key.startswith(f"{path}/")]
        if found:
            return min(found, key=lambda ref: ref["step_s"])
    return None


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def from_summary(summary: dict, traces: dict[str, list[dict]], name: str = "toy-run") -> dict:
    """A profile from one benchmark run's own costs (``summary.json`` ``component_costs_s`` and the per-pair
    traces): per verifier path the reference baseline's step and verify-width table, the drafter's prefill and
    decode step (token-level SD's drafts), a decode head's step (the fastest head configuration's median draft),
    a prefill adapter's step (drafts made during the prefill over their time), the round overhead 0 (it is inside
    the in-place verify times the engine records). Tolerant of added fields."""
    costs = summary["component_costs_s"]
    by_path = costs["baseline_by_path"]
    configs = summary["configs"]
    frames = summary["settings"].get("frames", 8)
    eager = path_baseline(by_path, "dynamic", "static")
    if eager is None:
        raise ProfileError("summary: no baseline on an eager verifier path (vl_baseline) in component_costs_s")

    def table(ref: dict | None) -> dict | None:
        if ref is None:
            return None
        return {"1": ref["step_s"]} | {k: v for k, v in ref["verify_by_width"].items() if k != "1"}

    compiled = path_baseline(by_path, "compiled")
    draft = costs.get("draft_by_config", {})
    heads = [draft[n] for n, c in configs.items() if c["settings"].get("decode_adapter") and draft.get(n)]
    token = [draft[n] for n, c in configs.items() if c["kind"] == "token_sd" and draft.get(n)]
    drafter_prefill = [r["drafter_prefill_s"] for recs in traces.values() for r in recs if r.get("drafter_prefill_s")]
    adapter = [r["early_draft_s"] / r["early_drafts"] for n, recs in traces.items()
               if configs[n]["settings"].get("prefill_adapter") for r in recs if r.get("early_drafts")]
    prefill = costs["verifier_prefill_median"]  # generate reports no prefill of its own: the baseline's
    hf = {c["settings"].get("cache", "dynamic"): max(c["wall_s_median"] - prefill, 0.0) / max(c["tokens_mean"] - 1, 1)
          for c in configs.values() if c["kind"] == "hf_generate"}
    step_eager = eager["step_s"]
    profile = {
        "name": name, "kind": "toy_run", "device": summary["settings"].get("device", "cpu"),
        "dtype": summary["settings"].get("verifier", {}).get("dtype", "float32"),
        "quant": summary["settings"].get("verifier", {}).get("quant", "none"), "extrapolated": False,
        "provenance": f"benchmark summary of one run ({summary['settings'].get('pairs')} pairs): its component_costs_s",
        "gpus": [1],
        "costs_s": {
            "verifier_prefill_by_frames": {str(frames): prefill},
            "drafter_prefill": _median(drafter_prefill) or 0.0,
            "decode_step": {"eager": step_eager, "compiled": compiled["step_s"] if compiled else None},
            "verify_by_width": {"eager": table(eager), "compiled": table(compiled)},
            "hf_generate_per_token": {"dynamic": hf.get("dynamic"), "static": hf.get("static")},
            "head_step": {"eager": min(heads) if heads else step_eager, "compiled": None},
            "drafter_decode_step": _median(token) or step_eager,
            "adapter_step": _median(adapter) or 0.0,
            "round_overhead": 0.0,
            "same_device_prefill_slowdown": None,
            "draft_by_config": {n: v for n, v in draft.items() if v},
        },
        "sources": {"all": "the run's own medians (decoding/benchmark.py component_costs_s)"},
    }
    return validate(profile, "profile from summary")
