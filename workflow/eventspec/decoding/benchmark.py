"""``eventspec benchmark``: every configuration side by side on held-out (window, question) pairs.

Per pair, every configuration runs in turn (round robin, so load changes on a
shared machine hit all of them alike), ``repeats`` times; a pair's wall time
is the fastest repeat (the least disturbed). The first ``warmup`` pairs run
untimed. Every configuration's tokens must equal ``vl_baseline``'s on every
pair (``engine.check_lossless``; the job fails naming the pair).

Timing covers the verifier's vision tower, prefill and decoding from its
tokenised, preprocessed inputs (its tokenising and image preprocessing, common
to all configurations, are left out); the drafter's preprocessing, vision and
prefill run in the worker process beside the verifier's prefill and are timed
there, as are the worker's start and return latencies.

Ideal speedup (per configuration, from this run's components and acceptance):
a pair's ideal time is the configuration's own verifier prefill plus, per
round, its median verifier forward of that many tokens and its median cost
per draft (drafts made during the prefill count as free: perfect hiding);
ideal speedup = the baseline's measured time / the ideal time, summed over
pairs; efficiency = measured / ideal speedup = the share of the time spent in
those components (what is left is overhead: Python, waiting for the drafter,
inter-process transfers).

The ``oracle`` kind drafts the verifier's own answer (its hidden states along
the baseline's tokens, computed before the timed run) through the same worker,
engine and verification at no head cost: the ceiling of the engine on the
machine, not a method.
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
from .concurrent import DrafterWorker, DraftJob, InProcessDrafter
from .drafting import HeadDrafter, TokenDrafter
from .oracle import OracleHead, OraclePrefill, answer_hidden
from .engine import Generated, baseline_generate, check_lossless, speculative_generate
from .peers import PromptLookupDrafter, hf_generate
from .static_step import StaticStep

BASELINE = "vl_baseline"


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
        uses_drafter = [c for c in self.configs.values() if c["kind"] == "token_sd" or c.get("prefill_adapter")
                        or (c["kind"] == "oracle" and c["prefill_drafts"])
                        or (c.get("decode_adapter") and "drafter" in self.heads[c["decode_adapter"]].uses)]
        self.drafter = load_drafter(md["path"], md["dtype"], md["quant"], md["device"]) if uses_drafter else None
        prefill_adapters = sorted({c["prefill_adapter"] for c in self.configs.values() if c.get("prefill_adapter")})
        self.steps: dict[bool, StaticStep] = {}
        self.worker = None
        if uses_drafter:
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
            if c.get("decode_adapter"):
                source = HeadDrafter(self.heads[c["decode_adapter"]], self.verifier, c["adaptive"], c["compile"])
            if c.get("prefill_adapter") or (source is not None and source.uses_drafter):
                job = DraftJob(events, question, c.get("prefill_adapter"),
                               c["prefill_drafts"] if c.get("prefill_adapter") else 0, c["feed_own"],
                               return_state=source is not None and source.uses_drafter, eos=self.verifier.eos_token_id)
        worker = self.worker if job is not None else None
        return speculative_generate(self.verifier, inputs, max_new, source, c.get("gamma", 0), worker, job,
                                    self.drafter, step)


def record(name: str, window: int, question: int, gen: Generated, repeats: list[float], tie: bool) -> dict:
    return {
        "config": name, "sample_id": window, "question_id": question, "tokens": gen.tokens,
        "n_tokens": len(gen.tokens), "wall_s": min(repeats), "wall_s_repeats": repeats,
        "prefill_s": None if np.isnan(gen.prefill_s) else gen.prefill_s,
        "decode_s": None if np.isnan(gen.prefill_s) else gen.decode_s,
        "rounds": [[r.drafted, r.accepted, r.from_prefill] for r in gen.rounds],
        "draft_s": [r.draft_s for r in gen.rounds], "verify_s": [r.verify_s for r in gen.rounds],
        "accepted_lengths": [r.accepted for r in gen.rounds],
        "verifier_forwards": gen.verifier_forwards if gen.rounds or gen.margins else None,
        "early_drafts": gen.early_drafts, "early_accepted": gen.early_accepted,
        "drafter_prefill_s": gen.drafter_prefill_s, "early_draft_s": gen.early_draft_s, "wait_s": gen.wait_s,
        "drafter_start_s": gen.drafter_start_s, "drafter_return_s": gen.drafter_return_s,
        "tie_divergence": tie,
    }


def component_costs(recs: list[dict]) -> dict:
    """One configuration's medians over this run: verifier forward by token count, cost of one decode-phase draft."""
    by_n = defaultdict(list)
    for r in recs:
        for (drafted, _, _), v in zip(r["rounds"], r["verify_s"]):
            by_n[drafted + 1].append(v)
    per_draft = [s / d for r in recs for (d, _, early), s in zip(r["rounds"], r["draft_s"]) if d and not early]
    return {"verify_s": {n: statistics.median(v) for n, v in sorted(by_n.items())},
            "draft_s": statistics.median(per_draft) if per_draft else 0.0}


