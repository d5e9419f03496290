"""``eventspec benchmark``: every configuration side by side on held-out (window, question) pairs.

Per pair, every configuration runs ``repeats`` times, round robin (repeat r of
every configuration before repeat r + 1, so load changes on a shared machine
hit all of them alike). The first ``warmup`` pairs run untimed. A pair's time
is its median repeat (the lower median for an even count); speedups are
ratios of these medians summed over the pairs, the headline. The fastest
repeat (best of N) and the spread (interquartile range of the repeats) are
reported beside them.

Reference: the run's **strongest peer**, the fastest configuration (by its
median time) that needs no event camera: our greedy decoding (eager, static,
compiled, any thread count), transformers' ``generate``, prompt lookup,
token-level SD and speculative decoding whose only adapter reads the verifier
(B1, ``vlm_only``). Token-level SD drafts with the drafter, which reads the
event window, yet counts as a peer, as issue 18 lists it: it is the seeds'
prior-art baseline and uses no trained adapter. ``speedup_vs_peer`` is
against it, ``speedup`` against the eager ``vl_baseline``. ``oracle*`` draft
the verifier's own answer: the engine's ceiling on the machine, not a method
(role ``ceiling``).

Equal cores: every configuration holds ``threads + worker_threads`` cores.
One that runs a drafter worker process gives the main process ``threads`` and
the worker ``worker_threads``; every other one (the baseline and the peers
included) runs the main process on all of them. A configuration's own
``threads`` overrides this (``vl_baseline_1thread``: on a small model more
threads can be slower, so the reference is the faster of the two).

Timing covers the verifier's vision tower, prefill and decoding from its
tokenised, preprocessed inputs (its tokenising and image preprocessing, common
to all configurations, are left out); the drafter's preprocessing, vision and
prefill run in the worker process beside the verifier's prefill and are timed
there, as are the worker's start and return latencies. On CUDA every timer
boundary synchronises the device (``clock.now``).

Lossless: every answer (every configuration, repeat and pair, warm-up
included) is teacher-forced through the verifier after the timing and checked
token by token (``engine.check_answer``); ties are counted, anything else is
reported naming the configuration, sample, position, tokens and margin, and
fails the job once the results are written (``lossless`` in the summary is
computed from these checks).

Ideal time and efficiency: a pair's ideal time is built from the *baseline's*
measured verifier costs on the configuration's verifier path (eager dynamic
cache, static cache, compiled; the fastest baseline configuration of that
path): its prefill of that pair, its median one-token step, and a table of
k-token verifier forwards on that path with its threads (one table per run,
sampled once per timed pair beside the configurations, outside their timing,
so load changes hit it alike; the median per width); plus, per
round, the configuration's own median cost per draft (drafts made during the
prefill count as free: perfect hiding) and its acceptance (the rounds it ran).
Efficiency = ideal / measured time: at most 1 up to noise; the rest is
overhead (Python per round, acceptance and crops, waiting for the drafter,
inter-process transfers, a main process with fewer threads than the
baseline's, verify forwards slower in place than in the table).
"""

from __future__ import annotations

import json
import statistics
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import torch

from .. import store
from ..config import ConfigError
from ..models.drafter import load_drafter
from ..models.verifier import load_verifier
from ..schemas import write_json
from .clock import now
from .concurrent import DrafterWorker, DraftJob, InProcessDrafter
from .drafting import HeadDrafter, TokenDrafter, reads_drafter
from .oracle import OracleHead, OraclePrefill, answer_hidden
from .engine import (
    AnswerCheck, Generated, LosslessError, baseline_generate, check_answer, speculative_generate,
)
from .peers import PromptLookupDrafter, hf_generate
from .static_step import StaticStep
from .track import crop, forward, prefill
from .tree import TreeDrafter

BASELINE = "vl_baseline"
TABLE_WARMUP = 3
"""Untimed forwards per width before a baseline's first verify-width sample (allocation, compilation)."""


