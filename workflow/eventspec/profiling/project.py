"""``eventspec project``: each configuration's expected time under a cost profile, from a run's own traces.

The benchmark records per pair and configuration what happened, independent of how long it took: the rounds
(drafts verified, drafts accepted, whether they were made during the verifier's prefill), the answer length and
the drafts made during the prefill. A profile says what each step costs on a setup. Per pair::

    time = verifier prefill x slowdown (a drafter beside it on the same device; 1 on two devices)
         + reading the drafter's reply (the engine never waits for a drafter still in its prefill: decoding goes
           on, and a drafter that ends after the verifier's prefill makes no early drafts in time)
         + per round: verify(width = drafts + 1) on the configuration's verifier path
                      + drafts x the cost of one draft (0 for those made during the prefill) + round overhead

transformers' ``generate`` peers: prefill + (tokens - 1) x its per-token time. Prefill hiding: the drafter's
head start (verifier prefill - drafter prefill) over one early draft's cost (drafter step + adapter) bounds the
drafts made in time; the early round accepts the recorded prefix of them; tokens the recorded run accepted
beyond that are decoded at the configuration's own per-token decode cost. The engine records only the drafts
its own run made in time, so where a profile gives more time than the run had, the early acceptance is the
recorded one (a lower bound, counted in ``early_capped``).

Speedups are against the strongest peer under the same profile (the fastest projected configuration that needs
no event camera), per profile x devices x frames; every figure is a projection, not a measurement.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

from ..decoding.plan import verifier_path
from . import costs as C

CEILING = "ceiling"
MARGIN = 0.01
"""A method is recommended over the strongest peer only when projected more than this fraction faster: an event
camera (and a drafter) is not worth a tie."""


def read_traces(bench_dir: str | Path, names) -> dict[str, list[dict]]:
    """``<bench_dir>/<config>.jsonl`` per configuration (only the fields the projection reads are used)."""
    out = {}
    for name in names:
        path = Path(bench_dir) / f"{name}.jsonl"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no trace of configuration {name} (run the benchmark)")
        out[name] = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return out


def runs_drafter(summary_config: dict) -> bool:
    """The configuration ran the drafter (a worker beside the verifier's prefill)."""
    return bool(summary_config.get("drafter_prefill_s_mean") or summary_config.get("early_drafts_mean"))


PER_DRAFT_DRAFTER_LEVELS = ("L5", "L5F")
"""Decode heads that read a fresh drafter state per draft (a drafter decode step each); B1 reads none and B1E
reads the drafter's prompt state once per pair."""


def head_reads_drafter(settings: dict, adapters: dict | None) -> bool:
    """Whether a decode head needs a drafter decode step per draft (L5, L5F), by the adapter registry
    (``adapters``: the config's; a name missing there is taken as its own level)."""
    from ..adapters.registry import level_of

    name = settings.get("decode_adapter")
    return name is not None and level_of(name, (adapters or {}).get(name) or {"level": name}) in \
        PER_DRAFT_DRAFTER_LEVELS


def draft_cost(name: str, summary_config: dict, profile: dict, adapters: dict | None) -> float:
    """One decode-phase draft of configuration ``name`` under ``profile``."""
    override = profile["costs_s"].get("draft_by_config", {})
    if name in override:
        return override[name]
    settings, kind, c = summary_config["settings"], summary_config["kind"], profile["costs_s"]
    if kind == "token_sd":
        return c["drafter_decode_step"]
    if kind in ("prompt_lookup", "oracle", "baseline"):
        return 0.0
    head = C.head_step(profile, verifier_path(settings) if settings.get("compile") else None)
    return head + (c["drafter_decode_step"] if head_reads_drafter(settings, adapters) else 0.0)


def early_draft_cost(summary_config: dict, profile: dict) -> float:
    """One draft made during the verifier's prefill: a drafter step (+ the prefill adapter)."""
    c = profile["costs_s"]
    return c["drafter_decode_step"] + (c["adapter_step"] if summary_config["settings"].get("prefill_adapter") else 0.0)


def pair_time(rec: dict, name: str, summary_config: dict, profile: dict, frames: int, gpus: int,
              adapters: dict | None = None) -> tuple[float | None, bool]:
    """(projected seconds of one pair, whether its early acceptance was capped by the recording); None where the
    setup cannot run the configuration (e.g. a compiled step under 4-bit)."""
    settings, kind, c = summary_config["settings"], summary_config["kind"], profile["costs_s"]
    prefill = C.verifier_prefill(profile, frames)
    if kind == "hf_generate":
        per_token = c["hf_generate_per_token"][settings.get("cache", "dynamic")]
        return (None, False) if per_token is None else (prefill + (rec["n_tokens"] - 1) * per_token, False)
    path = verifier_path(settings)
    drafter = runs_drafter(summary_config)
    slowdown = (c["same_device_prefill_slowdown"] or 1.0) if drafter and gpus == 1 else 1.0
    t = prefill * slowdown
    if drafter:  # the verifier never waits for the drafter (engine.decode), it only reads its reply; a drafter
        t += c.get("drafter_return", 0.0)  # later than the verifier's prefill makes no early drafts in time (below)
    per_draft = draft_cost(name, summary_config, profile, adapters)
    rounds = [(d, a) for d, a, early in rec["rounds"] if not early]
    early = [(d, a) for d, a, e in rec["rounds"] if e]
    costs = [C.verify(profile, path, d + 1) for d, _ in rounds]
    if None in costs:
        return None, False
    # a tree grows one level per head call (depth calls per round, not one per node), unless the profile measured
    # this configuration's cost per drafted node (draft_by_config: a run's own costs)
    tree = None if name in c.get("draft_by_config", {}) else settings.get("tree")
    head_calls = [min(d, tree["depth"]) if tree else d for d, _ in rounds]
    decode = sum(costs) + sum(n * per_draft for n in head_calls) + len(rounds) * c["round_overhead"]
    decode_tokens = sum(a + 1 for _, a in rounds)
    per_token = decode / decode_tokens if decode_tokens else C.step(profile, path)
    capped = False
    if early or rec.get("early_drafts"):
        unit = early_draft_cost(summary_config, profile)
        budget = max(prefill * slowdown - c["drafter_prefill"], 0.0)
        in_time = rec["early_drafts"] if unit <= 0 else min(rec["early_drafts"], math.floor(budget / unit))
        capped = unit > 0 and budget / unit > rec["early_drafts"]
        recorded_tokens = sum(a + 1 for _, a in early)
        kept = [(min(d, in_time - 1), min(a, in_time - 1)) for d, a in early] if in_time > 1 else []
        verify_early = [C.verify(profile, path, d + 1) for d, _ in kept]
        if None in verify_early:
            return None, False
        t += sum(verify_early) + len(kept) * c["round_overhead"]
        t += (recorded_tokens - sum(a + 1 for _, a in kept)) * per_token
    return t + decode, capped


def project(summary: dict, traces: dict[str, list[dict]], profile: dict, frames: int, gpus: int,
            adapters: dict | None = None) -> dict:
    """One setup (profile x devices x frames): per configuration its mean projected time per pair and speedup
    vs the strongest projected peer; the recommended configuration: the fastest method (it reads the event camera)
    where it beats that peer by more than ``MARGIN``, else the peer."""
    configs = summary["configs"]
    out = {}
    for name, recs in traces.items():
        times = [pair_time(r, name, configs[name], profile, frames, gpus, adapters) for r in recs]
        available = all(t is not None for t, _ in times)
        out[name] = {"role": configs[name]["role"], "available": available,
                     "time_s": statistics.mean(t for t, _ in times) if available and times else None,
                     "measured_s": configs[name].get("wall_s_median"),
                     "early_capped": sum(cap for _, cap in times)}
    ranked = {n: v for n, v in out.items() if v["time_s"] is not None}
    peers = [n for n, v in ranked.items() if v["role"] == "peer"]
    if not peers:
        raise ValueError(f"profile {profile['name']}: no peer configuration can run on this setup")
    peer = min(peers, key=lambda n: ranked[n]["time_s"])
    for v in out.values():
        v["speedup_vs_peer"] = None if v["time_s"] is None else ranked[peer]["time_s"] / v["time_s"]
    methods = [n for n, v in ranked.items() if v["role"] == "method" and v["time_s"] < ranked[peer]["time_s"] * (1 - MARGIN)]
    best = min(methods, key=lambda n: ranked[n]["time_s"]) if methods else peer
    return {"profile": profile["name"], "gpus": gpus, "frames": frames, "strongest_peer": peer,
            "recommended": best, "configs": out}


def setups(profile: dict, frames: list[int] | None) -> list[tuple[int, int]]:
    """(gpus, frames) of a profile: its device counts x the frame counts it has a prefill for."""
    have = sorted(int(f) for f in profile["costs_s"]["verifier_prefill_by_frames"])
    return [(g, f) for g in profile["gpus"] for f in have if frames is None or f in frames]


def project_all(summary: dict, traces: dict[str, list[dict]], profiles: list[dict], frames: list[int] | None = None,
                adapters: dict | None = None, source: str = "") -> dict:
    """Every profile x devices x frames (xsd/projection.schema.json)."""
    rows = [project(summary, traces, p, f, g, adapters) for p in profiles for g, f in setups(p, frames)]
    return {"note": "projection: a run's recorded rounds priced by a cost profile, not a measurement",
            "run": {"summary": source, "pairs": summary["settings"].get("pairs"),
                    "frames": summary["settings"].get("frames")},
            "profiles": {p["name"]: {"kind": p["kind"], "provenance": p["provenance"], "device": p["device"],
                                     "dtype": p["dtype"], "quant": p["quant"], "extrapolated": p["extrapolated"]}
                         for p in profiles},
            "setups": rows}


def markdown(projection: dict) -> str:
    """The report section: speedup vs each setup's strongest peer, per configuration (rows) and setup (columns),
    with the peer and the recommendation per setup; every figure labelled a projection."""
    rows = projection["setups"]
    head = ["config"] + [f"{r['profile']}, {r['gpus']} GPU{'s' if r['gpus'] > 1 else ''}, {r['frames']} fr."
                         for r in rows]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    names = list(rows[0]["configs"]) if rows else []

    def cell(r, n):
        v = r["configs"][n]
        if v["time_s"] is None:
            return "n/a"
        mark = "**" if n == r["recommended"] else ""
        return f"{mark}{v['speedup_vs_peer']:.2f}x{mark} ({v['time_s'] * 1e3:.0f} ms)"

    lines.append("| strongest peer | " + " | ".join(r["strongest_peer"] for r in rows) + " |")
    lines.append("| **recommended** | " + " | ".join(r["recommended"] for r in rows) + " |")
    for n in names:
        role = rows[0]["configs"][n]["role"]
        lines.append(f"| {n}{' (ceiling)' if role == CEILING else ''} | " + " | ".join(cell(r, n) for r in rows) + " |")
    profiles = "\n".join(f"- `{name}` ({p['kind']}{', extrapolated' if p['extrapolated'] else ''}): {p['provenance']}"
                         for name, p in projection["profiles"].items())
    run = projection["run"]
    return (f"## Projected speedups per setup (projection, not measurement)\n\n"
            f"Each cell: projected speedup vs that setup's strongest peer (projected time per pair), from the "
            f"benchmark's recorded rounds ({run['pairs']} pairs at {run['frames']} frames, {run['summary']}) priced "
            f"by each profile. Bold: the configuration to use there. Early (prefill-hiding) acceptance beyond what "
            f"the run drafted in time is not credited (a lower bound).\n\nProfiles:\n{profiles}\n\n"
            + "\n".join(lines) + "\n")


def in_place_profile(summary: dict, traces: dict[str, list[dict]], name: str) -> dict:
    """The run's profile (``costs.from_summary``) with configuration ``name``'s own in-place costs, as means over
    its pairs (so the check below isolates the cost model's structure from a shared CPU's skewed noise): its
    verifier prefill, its verify time per width (from its rounds; the baseline's table elsewhere) and its cost
    per decode-phase draft."""
    profile = C.from_summary(summary, traces)
    c = profile["costs_s"]
    recs = traces[name]
    prefill = [r["prefill_s"] for r in recs if r.get("prefill_s") is not None]
    if prefill:
        c["verifier_prefill_by_frames"] = {k: statistics.mean(prefill) for k in c["verifier_prefill_by_frames"]}
    if summary["configs"][name]["kind"] == "hf_generate":
        return profile
    by_width: dict[str, list[float]] = {}
    for r in recs:
        for (d, _, _), v in zip(r["rounds"], r["verify_s"]):
            by_width.setdefault(str(d + 1), []).append(v)
    own = {k: statistics.mean(v) for k, v in by_width.items()}
    kind = C.path_kind(verifier_path(summary["configs"][name]["settings"]))
    if own and c["verify_by_width"][kind] is not None:
        c["verify_by_width"][kind] = c["verify_by_width"][kind] | own
        c["decode_step"][kind] = own.get("1", c["decode_step"][kind])
    for key in ("drafter_start", "drafter_return", "drafter_prefill"):
        values = [r[f"{key}_s"] for r in recs if r.get("drafter_prefill_s")]
        if values:
            c[key] = statistics.mean(values)
    drafts = [s / d for r in recs for (d, _, early), s in zip(r["rounds"], r["draft_s"]) if d and not early]
    if drafts:
        c["draft_by_config"][name] = statistics.mean(drafts)
    return profile


def self_consistency(summary: dict, traces: dict[str, list[dict]], adapters: dict | None = None) -> dict:
    """Per configuration: projected / measured time (summed over the pairs) under the profile measured on the
    same run (``in_place_profile``), at the run's frames on one device; transformers' ``generate``, priced by
    its own wall time, is left out. Near 1 when the projection's cost model
    (prefill, the drafter's reply, rounds of verify + drafts) accounts for the engine's time; a missing or double-counted term
    moves it away."""
    frames = summary["settings"].get("frames", 8)
    out = {}
    for name, recs in traces.items():
        if summary["configs"][name]["kind"] == "hf_generate":  # its per-token cost is its own wall time: no check
            continue
        profile = in_place_profile(summary, traces, name)
        times = [pair_time(r, name, summary["configs"][name], profile, frames, 1, adapters)[0] for r in recs]
        if None not in times and recs:
            out[name] = sum(times) / sum(r["wall_s"] for r in recs)
    return out


def consistency_markdown(ratios: dict) -> str:
    """The self-consistency line of the report: projected / measured per configuration on the run itself."""
    cells = ", ".join(f"{n} {r:.3f}" for n, r in ratios.items())
    return (f"\nSelf-consistency (projected / measured time under the profile measured on this run, per "
            f"configuration; within 0.9-1.1 when the cost model accounts for the engine's time): {cells}\n")