def ideal_time(rec: dict, costs: dict) -> float | None:
    """The pair's time at the configuration's own component costs with no overhead: its verifier prefill,
    the median verifier forward per round, the median draft cost (drafts made during the prefill free)."""
    if rec["verifier_forwards"] is None:
        return None
    t = rec["prefill_s"]
    for drafted, _, early in rec["rounds"]:
        t += costs["verify_s"][drafted + 1] + (0.0 if early else drafted * costs["draft_s"])
    return t


def summarize(rows: dict[str, list[dict]], configs: dict, settings: dict) -> dict:
    costs = {name: component_costs(recs) for name, recs in rows.items()}
    base_wall = sum(r["wall_s"] for r in rows[BASELINE])
    out = {}
    for name, recs in rows.items():
        wall = sum(r["wall_s"] for r in recs)
        tokens = sum(r["n_tokens"] for r in recs)
        ideals = [ideal_time(r, costs[name]) for r in recs]
        ideal = None if None in ideals else base_wall / sum(ideals)
        speedup = base_wall / wall
        hist = Counter(a for r in recs for (d, a, _) in r["rounds"] if d)
        forwards = [r["verifier_forwards"] for r in recs]
        drafted = sum(d for r in recs for d, _, _ in r["rounds"])
        accepted = sum(a for r in recs for _, a, _ in r["rounds"])
        drafting = [a + 1 for r in recs for d, a, _ in r["rounds"] if d]
        prefill = [r["prefill_s"] for r in recs if r["prefill_s"] is not None]
        out[name] = {
            "kind": configs[name]["kind"],
            "settings": configs[name],
            "samples": len(recs),
            "wall_s_mean": wall / len(recs),
            "tokens_mean": tokens / len(recs),
            "tokens_per_s": tokens / wall,
            "speedup": speedup,
            "tau": None if None in forwards else tokens / sum(forwards),
            "tau_round": statistics.mean(drafting) if drafting else None,
            "acceptance_rate": accepted / drafted if drafted else None,
            "acceptance_histogram": {str(k): v for k, v in sorted(hist.items())},
            "ideal_speedup": ideal,
            "efficiency": speedup / ideal if ideal else None,
            "prefill_s_mean": statistics.mean(prefill) if prefill else None,
            "decode_s_mean": statistics.mean(r["decode_s"] for r in recs) if prefill else None,
            "drafter_prefill_s_mean": statistics.mean(r["drafter_prefill_s"] for r in recs),
            "wait_s_mean": statistics.mean(r["wait_s"] for r in recs),
            "drafter_start_s_mean": statistics.mean(r["drafter_start_s"] for r in recs),
            "drafter_return_s_mean": statistics.mean(r["drafter_return_s"] for r in recs),
            "early_drafts_mean": statistics.mean(r["early_drafts"] for r in recs),
            "early_accepted_mean": statistics.mean(r["early_accepted"] for r in recs),
            "lossless": True,
            "tie_divergences": sum(r["tie_divergence"] for r in recs),
        }
    prefill = [r["prefill_s"] for r in rows[BASELINE]]
    return {"settings": settings, "configs": out,
            "component_costs_s": {"verifier_prefill_median": statistics.median(prefill),
                                  "verifier_forward_by_tokens": {name: {str(k): v for k, v in c["verify_s"].items()}
                                                                 for name, c in costs.items()},
                                  "draft_by_config": {name: c["draft_s"] for name, c in costs.items()}}}


def markdown(summary: dict) -> str:
    head = ("| config | speedup | tokens/s | τ | τ/round | accept | ideal | efficiency | prefill ms | decode ms "
            "| early drafts (acc.) |\n|---|---|---|---|---|---|---|---|---|---|---|\n")

    def f(x, fmt):
        return "–" if x is None else format(x, fmt)

    lines = []
    for name, s in summary["configs"].items():
        early = f"{s['early_drafts_mean']:.2f} ({s['early_accepted_mean']:.2f})" if s["early_drafts_mean"] else "–"
        pre = None if s["prefill_s_mean"] is None else s["prefill_s_mean"] * 1e3
        dec = None if s["decode_s_mean"] is None else s["decode_s_mean"] * 1e3
        lines.append(f"| {name} | {s['speedup']:.3f} | {s['tokens_per_s']:.0f} | {f(s['tau'], '.2f')} "
                     f"| {f(s['tau_round'], '.2f')} "
                     f"| {f(s['acceptance_rate'], '.2f')} | {f(s['ideal_speedup'], '.3f')} "
                     f"| {f(s['efficiency'], '.2f')} | {f(pre, '.2f')} | {f(dec, '.2f')} | {early} |")
    return head + "\n".join(lines) + "\n"


