"""The benchmark's reporting: per-pair records -> ``summary.json``, ``summary.md`` and the frames sweep's table.

Statistics (issue 24):
- a pair's time is its median repeat (the lower median for an even count);
  ``wall_s_median`` is the median over pairs of these, ``wall_s_mean`` their
  mean, ``wall_s_iqr`` their interquartile range over pairs, ``wall_s_best``
  the mean over pairs of each pair's fastest repeat;
- the strongest peer (the fastest configuration needing no event camera, by
  summed pair times) is chosen on the *selection* pairs (even positions in the
  timed order) and every ``speedup_vs_peer`` is measured on the other,
  *held-out* pairs (odd positions), so the peer's own noise does not both pick
  it and flatter it;
- ``speedup_vs_peer`` is the geometric mean over held-out pairs of the paired
  ratio peer time / configuration time; ``speedup_vs_peer_ci95`` its 95%
  percentile bootstrap interval over those pairs (``BOOTSTRAP`` resamples,
  fixed seed); ``speedup`` is the same paired ratio against ``vl_baseline`` on
  every pair;
- devices: a configuration holding more GPUs than the peer also gets
  ``speedup_vs_peer_per_gpu`` (the ratio times peer GPUs / its GPUs: throughput
  per GPU), and the table marks it; on one device both are the same.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict

import numpy as np

from ..profiling.ratios import markdown as ratio_table

BASELINE = "vl_baseline"
BOOTSTRAP = 2000
"""Bootstrap resamples of the held-out pairs per interval."""


def selection_split(n: int) -> tuple[list[int], list[int]]:
    """Indices of the pairs that choose the strongest peer (even) and of the held-out pairs (odd); with one
    pair, it does both."""
    chosen = list(range(0, n, 2))
    held = list(range(1, n, 2)) or chosen
    return chosen, held


def strongest_peer(rows: dict[str, list[dict]], roles: dict[str, str], pairs: list[int]) -> str:
    """The fastest configuration among those needing no event camera, by its summed pair times on ``pairs``."""
    return min((name for name in rows if roles[name] == "peer"),
               key=lambda name: sum(rows[name][i]["wall_s"] for i in pairs))


def paired_ratio(reference: list[float], times: list[float], seed: int = 0) -> tuple[float, list[float]]:
    """Geometric mean of reference[i] / times[i] and its 95% percentile bootstrap interval over the pairs."""
    logs = np.log(np.asarray(reference)) - np.log(np.asarray(times))
    rng = np.random.default_rng(seed)
    draws = logs[rng.integers(0, len(logs), size=(BOOTSTRAP, len(logs)))].mean(1)
    low, high = np.percentile(draws, [2.5, 97.5])
    return float(np.exp(logs.mean())), [float(np.exp(low)), float(np.exp(high))]


def iqr(values: list[float]) -> float:
    q1, q3 = np.percentile(values, [25, 75])
    return float(q3 - q1)


def component_costs(recs: list[dict]) -> dict:
    """One configuration's medians over this run, in place: verifier forward by token count (the pending token
    and the drafts), cost of one decode-phase draft."""
    by_n = defaultdict(list)
    for r in recs:
        for (drafted, _, _), v in zip(r["rounds"], r["verify_s"]):
            by_n[drafted + 1].append(v)
    per_draft = [s / d for r in recs for (d, _, early), s in zip(r["rounds"], r["draft_s"]) if d and not early]
    return {"verify_s": {n: statistics.median(v) for n, v in sorted(by_n.items())},
            "draft_s": statistics.median(per_draft) if per_draft else 0.0}


def total(recs: list[dict], key: str = "wall_s") -> float:
    return sum(r[key] for r in recs)


def ideal_time(rec: dict, prefill_s: float, verify_s: dict[int, float], step_s: float, draft_s: float) -> float | None:
    """A pair's time at the baseline's verifier costs (its ``prefill_s`` of the pair, its one-token ``step_s``,
    the ``verify_s`` table for wider forwards) plus ``draft_s`` per decode-phase draft, over the rounds the
    configuration ran, with no overhead (drafts made during the prefill free)."""
    if rec["verifier_forwards"] is None:
        return None
    t = prefill_s
    for drafted, _, early in rec["rounds"]:
        t += (step_s if drafted == 0 else verify_s[drafted + 1]) + (0.0 if early else drafted * draft_s)
    return t


def ideal_total(recs: list[dict], reference: dict | None, draft_s: float) -> float | None:
    """The configuration's ideal time summed over the pairs; None without a baseline on its verifier path and
    threads, or without rounds (``generate`` peers)."""
    if reference is None:
        return None
    table = {int(k): v for k, v in reference["verify_by_width"].items()}
    ideals = [ideal_time(r, p, table, reference["step_s"], draft_s) for r, p in zip(recs, reference["prefill_s"])]
    return None if None in ideals else sum(ideals)


def baseline_key(path: str | None, threads: int) -> str:
    return f"{path}/{threads}t"


def baseline_costs(rows: dict[str, list[dict]], plans: dict, width_times: dict) -> dict:
    """Per (verifier path, threads) with a baseline in the run (key ``<path>/<threads>t``): its fastest baseline's
    name and threads, that baseline's prefill per pair, its median one-token step and its verify-width table."""
    refs: dict[str, str] = {}
    for name, p in plans.items():
        key = baseline_key(p.path, p.threads)
        if p.kind == "baseline" and (key not in refs or total(rows[name]) < total(rows[refs[key]])):
            refs[key] = name
    out = {}
    for key, ref in refs.items():
        table = {k: statistics.median(v) for k, v in sorted(width_times[ref].items())}
        steps = [v for r in rows[ref] for v in r["verify_s"]]
        out[key] = {"config": ref, "threads": plans[ref].threads, "prefill_s": [r["prefill_s"] for r in rows[ref]],
                    "step_s": statistics.median(steps) if steps else table[1],
                    "verify_by_width": {str(k): v for k, v in table.items()}}
    return out


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a / b