def pairs(n_windows: int, n_questions: int, max_samples: int) -> list[tuple[int, int]]:
    """(window, question) pairs: pair i reads window i with question i mod n_questions."""
    n = n_windows if max_samples < 0 else min(max_samples, n_windows)
    return [(i, i % n_questions) for i in range(n)]


def adapter_dir(results: str, name: str) -> str:
    """``<results>/adapters/<name>``, which must exist (trained by the adapter stage)."""
    path = Path(results) / "adapters" / name
    if not path.is_dir():
        raise ConfigError(f"benchmark: adapter {name} not found at {path} (train it first)")
    return str(path)


def load_trained_adapter(results: str, name: str, device: torch.device, dtype: torch.dtype):
    """A trained adapter or head on the verifier's ``device`` in its ``dtype``, beside the LM head it feeds."""
    from ..adapters import load_adapter

    return load_adapter(adapter_dir(results, name), device, dtype)


def runs_drafter(c: dict, heads: dict) -> bool:
    """Whether a configuration runs the drafter (worker or in-process): token-level SD, a prefill adapter, an
    oracle with prefill drafts, or a decode head reading the drafter's states."""
    head = heads.get(c.get("decode_adapter"))
    return (c["kind"] == "token_sd" or bool(c.get("prefill_adapter"))
            or (c["kind"] == "oracle" and c["prefill_drafts"] > 0) or (head is not None and reads_drafter(head)))


def role(c: dict, heads: dict) -> str:
    """``ceiling`` (oracle), ``method`` (an adapter reads the event camera: a prefill adapter, or a decode head
    reading the drafter) or ``peer`` (needs no event camera: the reference candidates; token-level SD is one,
    see the module docstring)."""
    if c["kind"] == "oracle":
        return "ceiling"
    head = heads.get(c.get("decode_adapter"))
    if c.get("prefill_adapter") or (head is not None and reads_drafter(head)):
        return "method"
    return "peer"


def main_threads(c: dict, bench: dict, worker: bool) -> int:
    """Torch threads of the main process: the configuration's own ``threads``, else all the benchmark's cores
    less the drafter worker's while one runs beside it (same cores in total for every configuration)."""
    if c.get("threads"):
        return c["threads"]
    return bench["threads"] + (0 if worker else bench["worker_threads"])


def verifier_path(c: dict) -> str | None:
    """The verifier step a configuration runs: ``dynamic``, ``static`` or ``compiled`` (None: transformers'
    ``generate``, whose steps we do not see)."""
    if c["kind"] == "hf_generate":
        return None
    return "compiled" if c["compile"] else c["cache"]