def clip_frames(frames: np.ndarray, n: int) -> np.ndarray:
    """``n`` frames of each clip [B, F, ...]: evenly spaced when ``n <= F``, each stored frame repeated when
    ``n > F`` (the toy sample stores hold 8; the verifier's cost depends on how many frames it reads, not on
    what they show)."""
    return frames[:, (np.arange(n) * frames.shape[1]) // n]


def run_benchmark(cfg: dict, samples: str | Path, out_dir: str | Path, names: list[str] | None = None,
                  frames: int | None = None) -> dict:
    """Every configuration in ``names`` (default: all) on the held-out pairs; ``frames`` sets the verifier's
    frames per clip (default: the checkpoint's and the sample store's)."""
    bench = cfg["benchmark"]
    names = names or list(bench["configs"])
    unknown = [n for n in names if n not in bench["configs"]]
    if unknown:
        raise ConfigError(f"benchmark.configs has no {unknown} (known: {sorted(bench['configs'])})")
    if BASELINE not in names:
        names = [BASELINE, *names]
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
    torch.set_num_threads(bench["threads"])
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    group, n_windows = store.open_committed(samples)
    questions = [q["text"] for q in group.attrs["questions"]]
    todo = pairs(n_windows, len(questions), bench["max_samples"])
    warm = [(i % n_windows, (i + 1) % len(questions)) for i in range(bench["warmup"])]
    runner = Runner(cfg, names, frames)
    rows: dict[str, list[dict]] = {n: [] for n in names}
    t_start = time.perf_counter()
    try:
        for index, (w, q) in enumerate(warm + todo):
            clip = np.asarray(group["frames"][w : w + 1])
            clip = clip if frames is None else clip_frames(clip, frames)
            events = np.asarray(group["event_images"][w : w + 1])
            timed = index >= len(warm)
            baseline = None
            for name in names:
                gens = [runner.run(name, clip, events, questions[q], bench["max_new_tokens"], baseline)
                        for _ in range(bench["repeats"] if timed else 1)]
                if name == BASELINE:
                    baseline = gens[0]
                ties = [check_lossless(f"config {name}, sample {w} question {q}", baseline, g.tokens, runner.dtype)
                        for g in gens]
                if timed:
                    best = min(gens, key=lambda g: g.total_s)
                    rows[name].append(record(name, w, q, best, [g.total_s for g in gens], any(ties)))
    finally:
        runner.close()
    for name, recs in rows.items():
        with open(out_dir / f"{name}.jsonl", "w") as fh:
            for r in recs:
                fh.write(json.dumps(r) + "\n")
    settings = {k: v for k, v in bench.items() if k != "configs"} | {
        "pairs": len(todo), "frames": runner.verifier.frames_per_clip, "verifier": cfg["models"]["verifier"], "drafter": cfg["models"]["drafter"],
        "device": str(runner.verifier.device), "torch_threads": torch.get_num_threads(),
        "elapsed_s": time.perf_counter() - t_start,
    }
    summary = summarize(rows, runner.configs, settings)
    write_json(out_dir / "summary.json", summary, "bench_summary")
    (out_dir / "summary.md").write_text(markdown(summary))
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
    fields = ("speedup", "tau", "prefill_s_mean", "drafter_prefill_s_mean", "early_drafts_mean",
              "early_accepted_mean", "wall_s_mean")
    summary = {
        "frames": list(points),
        "pairs": sweep["max_samples"],
        "verifier_prefill_s_median": [p["component_costs_s"]["verifier_prefill_median"] for p in points.values()],
        "configs": {name: {f: [p["configs"][name][f] for p in points.values()] for f in fields} for name in names},
    }
    write_json(out_dir / "frames_summary.json", summary, "bench_frames")
    (out_dir / "frames_summary.md").write_text(frames_markdown(summary))
    return summary


def frames_markdown(summary: dict) -> str:
    """Speedup (early drafts accepted) per configuration and frame count, under the verifier's prefill time."""
    frames = summary["frames"]
    head = "| config | " + " | ".join(f"{n} frames" for n in frames) + " |\n|---|" + "---|" * len(frames) + "\n"
    prefill = " | ".join(f"{s * 1e3:.1f} ms" for s in summary["verifier_prefill_s_median"])
    lines = [f"| verifier prefill (median) | {prefill} |"]
    for name, c in summary["configs"].items():
        cells = " | ".join(f"{s:.3f} ({a:.2f})" for s, a in zip(c["speedup"], c["early_accepted_mean"]))
        lines.append(f"| {name} | {cells} |")
    return head + "\n".join(lines) + "\n"