def summarize(rows: dict[str, list[dict]], plans: dict, baselines: dict, failures: dict[str, list[str]],
              recompiles: dict[str, int], settings: dict) -> dict:
    """``summary.json`` (module docstring for the statistics)."""
    costs = {name: component_costs(recs) for name, recs in rows.items()}
    roles = {name: plan.role for name, plan in plans.items()}
    chosen, held = selection_split(len(rows[BASELINE]))
    peer = strongest_peer(rows, roles, chosen)
    peer_held = [rows[peer][i]["wall_s"] for i in held]
    base, peer_total = total(rows[BASELINE]), total([rows[peer][i] for i in held])
    out = {}
    for name, recs in rows.items():
        plan = plans[name]
        walls = [r["wall_s"] for r in recs]
        wall, tokens = sum(walls), sum(r["n_tokens"] for r in recs)
        vs_peer, ci = paired_ratio(peer_held, [walls[i] for i in held], settings.get("seed", 0))
        vs_base, _ = paired_ratio([r["wall_s"] for r in rows[BASELINE]], walls)
        ideal = ideal_total(recs, baselines.get(baseline_key(plan.path, plan.threads)), costs[name]["draft_s"])
        ideal_held = ideal_total([recs[i] for i in held], held_reference(
            baselines.get(baseline_key(plan.path, plan.threads)), held), costs[name]["draft_s"])
        decode_rounds = [(d, a) for r in recs for d, a, early in r["rounds"] if d and not early]
        forwards = [r["verifier_forwards"] for r in recs]
        drafted = sum(d for r in recs for d, _, _ in r["rounds"])
        accepted = sum(a for r in recs for _, a, _ in r["rounds"])
        prefill = [r["prefill_s"] for r in recs if r["prefill_s"] is not None]
        gpus = max(plan.gpus, 1)
        out[name] = {
            "kind": plan.kind, "role": plan.role, "settings": settings["configs"][name], "threads": plan.threads,
            "devices": list(plan.devices), "gpus": plan.gpus, "samples": len(recs),
            "wall_s_median": statistics.median(walls), "wall_s_iqr": iqr(walls),
            "wall_s_best": total(recs, "wall_s_best") / len(recs), "wall_s_mean": wall / len(recs),
            "tokens_mean": tokens / len(recs), "tokens_per_s": tokens / wall,
            "speedup_vs_peer": vs_peer, "speedup_vs_peer_ci95": ci,
            "speedup_vs_peer_per_gpu": vs_peer * max(plans[peer].gpus, 1) / gpus,
            "speedup": vs_base, "speedup_best": total(rows[BASELINE], "wall_s_best") / total(recs, "wall_s_best"),
            "tau": None if None in forwards else tokens / sum(forwards),
            "tau_round": statistics.mean(a + 1 for _, a in decode_rounds) if decode_rounds else None,
            "acceptance_rate": accepted / drafted if drafted else None,
            "acceptance_histogram": {str(k): v for k, v in sorted(Counter(a for _, a in decode_rounds).items())},
            "ideal_speedup": ratio(base, ideal), "ideal_speedup_vs_peer": ratio(peer_total, ideal_held),
            "efficiency": ratio(ideal, wall),
            "prefill_s_mean": statistics.mean(prefill) if prefill else None,
            "decode_s_mean": statistics.mean(r["decode_s"] for r in recs) if prefill else None,
            "drafter_prefill_s_mean": statistics.mean(r["drafter_prefill_s"] for r in recs),
            "drafter_prepare_s_mean": statistics.mean(r.get("drafter_prepare_s", 0.0) for r in recs),
            "wait_s_mean": statistics.mean(r["wait_s"] for r in recs),
            "drafter_start_s_mean": statistics.mean(r["drafter_start_s"] for r in recs),
            "drafter_return_s_mean": statistics.mean(r["drafter_return_s"] for r in recs),
            "bytes_between_processes_per_pair": statistics.mean(r["bytes_between_processes"] for r in recs),
            "bytes_host_device_per_pair": statistics.mean(r["bytes_host_device"] for r in recs),
            "early_drafts_mean": statistics.mean(r["early_drafts"] for r in recs),
            "early_accepted_mean": statistics.mean(r["early_accepted"] for r in recs),
            "lossless": not failures.get(name), "lossless_failures": len(failures.get(name, [])),
            "ties": sum(r["ties"] or 0 for r in recs), "tie_divergences": sum(bool(r["tie_divergence"]) for r in recs),
            "recompiles_after_warmup": recompiles.get(name, 0),
        }
    return {"settings": {k: v for k, v in settings.items() if k != "configs"}
            | {"peer_selection_pairs": chosen, "held_out_pairs": held},
            "strongest_peer": peer, "configs": out,
            "component_costs_s": {"verifier_prefill_median": statistics.median(r["prefill_s"] for r in rows[BASELINE]),
                                  "baseline_by_path": baselines,
                                  "verifier_forward_by_tokens": {name: {str(k): v for k, v in c["verify_s"].items()}
                                                                 for name, c in costs.items()},
                                  "draft_by_config": {name: c["draft_s"] for name, c in costs.items()}}}