class Runner:
    """Models, the drafter worker and one callable per configuration."""

    def __init__(self, cfg: dict, names: list[str], frames: int | None = None):
        bench, models = cfg["benchmark"], cfg["models"]
        self.cfg, self.bench, self.results = cfg, bench, cfg["results"]
        self.configs = {name: bench["configs"][name] for name in names}
        mv, md = models["verifier"], models["drafter"]
        self.verifier = load_verifier(mv["path"], mv["dtype"], mv["quant"], mv["device"], num_frames=frames)
        self.dtype = next(p for p in self.verifier.model.parameters() if p.is_floating_point()).dtype
        self.heads = {c["decode_adapter"]: load_trained_adapter(self.results, c["decode_adapter"],
                                                                self.verifier.device, self.dtype)
                      for c in self.configs.values() if c.get("decode_adapter")}
        uses_drafter = {name: runs_drafter(c, self.heads) for name, c in self.configs.items()}
        self.roles = {name: role(c, self.heads) for name, c in self.configs.items()}
        self.threads = {name: main_threads(c, bench, uses_drafter[name] and bench["concurrent"])
                        for name, c in self.configs.items()}
        self.drafter = load_drafter(md["path"], md["dtype"], md["quant"], md["device"]) \
            if any(uses_drafter.values()) else None
        prefill_adapters = sorted({c["prefill_adapter"] for c in self.configs.values() if c.get("prefill_adapter")})
        self.steps: dict[bool, StaticStep] = {}
        self.width_times: dict[str, dict[int, list[float]]] = {}  # baseline -> verify width -> seconds per sample
        self.worker = None
        if self.drafter is not None:
            adapters = {name: adapter_dir(self.results, name) for name in prefill_adapters}
            if bench["concurrent"]:
                self.worker = DrafterWorker(md["path"], adapters, self.verifier.lm_head.weight, md["dtype"],
                                            md["quant"], md["device"], bench["worker_threads"])
            else:
                self.worker = InProcessDrafter(self.drafter, {n: load_trained_adapter(
                    self.results, n, self.verifier.device, self.dtype) for n in adapters}, self.verifier.lm_head)

    def close(self):
        if isinstance(self.worker, DrafterWorker):
            self.worker.close()

    def step(self, c: dict) -> StaticStep | None:
        """The verifier's static-cache step of a configuration (one per compile setting, shared), or None."""
        if c["cache"] != "static":
            return None
        if c["compile"] not in self.steps:
            self.steps[c["compile"]] = StaticStep(self.verifier, compile=c["compile"])
        return self.steps[c["compile"]]

    def run(self, name: str, frames, events, question: str, max_new: int, baseline: Generated | None) -> Generated:
        c = self.configs[name]
        kind = c["kind"]
        torch.set_num_threads(self.threads[name])
        inputs = self.verifier.prepare(frames, [question])
        if kind == "hf_generate":
            return hf_generate(self.verifier, inputs, max_new, c["cache"])
        step = self.step(c)
        if kind == "baseline":
            return baseline_generate(self.verifier, inputs, max_new, step)
        if kind == "prompt_lookup":
            source = PromptLookupDrafter(inputs, self.verifier.video_token_id)
            return speculative_generate(self.verifier, inputs, max_new, source, c["gamma"], step=step)
        job, source = None, None
        if kind == "oracle":  # the verifier's own states of this answer (computed before the timed run)
            table = answer_hidden(self.verifier, inputs, baseline.tokens)
            source = HeadDrafter(OracleHead(table), self.verifier)
            if c["prefill_drafts"]:
                job = DraftJob(events, question, OraclePrefill(table), c["prefill_drafts"], return_state=False,
                               eos=self.verifier.eos_token_id)
        elif kind == "token_sd":
            source = TokenDrafter()
            job = DraftJob(events, question, "token", c["prefill_drafts"], eos=self.verifier.eos_token_id)
        else:
            if c.get("tree"):
                source = TreeDrafter(self.heads[c["decode_adapter"]], self.verifier, **c["tree"], compile=c["compile"])
            elif c.get("decode_adapter"):
                source = HeadDrafter(self.heads[c["decode_adapter"]], self.verifier, c["adaptive"], c["compile"])
            if c.get("prefill_adapter") or (source is not None and source.uses_drafter):
                job = DraftJob(events, question, c.get("prefill_adapter"),
                               c["prefill_drafts"] if c.get("prefill_adapter") else 0, c["feed_own"],
                               return_state=source is not None and source.uses_drafter, eos=self.verifier.eos_token_id)
        worker = self.worker if job is not None else None
        gamma = c["tree"]["depth"] if c.get("tree") else c.get("gamma", 0)
        return speculative_generate(self.verifier, inputs, max_new, source, gamma, worker, job,
                                    self.drafter, step)

    def run_pair(self, names: list[str], frames, events, question: str, max_new: int,
                 repeats: int) -> dict[str, list[Generated]]:
        """Every configuration ``repeats`` times, round robin; ``vl_baseline`` (first in ``names``) runs first,
        so the oracle has its answer."""
        runs: dict[str, list[Generated]] = {name: [] for name in names}
        for _ in range(repeats):
            for name in names:
                baseline = runs[BASELINE][0] if runs[BASELINE] else None
                runs[name].append(self.run(name, frames, events, question, max_new, baseline))
        return runs

    def check(self, label: str, inputs, tokens: list[int], baseline: Generated, max_new: int,
              logits: dict) -> AnswerCheck | LosslessError:
        """The whole-answer lossless check of one answer (``engine.check_answer``), outside the timing: the
        verdict, or the error it raised. ``logits`` caches the teacher-forced forward of each distinct answer
        of the pair (repeats and most configurations give the same tokens)."""
        verifier = self.verifier
        try:
            if not all(0 <= t < verifier.embed.num_embeddings for t in tokens):
                raise LosslessError(f"{label}: token ids outside the verifier's vocabulary: {tokens}")
            if tuple(tokens) not in logits:
                logits[tuple(tokens)] = verifier.teacher_forced_logits(inputs, tokens)
            return check_answer(label, logits[tuple(tokens)], tokens, baseline, self.dtype, verifier.eos_token_id,
                                max_new)
        except LosslessError as err:
            return err

    def sample_widths(self, name: str, inputs, tokens: list[int], widths: list[int]) -> None:
        """One timed verifier forward of each width after this pair's prompt, on baseline ``name``'s path and
        threads (the engine's ``forward``: model and LM head), appended to ``self.width_times[name]``. Sampled
        pair by pair beside the configurations, outside their timing, so load changes hit the verify-width
        table as they hit them."""
        times = self.width_times.setdefault(name, {})
        torch.set_num_threads(self.threads[name])
        device = self.verifier.device
        track = prefill(self.verifier, inputs, self.step(self.configs[name]), max(widths) + 1)
        feed = (tokens * max(widths))[: max(widths)]  # real answer text (a forward's cost is not its content's)
        for k in widths:
            for _ in range(0 if k in times else TABLE_WARMUP):
                forward(track, feed[:k])
                crop(track, 0)
            t = now(device)
            forward(track, feed[:k])
            times.setdefault(k, []).append(now(device) - t)
            crop(track, 0)


