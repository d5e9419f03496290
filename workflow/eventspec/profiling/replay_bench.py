"""``eventspec replay``: the engine on the real-shaped random pair under acceptance replay, beside its projection.

Random weights accept nothing; ``decoding.replay.ReplayDrafter`` makes every round accept what a recorded trace
accepted. This times, at real shapes (``size="real"``, full depth: a GPU) or tiny ones (CI), per configuration:
``vl_baseline`` (eager greedy), ``vl_baseline_compiled`` (static cache, compiled: CUDA graphs on CUDA — the
peer to beat), ``replay_chain`` (the recorded acceptance, compiled verify, free drafts: the engine's ceiling at
that acceptance) and ``replay_head`` (the same, paying an EAGLE-style head step per draft). Every answer must
equal its path's greedy answer. Each speedup vs compiled greedy is printed beside the projection of the same
rounds under ``profile`` (``profiling.project``), the measured-vs-projected check of the cost model at real
shapes. Prefill hiding under replay needs the drafter worker to replay prefill drafts: not covered here.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from types import SimpleNamespace

import torch

from ..decoding.replay import ReplayDrafter, decode_rounds
from ..decoding.static_step import StaticStep
from ..decoding.timed import timed_greedy as baseline_generate
from ..decoding.timed import timed_speculative as speculative_generate
from ..models.backend import PrefillInputs
from ..models.verifier import VerifierBackend
from . import measure
from .costs import head_step as profile_head_step
from .costs import step as profile_step
from .costs import verify as profile_verify
from .costs import verifier_prefill

NO_EOS = -1
"""Random weights would stop at an arbitrary EOS; replayed answers run to the length limit."""


def real_shaped_verifier(size: str, device: str, dtype: torch.dtype, frames: int) -> tuple[VerifierBackend,
                                                                                          PrefillInputs]:
    """Video-LLaVA-7B-hf's shapes (``measure.verifier`` at full depth), random weights, one prompt."""
    shapes = measure.Shapes(size)
    if size == "tiny":
        shapes.text_layers, shapes.vision_layers = 4, 4
    model, ids, pixels = measure.verifier(shapes, shapes.text_layers, shapes.vision_layers, frames, dtype, device)
    tokenizer = SimpleNamespace(eos_token_id=NO_EOS, pad_token_id=32002, unk_token_id=0)
    backend = VerifierBackend(model, tokenizer, None, device)
    return backend, PrefillInputs(ids, torch.ones_like(ids), {"pixel_values_videos": pixels})