def held_reference(reference: dict | None, held: list[int]) -> dict | None:
    """A baseline's costs with its prefill times restricted to the held-out pairs."""
    return None if reference is None else reference | {"prefill_s": [reference["prefill_s"][i] for i in held]}


GROUPS = ("peer", "method", "ceiling")


def table_order(summary: dict) -> list[str]:
    """Peers, then methods, then ceilings, each sorted by speedup vs the peer (fastest first)."""
    configs = summary["configs"]
    return [name for group in GROUPS for name in sorted(
        (n for n in configs if configs[n]["role"] == group), key=lambda n: -configs[n]["speedup_vs_peer"])]


def _f(x, fmt, scale=1.0):
    return "–" if x is None else format(x * scale, fmt)


def markdown(summary: dict) -> str:
    """``summary.md``: the strongest peer named, then one row per configuration, grouped and sorted."""
    peer, configs, settings = summary["strongest_peer"], summary["configs"], summary["settings"]
    intro = (f"Strongest peer (the fastest configuration needing no event camera, chosen on "
             f"{len(settings['peer_selection_pairs'])} selection pairs): **{peer}**. `vs peer` is the geometric mean "
             f"over the {len(settings['held_out_pairs'])} held-out pairs of the paired ratio peer time / "
             f"configuration time (a pair's time: its median of {settings['repeats']} repeats, configurations in "
             f"a seeded shuffled order per repeat), with its 95% bootstrap interval. Median ms is the median over "
             f"pairs; `ceiling` rows draft the verifier's own answer (the engine's upper bound, not a method). "
             f"Ideal and efficiency use the costs of the baseline on the same verifier path and threads. Tie "
             f"tolerance {settings['tie_tolerance']['tolerance']:.3g} (measured "
             f"{settings['tie_tolerance']['measured']:.3g} on the warm-up pairs).\n\n")
    head = ("| config | role | vs peer [95% CI] | vs vl_baseline | median ms | IQR ms | best ms | threads | devices "
            "| tokens/s | τ | τ/round | accept | ideal vs peer | efficiency | prefill ms | decode ms "
            "| early drafts (acc.) | ties | recompiles | lossless |\n|" + "---|" * 21 + "\n")
    lines = []
    for name in table_order(summary):
        s = configs[name]
        label = f"{name} (ceiling)" if s["role"] == "ceiling" else (f"**{name}**" if name == peer else name)
        low, high = s["speedup_vs_peer_ci95"]
        per_gpu = f" ({s['speedup_vs_peer_per_gpu']:.3f}/GPU)" if s["gpus"] > configs[peer]["gpus"] else ""
        early = f"{s['early_drafts_mean']:.2f} ({s['early_accepted_mean']:.2f})" if s["early_drafts_mean"] else "–"
        lines.append(f"| {label} | {s['role']} | {s['speedup_vs_peer']:.3f} [{low:.3f}, {high:.3f}]{per_gpu} "
                     f"| {s['speedup']:.3f} | {_f(s['wall_s_median'], '.2f', 1e3)} | {_f(s['wall_s_iqr'], '.2f', 1e3)} "
                     f"| {_f(s['wall_s_best'], '.2f', 1e3)} | {s['threads']} | {'+'.join(s['devices'])} "
                     f"| {s['tokens_per_s']:.0f} | {_f(s['tau'], '.2f')} | {_f(s['tau_round'], '.2f')} "
                     f"| {_f(s['acceptance_rate'], '.2f')} | {_f(s['ideal_speedup_vs_peer'], '.3f')} "
                     f"| {_f(s['efficiency'], '.2f')} | {_f(s['prefill_s_mean'], '.2f', 1e3)} "
                     f"| {_f(s['decode_s_mean'], '.2f', 1e3)} | {early} | {s['ties']} ({s['tie_divergences']} div.) "
                     f"| {s['recompiles_after_warmup']} | {'yes' if s['lossless'] else 'NO'} |")
    ratios = ratio_table(summary["cost_ratios"]) + "\n" if summary.get("cost_ratios") else ""
    return intro + ratios + head + "\n".join(lines) + "\n"