def median_run(runs: list[Generated]) -> Generated:
    """The run of median total time (the lower median for an even count), whose details the record keeps."""
    return sorted(runs, key=lambda g: g.total_s)[(len(runs) - 1) // 2]


def iqr(values: list[float]) -> float:
    q1, q3 = np.percentile(values, [25, 75])
    return float(q3 - q1)


def record(name: str, window: int, question: int, runs: list[Generated], verdict: AnswerCheck | LosslessError) -> dict:
    """One pair of one configuration: its median run's tokens, timings and rounds, every repeat's wall time and
    the whole-answer check of the median run's answer."""
    gen = median_run(runs)
    walls = [g.total_s for g in runs]
    ok = isinstance(verdict, AnswerCheck)
    return {
        "config": name, "sample_id": window, "question_id": question, "tokens": gen.tokens,
        "n_tokens": len(gen.tokens), "wall_s": gen.total_s, "wall_s_best": min(walls), "wall_s_repeats": walls,
        "prefill_s": None if np.isnan(gen.prefill_s) else gen.prefill_s,
        "decode_s": None if np.isnan(gen.prefill_s) else gen.decode_s,
        "rounds": [[r.drafted, r.accepted, r.from_prefill] for r in gen.rounds],
        "draft_s": [r.draft_s for r in gen.rounds], "verify_s": [r.verify_s for r in gen.rounds],
        "accepted_lengths": [r.accepted for r in gen.rounds],
        "verifier_forwards": gen.verifier_forwards if gen.rounds or gen.margins else None,
        "early_drafts": gen.early_drafts, "early_accepted": gen.early_accepted,
        "drafter_prefill_s": gen.drafter_prefill_s, "early_draft_s": gen.early_draft_s, "wait_s": gen.wait_s,
        "drafter_start_s": gen.drafter_start_s, "drafter_return_s": gen.drafter_return_s,
        "lossless": ok, "lossless_error": None if ok else str(verdict),
        "ties": verdict.ties if ok else None, "tie_divergence": verdict.tie_divergence if ok else None,
    }


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


def reference_baselines(rows: dict[str, list[dict]], configs: dict) -> dict[str, str]:
    """Per verifier path, the fastest baseline configuration on it (by its summed median times)."""
    refs: dict[str, str] = {}
    for name, c in configs.items():
        path = verifier_path(c)
        if c["kind"] == "baseline" and (path not in refs or total(rows[name]) < total(rows[refs[path]])):
            refs[path] = name
    return refs


def total(recs: list[dict], key: str = "wall_s") -> float:
    return sum(r[key] for r in recs)


def path_widths(configs: dict) -> dict[str, list[int]]:
    """Per verifier path, the verify widths its configurations can use: 1 to the most drafts of a round
    (``gamma``, ``prefill_drafts`` or a tree's node budget) plus the pending token."""
    most: dict[str, int] = {}
    for c in configs.values():
        path = verifier_path(c)
        if path is not None:
            most[path] = max(most.get(path, 1), c.get("gamma", 0) + 1, c.get("prefill_drafts", 0) + 1,
                             (c.get("tree") or {}).get("budget", 0) + 1)
    return {path: list(range(1, n + 1)) for path, n in most.items()}


def baseline_costs(rows: dict[str, list[dict]], configs: dict, threads: dict[str, int], width_times: dict) -> dict:
    """Per verifier path with a baseline in the run: its fastest baseline's name and threads, that baseline's
    prefill per pair, its median one-token step and its verify-width table (median per width)."""
    out = {}
    for path, ref in reference_baselines(rows, configs).items():
        table = {k: statistics.median(v) for k, v in sorted(width_times[ref].items())}
        steps = [v for r in rows[ref] for v in r["verify_s"]]
        out[path] = {"config": ref, "threads": threads[ref],
                     "prefill_s": [r["prefill_s"] for r in rows[ref]],
                     "step_s": statistics.median(steps) if steps else table[1],
                     "verify_by_width": {str(k): v for k, v in table.items()}}
    return out


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
    """The configuration's ideal time summed over the pairs; None without a baseline on its verifier path or
    without rounds (``generate`` peers)."""
    if reference is None:
        return None
    table = {int(k): v for k, v in reference["verify_by_width"].items()}
    ideals = [ideal_time(r, p, table, reference["step_s"], draft_s) for r, p in zip(recs, reference["prefill_s"])]
    return None if None in ideals else sum(ideals)


def strongest_peer(rows: dict[str, list[dict]], roles: dict[str, str]) -> str:
    """The fastest configuration, by summed median times, among those needing no event camera."""
    return min((name for name in rows if roles[name] == "peer"), key=lambda name: total(rows[name]))


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a / b


def summarize(rows: dict[str, list[dict]], configs: dict, roles: dict[str, str], threads: dict[str, int],
              baselines: dict, failures: dict[str, list[str]], settings: dict) -> dict:
    """``summary.json``: per configuration, speedups from medians (vs the strongest peer and vs ``vl_baseline``),
    spread, acceptance, ideal and efficiency from the baseline's costs, and the lossless verdict."""
    costs = {name: component_costs(recs) for name, recs in rows.items()}
    peer = strongest_peer(rows, roles)
    base, base_best, peer_wall = total(rows[BASELINE]), total(rows[BASELINE], "wall_s_best"), total(rows[peer])
    out = {}
    for name, recs in rows.items():
        wall = total(recs)
        tokens = sum(r["n_tokens"] for r in recs)
        ideal = ideal_total(recs, baselines.get(verifier_path(configs[name])), costs[name]["draft_s"])
        decode_rounds = [(d, a) for r in recs for d, a, early in r["rounds"] if d and not early]
        forwards = [r["verifier_forwards"] for r in recs]
        drafted = sum(d for r in recs for d, _, _ in r["rounds"])
        accepted = sum(a for r in recs for _, a, _ in r["rounds"])
        prefill = [r["prefill_s"] for r in recs if r["prefill_s"] is not None]
        out[name] = {
            "kind": configs[name]["kind"],
            "role": roles[name],
            "settings": configs[name],
            "threads": threads[name],
            "samples": len(recs),
            "wall_s_median": wall / len(recs),
            "wall_s_iqr": statistics.mean(iqr(r["wall_s_repeats"]) for r in recs),
            "wall_s_best": total(recs, "wall_s_best") / len(recs),
            "wall_s_mean": statistics.mean(w for r in recs for w in r["wall_s_repeats"]),
            "tokens_mean": tokens / len(recs),
            "tokens_per_s": tokens / wall,
            "speedup_vs_peer": peer_wall / wall,
            "speedup": base / wall,
            "speedup_best": base_best / total(recs, "wall_s_best"),
            "tau": None if None in forwards else tokens / sum(forwards),
            "tau_round": statistics.mean(a + 1 for _, a in decode_rounds) if decode_rounds else None,
            "acceptance_rate": accepted / drafted if drafted else None,
            "acceptance_histogram": {str(k): v for k, v in sorted(Counter(a for _, a in decode_rounds).items())},
            "ideal_speedup": ratio(base, ideal),
            "ideal_speedup_vs_peer": ratio(peer_wall, ideal),
            "efficiency": ratio(ideal, wall),
            "prefill_s_mean": statistics.mean(prefill) if prefill else None,
            "decode_s_mean": statistics.mean(r["decode_s"] for r in recs) if prefill else None,
            "drafter_prefill_s_mean": statistics.mean(r["drafter_prefill_s"] for r in recs),
            "wait_s_mean": statistics.mean(r["wait_s"] for r in recs),
            "drafter_start_s_mean": statistics.mean(r["drafter_start_s"] for r in recs),
            "drafter_return_s_mean": statistics.mean(r["drafter_return_s"] for r in recs),
            "early_drafts_mean": statistics.mean(r["early_drafts"] for r in recs),
            "early_accepted_mean": statistics.mean(r["early_accepted"] for r in recs),
            "lossless": not failures.get(name),
            "lossless_failures": len(failures.get(name, [])),
            "ties": sum(r["ties"] or 0 for r in recs),
            "tie_divergences": sum(bool(r["tie_divergence"]) for r in recs),
        }
    return {"settings": settings, "strongest_peer": peer, "configs": out,
            "component_costs_s": {"verifier_prefill_median": statistics.median(r["prefill_s"] for r in rows[BASELINE]),
                                  "baseline_by_path": baselines,
                                  "verifier_forward_by_tokens": {name: {str(k): v for k, v in c["verify_s"].items()}
                                                                 for name, c in costs.items()},
                                  "draft_by_config": {name: c["draft_s"] for name, c in costs.items()}}}


def table_order(summary: dict) -> list[str]:
    """The strongest peer first, then the configurations in run order, ceilings last."""
    peer, configs = summary["strongest_peer"], summary["configs"]
    rest = [n for n in configs if n != peer]
    return [peer] + [n for n in rest if configs[n]["role"] != "ceiling"] + [
        n for n in rest if configs[n]["role"] == "ceiling"]


def markdown(summary: dict) -> str:
    """``summary.md``: the strongest peer named, then one row per configuration (ceilings marked, last)."""
    peer, configs = summary["strongest_peer"], summary["configs"]
    intro = (f"Strongest peer (the fastest configuration needing no event camera): **{peer}**, "
             f"{configs[peer]['wall_s_median'] * 1e3:.2f} ms per pair (median of "
             f"{summary['settings']['repeats']} repeats, {summary['settings']['pairs']} pairs). Speedups are ratios "
             f"of summed per-pair medians; `ceiling` rows draft the verifier's own answer: the engine's upper bound, "
             f"not a method. Ideal and efficiency use the baseline's measured verifier costs.\n\n")
    head = ("| config | role | vs peer | vs vl_baseline | median ms | IQR ms | best ms | threads | tokens/s | τ "
            "| τ/round | accept | ideal vs peer | efficiency | prefill ms | decode ms | early drafts (acc.) | ties "
            "| lossless |\n|" + "---|" * 19 + "\n")

    def f(x, fmt, scale=1.0):
        return "–" if x is None else format(x * scale, fmt)

    lines = []
    for name in table_order(summary):
        s = configs[name]
        label = f"{name} (ceiling)" if s["role"] == "ceiling" else (f"**{name}**" if name == peer else name)
        early = f"{s['early_drafts_mean']:.2f} ({s['early_accepted_mean']:.2f})" if s["early_drafts_mean"] else "–"
        lines.append(f"| {label} | {s['role']} | {s['speedup_vs_peer']:.3f} | {s['speedup']:.3f} "
                     f"| {f(s['wall_s_median'], '.2f', 1e3)} | {f(s['wall_s_iqr'], '.2f', 1e3)} "
                     f"| {f(s['wall_s_best'], '.2f', 1e3)} | {s['threads']} | {s['tokens_per_s']:.0f} "
                     f"| {f(s['tau'], '.2f')} | {f(s['tau_round'], '.2f')} | {f(s['acceptance_rate'], '.2f')} "
                     f"| {f(s['ideal_speedup_vs_peer'], '.3f')} | {f(s['efficiency'], '.2f')} "
                     f"| {f(s['prefill_s_mean'], '.2f', 1e3)} | {f(s['decode_s_mean'], '.2f', 1e3)} | {early} "
                     f"| {s['ties']} ({s['tie_divergences']} div.) | {'yes' if s['lossless'] else 'NO'} |")
    return intro + head + "\n".join(lines) + "\n"


def clip_frames(frames: np.ndarray, n: int) -> np.ndarray:
    """``n`` frames of each clip [B, F, ...]: evenly spaced when ``n <= F``, each stored frame repeated when
    ``n > F`` (the toy sample stores hold 8; the verifier's cost depends on how many frames it reads, not on
    what they show)."""
    return frames[:, (np.arange(n) * frames.shape[1]) // n]


def checked_names(bench: dict, names: list[str] | None) -> list[str]:
    """The configurations to run, ``vl_baseline`` first; ConfigError for an unknown or inconsistent one."""
    names = names or list(bench["configs"])
    unknown = [n for n in names if n not in bench["configs"]]
    if unknown:
        raise ConfigError(f"benchmark.configs has no {unknown} (known: {sorted(bench['configs'])})")
    names = [BASELINE] + [n for n in names if n != BASELINE]
    if bench["configs"][BASELINE]["kind"] != "baseline":
        raise ConfigError(f"benchmark.configs.{BASELINE}.kind must be baseline")
    for name in names:
        c = bench["configs"][name]
        if c["kind"] == "speculative" and not (c["prefill_adapter"] or c["decode_adapter"]):
            raise ConfigError(f"benchmark.configs.{name}: kind speculative needs prefill_adapter or decode_adapter")
        if c["compile"] and (c["cache"] != "static" or c["kind"] == "hf_generate"):
            raise ConfigError(f"benchmark.configs.{name}.compile: our engine compiles only a static-cache verifier"
                              " step (set cache: static; hf_generate compiles its static step itself on CUDA)")
        if c.get("tree") and (c["cache"] != "static" or not c.get("decode_adapter")):
            raise ConfigError(f"benchmark.configs.{name}.tree: draft trees need a decode_adapter and cache: static "
                              "(the tree is verified with a 4-D mask on the static cache)")
    return names


def run_benchmark(cfg: dict, samples: str | Path, out_dir: str | Path, names: list[str] | None = None,
                  frames: int | None = None) -> dict:
    """Every configuration in ``names`` (default: all) on the held-out pairs; ``frames`` sets the verifier's
    frames per clip (default: the checkpoint's and the sample store's). Writes ``<config>.jsonl``,
    ``summary.json`` and ``summary.md``, then raises ``LosslessError`` if any answer failed its check."""
    bench = cfg["benchmark"]
    names = checked_names(bench, names)
    max_new = bench["max_new_tokens"]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    group, n_windows = store.open_committed(samples)
    questions = [q["text"] for q in group.attrs["questions"]]
    todo = pairs(n_windows, len(questions), bench["max_samples"])
    warm = [(i % n_windows, (i + 1) % len(questions)) for i in range(bench["warmup"])]
    runner = Runner(cfg, names, frames)
    rows: dict[str, list[dict]] = {n: [] for n in names}
    failures: dict[str, list[str]] = defaultdict(list)
    widths = path_widths(runner.configs)
    t_start = time.perf_counter()
    try:
        for index, (w, q) in enumerate(warm + todo):
            clip = np.asarray(group["frames"][w : w + 1])
            clip = clip if frames is None else clip_frames(clip, frames)
            events = np.asarray(group["event_images"][w : w + 1])
            timed = index >= len(warm)
            runs = runner.run_pair(names, clip, events, questions[q], max_new, bench["repeats"] if timed else 1)
            torch.set_num_threads(bench["threads"] + bench["worker_threads"])  # checks: outside the timing
            inputs, baseline, logits = runner.verifier.prepare(clip, [questions[q]]), runs[BASELINE][0], {}
            for name, gens in runs.items():
                label = f"config {name}, sample {w} question {q}"
                verdicts = [runner.check(label, inputs, g.tokens, baseline, max_new, logits) for g in gens]
                failures[name].extend(str(v) for v in verdicts if isinstance(v, LosslessError))
                if timed:
                    median = median_run(gens)
                    rows[name].append(record(name, w, q, gens, next(v for g, v in zip(gens, verdicts) if g is median)))
            for name in names if timed else []:  # the baselines' verify-width tables, sampled pair by pair
                if runner.configs[name]["kind"] == "baseline":
                    runner.sample_widths(name, inputs, baseline.tokens, widths[verifier_path(runner.configs[name])])
        baselines = baseline_costs(rows, runner.configs, runner.threads, runner.width_times)
    finally:
        runner.close()
    for name, recs in rows.items():
        with open(out_dir / f"{name}.jsonl", "w") as fh:
            for r in recs:
                fh.write(json.dumps(r) + "\n")
    settings = {k: v for k, v in bench.items() if k != "configs"} | {
        "pairs": len(todo), "frames": runner.verifier.frames_per_clip, "verifier": cfg["models"]["verifier"],
        "drafter": cfg["models"]["drafter"], "device": str(runner.verifier.device),
        "elapsed_s": time.perf_counter() - t_start,
    }
    summary = summarize(rows, runner.configs, runner.roles, runner.threads, baselines, failures, settings)
    write_json(out_dir / "summary.json", summary, "bench_summary")
    (out_dir / "summary.md").write_text(markdown(summary))
    messages = [m for ms in failures.values() for m in ms]
    if messages:
        raise LosslessError(f"{len(messages)} answers are not the verifier's greedy answers:\n" + "\n".join(messages))
    return summary


def run_frames_sweep(cfg: dict, samples: str | Path, out_dir: str | Path) -> dict:
    """``benchmark.frames_sweep``: its configurations at each verifier frame count, each point a benchmark of
    its own (``<out_dir>/frames_<n>/``); returns and writes ``frames_summary.json`` (per configuration, one
    value per frame count)."""
    sweep = cfg["benchmark"]["frames_sweep"]
    unknown = [n for n in sweep["configs"] if n not in cfg["benchmark"]["configs"]]
    if unknown or not sweep["frames"]:
        raise ConfigError(f"benchmark.frames_sweep: configs {unknown} are not in benchmark.configs"
                          if unknown else "benchmark.frames_sweep.frames is empty")
    point_cfg = cfg | {"benchmark": cfg["benchmark"] | {"max_samples": sweep["max_samples"]}}
    out_dir = Path(out_dir)
    points = {n: run_benchmark(point_cfg, samples, out_dir / f"frames_{n}", sweep["configs"], frames=n)
              for n in sweep["frames"]}
    names = list(next(iter(points.values()))["configs"])
    fields = ("speedup_vs_peer", "speedup", "tau", "prefill_s_mean", "drafter_prefill_s_mean", "early_drafts_mean",
              "early_accepted_mean", "wall_s_median", "wall_s_iqr", "wall_s_mean")
    summary = {
        "frames": list(points),
        "pairs": sweep["max_samples"],
        "strongest_peer": [p["strongest_peer"] for p in points.values()],
        "verifier_prefill_s_median": [p["component_costs_s"]["verifier_prefill_median"] for p in points.values()],
        "configs": {name: {f: [p["configs"][name][f] for p in points.values()] for f in fields} for name in names},
    }
    write_json(out_dir / "frames_summary.json", summary, "bench_frames")
    (out_dir / "frames_summary.md").write_text(frames_markdown(summary))
    return summary


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
