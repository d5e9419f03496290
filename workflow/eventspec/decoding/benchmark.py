"""``eventspec benchmark``: every configuration side by side on held-out (window, question) pairs.

Shape: ``plan`` derives one plan per configuration; ``Runner`` holds the
models, the drafter worker, the static steps and one draft source per
configuration, and runs a configuration on a pair through ``timed`` (the
engine timed from outside); ``lossless`` checks every answer; ``report``
turns the per-pair records into ``summary.json`` / ``summary.md``.

Per pair, every configuration runs ``repeats`` times; each repeat runs the
configurations in an order shuffled from ``benchmark.seed`` (so neither load
drift nor cache state favours a fixed position). Before them, ``vl_baseline``
runs once untimed: its answer is the reference of the tie counts and the
oracle's drafts. The first ``warmup`` pairs run untimed; on them every static
step's width buckets are compiled at every thread count its configurations
use, and the tie tolerance is measured (``lossless.calibrate``). After the
warm-up, dynamo's compile counter is read around every run:
``recompiles_after_warmup`` per configuration, and a recompile fails the job
(as does dynamo's recompile limit, which would otherwise fall back to eager
silently).

Reference: the run's strongest peer (``report``), the fastest configuration
that needs no event camera: our greedy decoding (eager, static, compiled, any
thread count), transformers' ``generate``, prompt lookup, token-level SD (the
seeds' prior-art baseline: it uses no trained adapter) and speculative
decoding whose only adapter reads the verifier (B1). ``oracle*`` draft the
verifier's own answer: the engine's ceiling on the machine (role ``ceiling``).

Failures (answers that are not the verifier's greedy answers, recompiles after
warm-up) are written with their evidence to ``<output_dir>/failures.json`` (not
a declared output: Snakemake keeps it when the job fails) after the records and
the summary, then the job fails.

Ideal time and efficiency: a pair's ideal time is built from the measured
costs of the baseline on the configuration's verifier path *with its threads*
(eager dynamic cache, static cache, compiled; the fastest such baseline): its
prefill of that pair, its median one-token step, and a table of k-token
verifier forwards (sampled once per timed pair beside the configurations,
outside their timing; median per width); plus, per round, the configuration's
own median cost per draft (drafts made during the prefill free) and its
acceptance. Efficiency = ideal / measured time: overhead only, the thread split
no longer enters (a worker configuration's 1-thread main process is compared
with a 1-thread baseline); None where the run has no baseline of that path and
thread count.
"""

from __future__ import annotations

import json
import random
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from torch._dynamo.utils import counters
from tqdm import tqdm

from .. import store
from ..config import ConfigError
from ..models.drafter import load_drafter
from ..models.verifier import load_verifier
from ..profiling.costs import load_profile
from ..profiling.ratios import cost_ratios
from ..schemas import write_json
from .clock import now
from .concurrent import DrafterWorker, DraftJob, InProcessDrafter
from .drafting import HeadDrafter, TokenDrafter
from .engine import greedy_decode
from .lossless import AnswerCheck, LosslessError, calibrate, check_answer, forward_gap, write_evidence
from .oracle import OracleHead, OraclePrefill, answer_hidden
from .peers import PromptLookupDrafter, hf_generate
from .plan import Plan, make_plan
from .report import BASELINE, baseline_costs, frames_markdown, frames_summary, markdown, summarize
from .static_step import StaticStep
from .timed import Generated, timed_greedy, timed_speculative
from .track import crop, forward, prefill
from .tree import TreeDrafter

REFERENCE_PROFILE = "h200-bf16"
"""The real pair's cost profile the run's cost ratios are set beside (DESIGN §4: the toy as a wind tunnel)."""
TABLE_WARMUP = 3
"""Untimed forwards per width before a baseline's first verify-width sample (allocation, compilation)."""