FRAMES_FIELDS = ("speedup_vs_peer", "speedup", "tau", "prefill_s_mean", "drafter_prefill_s_mean", "early_drafts_mean",
                 "early_accepted_mean", "wall_s_median", "wall_s_iqr", "wall_s_mean")


def frames_summary(points: dict[int, dict], pairs: int) -> dict:
    """``frames_summary.json`` from one benchmark summary per frame count."""
    names = list(next(iter(points.values()))["configs"])
    return {
        "frames": list(points),
        "pairs": pairs,
        "strongest_peer": [p["strongest_peer"] for p in points.values()],
        "verifier_prefill_s_median": [p["component_costs_s"]["verifier_prefill_median"] for p in points.values()],
        "configs": {name: {f: [p["configs"][name][f] for p in points.values()] for f in FRAMES_FIELDS}
                    for name in names},
    }


def frames_markdown(summary: dict) -> str:
    """Speedup against each count's strongest peer (early drafts accepted) per configuration and frame count,
    under the verifier's prefill time and the peer's name."""
    frames = summary["frames"]
    head = "| config | " + " | ".join(f"{n} frames" for n in frames) + " |\n|---|" + "---|" * len(frames) + "\n"
    prefill = " | ".join(f"{s * 1e3:.1f} ms" for s in summary["verifier_prefill_s_median"])
    lines = [f"| verifier prefill (median) | {prefill} |", f"| strongest peer | {' | '.join(summary['strongest_peer'])} |"]
    for name, c in summary["configs"].items():
        cells = " | ".join(f"{s:.3f} ({a:.2f})" for s, a in zip(c["speedup_vs_peer"], c["early_accepted_mean"]))
        lines.append(f"| {name} | {cells} |")
    return head + "\n".join(lines) + "\n"