def replays_exactly(replayed: list[tuple[int, int]], recorded: list[tuple[int, int]]) -> bool:
    """Round i accepted what recorded round i (cycling) accepted, where the answer's end cut its drafts short:
    ``min(accepted, drafted)``."""
    expected = (recorded * (len(replayed) // len(recorded) + 1))[: len(replayed)]
    return all(d <= rd and a == min(ra, d) for (d, a), (rd, ra) in zip(replayed, expected))


def projected(rounds, n_tokens: int, profile: dict, frames: int, path: str | None, per_draft: float) -> float | None:
    """The projection of one replayed answer: prefill + its rounds (verify widths + drafts) under ``profile``;
    None where the profile lacks the path (e.g. no compiled step)."""
    costs = [profile_verify(profile, path, d + 1) for d, _ in rounds] if rounds else [profile_step(profile, path)]
    if None in costs:
        return None
    if not rounds:
        return verifier_prefill(profile, frames) + (n_tokens - 1) * costs[0]
    return verifier_prefill(profile, frames) + sum(costs) + sum(d * per_draft for d, _ in rounds)


def run_replay(trace: str | Path, profile: dict, size: str = "real", device: str = "cuda", dtype: str = "bfloat16",
               frames: int = 8, max_new: int = 50, gamma: int = 5, repeats: int = 3) -> dict:
    """Time each configuration (median of ``repeats``) on the real-shaped pair with ``trace``'s acceptance."""
    records = [json.loads(line) for line in Path(trace).read_text().splitlines() if line.strip()]
    rounds = [r for rec in records for r in decode_rounds(rec) if r[0] > 0]
    if not rounds:
        raise ValueError(f"{trace}: no decode rounds with drafts to replay")
    torch_dtype = getattr(torch, dtype)
    verifier, inputs = real_shaped_verifier(size, device, torch_dtype, frames)
    vocab = verifier.embed.num_embeddings
    compiled = StaticStep(verifier, compile=True, widest=gamma + 1)
    eager = StaticStep(verifier, compile=False, widest=gamma + 1)
    for step in (compiled, eager):  # once, at the run's largest size (a reallocation would recompile)
        step.allocate(inputs.input_ids.shape[1] + max_new + 1 + max(step.buckets))
    shapes = measure.Shapes(size)
    head = measure.eagle_step(shapes, torch_dtype, device, inputs.input_ids.shape[1])
    answers = {"eager": baseline_generate(verifier, inputs, max_new, eager).tokens,
               "compiled": baseline_generate(verifier, inputs, max_new, compiled).tokens}
    runs = {
        "vl_baseline": lambda: baseline_generate(verifier, inputs, max_new),
        "vl_baseline_compiled": lambda: baseline_generate(verifier, inputs, max_new, compiled),
        "replay_chain": lambda: speculative_generate(verifier, inputs, max_new, ReplayDrafter(
            answers["compiled"], rounds, vocab), gamma, step=compiled),
        "replay_head": lambda: speculative_generate(verifier, inputs, max_new, ReplayDrafter(
            answers["compiled"], rounds, vocab, head), gamma, step=compiled),
    }
    path = {"vl_baseline": None, "vl_baseline_compiled": "compiled", "replay_chain": "compiled",
            "replay_head": "compiled"}
    per_draft = {"replay_head": profile_head_step(profile, None)}
    out = {}
    for name, fn in runs.items():
        fn()  # warm-up (compilation)
        gens = [fn() for _ in range(repeats)]
        gen = sorted(gens, key=lambda g: g.total_s)[(len(gens) - 1) // 2]
        expected = answers["eager" if path[name] is None else "compiled"]
        replayed = [(r.drafted, r.accepted) for r in gen.rounds if r.drafted]
        out[name] = {"wall_s": statistics.median(g.total_s for g in gens), "tokens": len(gen.tokens),
                     "lossless": gen.tokens == expected, "rounds": replayed,
                     "replay_exact": replays_exactly(replayed, rounds) if name.startswith("replay") else None,
                     "projected_s": projected(replayed, len(gen.tokens), profile, frames, path[name],
                                              per_draft.get(name, 0.0))}
    peer = out["vl_baseline_compiled"]
    for v in out.values():
        v["speedup_vs_compiled"] = peer["wall_s"] / v["wall_s"]
        v["projected_speedup_vs_compiled"] = (None if None in (peer["projected_s"], v["projected_s"])
                                              else peer["projected_s"] / v["projected_s"])
    return {"trace": str(trace), "size": size, "device": str(device), "dtype": dtype, "frames": frames,
            "profile": profile["name"], "configs": out}


def _times(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f}x"


def summary_lines(result: dict) -> list[str]:
    lines = [f"acceptance replay of {result['trace']} ({result['size']} shapes, {result['device']}, {result['dtype']},"
             f" {result['frames']} frames; projection under {result['profile']}):",
             "| config | wall ms | speedup vs compiled greedy | projected | lossless | replay exact |",
             "|---|---|---|---|---|---|"]
    for name, v in result["configs"].items():
        lines.append(f"| {name} | {v['wall_s'] * 1e3:.1f} | {v['speedup_vs_compiled']:.2f}x "
                     f"| {_times(v['projected_speedup_vs_compiled'])} | {'yes' if v['lossless'] else 'NO'} "
                     f"| {'–' if v['replay_exact'] is None else ('yes' if v['replay_exact'] else 'NO')} |")
    return lines