def pairs(n_windows: int, asked: list[int], max_samples: int) -> list[tuple[int, int]]:
    """(window, question) pairs: pair i reads window i with question ``asked[(i // 2) mod len(asked)]``, so the
    even pairs (which choose the strongest peer) and the odd ones (held out) ask the same questions."""
    n = n_windows if max_samples < 0 else min(max_samples, n_windows)
    return [(i, asked[(i // 2) % len(asked)]) for i in range(n)]


def asked_questions(bench: dict, qids: list[str], samples: str | Path) -> list[int]:
    """Indices into the sample store's questions of ``benchmark.questions`` (empty: all of them)."""
    if not bench["questions"]:
        return list(range(len(qids)))
    unknown = [q for q in bench["questions"] if q not in qids]
    if unknown:
        raise ConfigError(f"benchmark.questions: {unknown} not in {samples} (its questions: {qids})")
    return [qids.index(q) for q in bench["questions"]]


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


def compiled_graphs() -> int:
    """Graphs dynamo has compiled in this process so far (its ``unique_graphs`` counter)."""
    return counters["stats"]["unique_graphs"]


class Runner:
    """Models, the drafter worker, the static steps and one draft source per configuration, built from the
    plans; ``run`` times one configuration on one pair."""

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
        self.plans: dict[str, Plan] = {name: make_plan(name, c, self.heads, bench, str(self.verifier.device),
                                                       md["device"]) for name, c in self.configs.items()}
        runs_drafter = any(p.drafter_job is not None for p in self.plans.values())
        # one drafter copy resident: the worker's, or this process's when the drafter runs in-process
        self.drafter = load_drafter(md["path"], md["dtype"], md["quant"], md["device"],
                                    vision_dtype=md["vision_dtype"]) if runs_drafter and not bench["concurrent"] \
            else None
        self.steps: dict[bool, StaticStep] = {}
        for plan in self.plans.values():
            if plan.path in ("static", "compiled"):
                widest = max(p.verify_width for p in self.plans.values() if p.path == plan.path)
                self.steps.setdefault(plan.compile, StaticStep(self.verifier, plan.compile, widest))
        self.sources = {name: self.decode_source(p) for name, p in self.plans.items() if p.decode_adapter}
        self.width_times: dict[str, dict[int, list[float]]] = {}  # baseline -> verify width -> seconds per sample
        self.worker = None
        if runs_drafter:
            prefill_adapters = sorted({p.prefill_adapter for p in self.plans.values() if p.drafter_job == "adapter"})
            adapters = {name: adapter_dir(self.results, name) for name in prefill_adapters}
            if bench["concurrent"]:
                self.worker = DrafterWorker(md["path"], adapters, self.verifier.lm_head.weight, md["dtype"],
                                            md["quant"], md["device"], bench["worker_threads"], md["vision_dtype"])
            else:
                self.worker = InProcessDrafter(self.drafter, {n: load_trained_adapter(
                    self.results, n, self.verifier.device, self.dtype) for n in adapters}, self.verifier.lm_head)

    def close(self):
        if isinstance(self.worker, DrafterWorker):
            self.worker.close()

    def decode_source(self, plan: Plan):
        """A configuration's decode head as its draft source (built once: a compiled head keeps its graphs): an
        EAGLE-2 draft tree with ``tree`` settings, else a chain of up to ``gamma`` drafts."""
        head = self.heads[plan.decode_adapter]
        if plan.tree:
            return TreeDrafter(head, self.verifier, **plan.tree, compile=plan.compile)
        return HeadDrafter(head, self.verifier, self.configs[plan.name]["adaptive"], plan.compile, gamma=plan.gamma)

    def step(self, plan: Plan) -> StaticStep | None:
        return self.steps[plan.compile] if plan.path in ("static", "compiled") else None

    def allocate(self, prompt_len: int, max_new: int) -> None:
        """Every static cache once, at the run's largest size: the longest prompt, the answer, the widest bucket."""
        for step in self.steps.values():
            step.allocate(prompt_len + max_new + 1 + max(step.buckets))

    def warm(self, inputs) -> None:
        """Every static step's width buckets at every thread count its configurations use (untimed)."""
        for compiled, step in self.steps.items():
            for threads in sorted({p.threads for p in self.plans.values() if self.steps.get(p.compile) is step
                                   and p.path in ("static", "compiled")}):
                torch.set_num_threads(threads)
                track = prefill(self.verifier, inputs, step)
                step.warm(track.length)

    def reference(self, inputs, max_new: int) -> tuple[list[int], list[torch.Tensor]]:
        """The verifier's greedy answer (eager, dynamic cache, untimed) and its one-token steps' logits."""
        track = prefill(self.verifier, inputs)
        tokens = greedy_decode(track, max_new, self.verifier.eos_token_id)
        return tokens, track.logits[: len(tokens)]

    def run(self, name: str, frames, events, question: str, max_new: int, reference: list[int]) -> Generated:
        plan = self.plans[name]
        c = self.configs[name]
        torch.set_num_threads(plan.threads)
        inputs = self.verifier.prepare(frames, [question])
        if plan.kind == "hf_generate":
            return hf_generate(self.verifier, inputs, max_new, c["cache"])
        step = self.step(plan)
        if plan.kind == "baseline":
            return timed_greedy(self.verifier, inputs, max_new, step)
        eos = self.verifier.eos_token_id
        source, job = self.sources.get(name), None
        if plan.kind == "prompt_lookup":
            source = PromptLookupDrafter(inputs, self.verifier.video_token_id)
        elif plan.kind == "token_sd":
            source = TokenDrafter()
        elif plan.kind == "oracle":  # the verifier's own states of this answer (computed before the timed run)
            table = answer_hidden(self.verifier, inputs, reference)
            source = HeadDrafter(OracleHead(table), self.verifier)
            if plan.drafter_job == "oracle":
                job = DraftJob(events, question, OraclePrefill(table), plan.prefill_drafts, return_state=False, eos=eos)
        if plan.drafter_job == "token":
            job = DraftJob(events, question, "token", plan.prefill_drafts, eos=eos,
                           vocab=self.verifier.tokenizer.vocab_size)
        elif plan.drafter_job in ("adapter", "state"):
            job = DraftJob(events, question, plan.prefill_adapter if plan.drafter_job == "adapter" else None,
                           plan.prefill_drafts, c["feed_own"], return_state=plan.returns_state, eos=eos)
        worker = self.worker if job is not None else None
        return timed_speculative(self.verifier, inputs, max_new, source, plan.gamma, worker, job, step=step)

    def check(self, label: str, inputs, tokens: list[int], reference: list[int], tolerance: float, max_new: int,
              logits: dict) -> AnswerCheck | LosslessError:
        """The whole-answer lossless check of one answer, outside the timing: the verdict, or the error it
        raised. ``logits`` caches the teacher-forced forward of each distinct answer of the pair."""
        verifier = self.verifier
        try:
            if not all(0 <= t < verifier.embed.num_embeddings for t in tokens):
                raise LosslessError(f"{label}: token ids outside the verifier's vocabulary: {tokens}")
            if tuple(tokens) not in logits:
                logits[tuple(tokens)] = verifier.teacher_forced_logits(inputs, tokens)
            return check_answer(label, logits[tuple(tokens)], tokens, reference, tolerance, verifier.eos_token_id,
                                max_new)
        except LosslessError as err:
            return err

    def sample_widths(self, name: str, inputs, tokens: list[int], widths: list[int]) -> None:
        """One timed verifier forward of each width after this pair's prompt, on baseline ``name``'s path and
        threads (the engine's ``forward``: model and LM head), appended to ``self.width_times[name]``. Sampled
        pair by pair beside the configurations, outside their timing, so load changes hit the verify-width
        table as they hit them."""
        times = self.width_times.setdefault(name, {})
        plan = self.plans[name]
        torch.set_num_threads(plan.threads)
        device = self.verifier.device
        track = prefill(self.verifier, inputs, self.step(plan), max(widths) + 1)
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
        "draft_s": [d for d, _ in gen.round_s], "verify_s": [v for _, v in gen.round_s],
        "accepted_lengths": [r.accepted for r in gen.rounds],
        "verifier_forwards": gen.verifier_forwards,
        "early_drafts": gen.early_drafts, "early_accepted": gen.early_accepted,
        "drafter_prefill_s": gen.drafter_prefill_s, "drafter_prepare_s": gen.drafter_prepare_s,
        "early_draft_s": gen.early_draft_s, "wait_s": gen.wait_s,
        "drafter_start_s": gen.drafter_start_s, "drafter_return_s": gen.drafter_return_s,
        "bytes_between_processes": gen.bytes_between_processes, "bytes_host_device": gen.bytes_host_device,
        "lossless": ok, "lossless_error": None if ok else str(verdict),
        "ties": verdict.ties if ok else None, "tie_divergence": verdict.diverges if ok else None,
    }


def path_widths(plans: dict[str, Plan]) -> dict[str, list[int]]:
    """Per verifier path, the verify widths its configurations can use: 1 to the most drafts of a round
    (``gamma``, ``prefill_drafts`` or a tree's node budget) plus the pending token."""
    most: dict[str, int] = {}
    for p in plans.values():
        if p.path is not None:
            most[p.path] = max(most.get(p.path, 1), p.verify_width)
    return {path: list(range(1, n + 1)) for path, n in most.items()}


def clip_frames(frames: np.ndarray, n: int) -> np.ndarray:
    """``n`` frames of each clip [B, F, ...]: evenly spaced when ``n <= F``, each stored frame repeated when
    ``n > F`` (the toy sample stores hold 8; the verifier's cost depends on how many frames it reads, not on
    what they show)."""
    return frames[:, (np.arange(n) * frames.shape[1]) // n]


def checked_names(bench: dict, names: list[str] | None) -> list[str]:
    """The configurations to run, ``vl_baseline`` first; ConfigError for an unknown or inconsistent one."""
    names = names or list(bench["configs"])
    if BASELINE not in bench["configs"]:
        raise ConfigError(f"benchmark.configs needs {BASELINE} (kind baseline): the reference of speedup and of the "
                          f"lossless check's tie counts (known: {sorted(bench['configs'])})")
    unknown = [n for n in names if n not in bench["configs"]]
    if unknown:
        raise ConfigError(f"benchmark.configs has no {unknown} (known: {sorted(bench['configs'])})")
    if bench["max_samples"] == 0:
        raise ConfigError("benchmark.max_samples is 0: no pair to time (use -1 for one per test window)")
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
    ``summary.json`` and ``summary.md``; on a failure also ``failures.json``, then raises ``LosslessError``
    (answers) or ``RuntimeError`` (recompiles after warm-up)."""
    bench = cfg["benchmark"]
    names = checked_names(bench, names)
    max_new = bench["max_new_tokens"]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "failures.json").unlink(missing_ok=True)
    group, n_windows = store.open_committed(samples)
    questions = [q["text"] for q in group.attrs["questions"]]
    asked = asked_questions(bench, [q["qid"] for q in group.attrs["questions"]], samples)
    todo = pairs(n_windows, asked, bench["max_samples"])
    warm = [(i % n_windows, asked[(i + 1) % len(asked)]) for i in range(bench["warmup"])]
    torch._dynamo.reset()  # compiled code of an earlier benchmark in this process (frames sweep) holds stale guards
    runner = Runner(cfg, names, frames)
    plans = runner.plans
    rows: dict[str, list[dict]] = {n: [] for n in names}
    failures: dict[str, list[str]] = defaultdict(list)
    evidence: list[dict] = []
    recompiles: dict[str, int] = defaultdict(int)
    gaps: list[float] = []
    tolerance = None
    widths = path_widths(plans)
    order = random.Random(bench["seed"])
    what = (f"verifier {cfg['models']['verifier']['path']} on {runner.verifier.device}, {runner.dtype}, "
            f"quant {cfg['models']['verifier']['quant']}")
    t_start = time.perf_counter()
    limit_hit = torch._dynamo.config.fail_on_recompile_limit_hit

    def clip_of(w):
        clip = np.asarray(group["frames"][w : w + 1])
        return clip if frames is None else clip_frames(clip, frames)

    try:
        longest = max(runner.verifier.prepare(clip_of(w), [questions[q]]).input_ids.shape[1] for w, q in warm + todo)
        runner.allocate(longest, max_new)
        torch._dynamo.config.fail_on_recompile_limit_hit = True  # never a silent fall back to eager
        for index, (w, q) in enumerate(tqdm(warm + todo, desc="benchmark pairs (warm-up first)", unit="pair")):
            clip, events = clip_of(w), np.asarray(group["event_images"][w : w + 1])
            timed = index >= len(warm)
            torch.set_num_threads(bench["threads"] + bench["worker_threads"])  # untimed: reference and checks
            inputs = runner.verifier.prepare(clip, [questions[q]])
            if index == 0:
                runner.warm(inputs)
            reference, steps = runner.reference(inputs, max_new)
            if tolerance is None:  # measured on the warm-up pairs (without any: on the first timed pair)
                gaps.append(forward_gap(runner.verifier.teacher_forced_logits(inputs, reference), steps))
                if timed or index + 1 == len(warm):
                    tolerance = calibrate(gaps, runner.dtype, what)
            pair_tolerance = (tolerance or calibrate(gaps, runner.dtype, what))["tolerance"]  # warm-up: so far
            runs: dict[str, list] = {name: [] for name in names}
            for _ in range(bench["repeats"] if timed else 1):
                for name in order.sample(names, len(names)):
                    before = compiled_graphs()
                    runs[name].append(runner.run(name, clip, events, questions[q], max_new, reference))
                    recompiles[name] += (compiled_graphs() - before) if timed else 0
            torch.set_num_threads(bench["threads"] + bench["worker_threads"])
            logits = {}
            for name, gens in runs.items():
                label = f"config {name}, sample {w} question {q}"
                verdicts = [runner.check(label, inputs, g.tokens, reference, pair_tolerance, max_new, logits)
                            for g in gens]
                for repeat, (g, v) in enumerate(zip(gens, verdicts)):
                    if isinstance(v, LosslessError):
                        failures[name].append(str(v))
                        evidence.append({"config": name, "sample_id": w, "question_id": q, "repeat": repeat,
                                         "warmup": not timed, "tokens": g.tokens, "reference": reference,
                                         "error": str(v)})
                if timed:
                    median = median_run(gens)
                    rows[name].append(record(name, w, q, gens, next(v for g, v in zip(gens, verdicts) if g is median)))
            for name in names if timed else []:  # the baselines' verify-width tables, sampled pair by pair
                if plans[name].kind == "baseline":
                    runner.sample_widths(name, inputs, reference, widths[plans[name].path])
        baselines = baseline_costs(rows, plans, runner.width_times)
    finally:
        torch._dynamo.config.fail_on_recompile_limit_hit = limit_hit
        runner.close()
    for name, recs in rows.items():
        with open(out_dir / f"{name}.jsonl", "w") as fh:
            for r in recs:
                fh.write(json.dumps(r) + "\n")
    settings = {k: v for k, v in bench.items()} | {
        "pairs": len(todo), "frames": runner.verifier.frames_per_clip, "verifier": cfg["models"]["verifier"],
        "drafter": cfg["models"]["drafter"], "device": str(runner.verifier.device),
        "elapsed_s": time.perf_counter() - t_start, "tie_tolerance": tolerance,
    }
    summary = summarize(rows, plans, baselines, failures, recompiles, settings)
    summary["cost_ratios"] = cost_ratios(summary, load_profile(REFERENCE_PROFILE))
    write_json(out_dir / "summary.json", summary, "bench_summary")
    (out_dir / "summary.md").write_text(markdown(summary))
    late = {name: n for name, n in recompiles.items() if n}
    if evidence or late:
        write_evidence(out_dir / "failures.json", evidence + [{"config": n, "recompiles_after_warmup": k}
                                                              for n, k in late.items()])
    if evidence:
        raise LosslessError(f"{len(evidence)} answers are not the verifier's greedy answers (evidence: "
                            f"{out_dir / 'failures.json'}):\n" + "\n".join(e["error"] for e in evidence))
    if late:
        raise RuntimeError(f"dynamo recompiled after the warm-up ({late}; evidence: {out_dir / 'failures.json'}): "
                           "timed runs paid compilations (warm every width and thread count)")
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
    summary = frames_summary(points, sweep["max_samples"])
    write_json(out_dir / "frames_summary.json", summary, "bench_frames")
    (out_dir / "frames_summary.md").write_text(frames_markdown(summary))
    return summary
