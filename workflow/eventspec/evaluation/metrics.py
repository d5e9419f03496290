"""Acceptance metrics as pure tensor functions over masked batches [B, T].

Comparison: a position is accepted at threshold tau when ``cos >= tau`` (so
the seeds' worked example cos 0.95 0.92 0.91 0.85 0.93 0.90 0.82 at tau = 0.90
accepts 5 of 7 positions and 3 consecutive). Padding (mask False) is never
accepted and never counted.

Consecutive accepts use the cumprod trick: ``accept.int().cumprod(1).sum(1)``
is the length of the accepted prefix. Token-exact acceptance is the same with
``argmax(lm_head(pred)) == verifier token`` in place of ``cos >= tau``: the
prefix a lossless greedy verifier really accepts.

Speedups here are ESTIMATES from formulas and per-stage timings (ms), never
measurements; every name carrying one starts with ``estimated_``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..acceptance import THRESHOLDS, accepted, cosine, token_matches  # noqa: F401 (cosine: the evaluation's too)

DECODE_GAMMA = 5


def tag(tau: float) -> str:
    """0.90 -> '90', the suffix of every per-threshold metric name."""
    return f"{round(tau * 100)}"


def accept_maps(cos: torch.Tensor, match: torch.Tensor | None, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """Accept maps by metric suffix: '80'..'95' (cos >= tau) and, given token matches, 'token_exact'."""
    maps = {tag(t): accepted(cos, mask, t) for t in THRESHOLDS}
    if match is not None:
        maps["token_exact"] = match & mask
    return maps


def consecutive(accept: torch.Tensor) -> torch.Tensor:
    """Length of each row's accepted prefix [B] (cumprod trick)."""
    return accept.int().cumprod(dim=1).sum(dim=1)


def decode_rounds(accept: torch.Tensor, lengths: torch.Tensor, gamma: int = DECODE_GAMMA,
                  start: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
    """Greedy speculative decoding replayed on an accept map: (accepted drafts, drafted positions, rounds) per row.

    A round starting at position s drafts positions s .. s+gamma-1 (those
    before the row's end), accepts their accepted prefix k and the verifier's
    own token at s+k; the next round starts at s+k+1. Positions are
    teacher-forced, so every round sees the verifier's text so far. ``start``
    (default 0) is each row's first drafted position.
    """
    rows, width = accept.shape
    padded = torch.cat([accept, torch.zeros(rows, gamma, dtype=torch.bool)], dim=1)
    start = torch.zeros(rows, dtype=torch.long) if start is None else start.long().clone()
    total = torch.zeros(rows, dtype=torch.long)
    drafted = torch.zeros(rows, dtype=torch.long)
    rounds = torch.zeros(rows, dtype=torch.long)
    offsets = torch.arange(gamma)
    while True:
        active = start < lengths
        if not active.any():
            return total, drafted, rounds
        window = padded.gather(1, (start[:, None] + offsets).clamp(max=width + gamma - 1))
        window &= (start[:, None] + offsets) < lengths[:, None]
        k = consecutive(window)
        total += torch.where(active, k, 0)
        rounds += active.long()
        drafted += torch.where(active, (lengths - start).clamp(min=0, max=gamma), 0)
        start = torch.where(active, start + k + 1, start)


def stats(values: torch.Tensor, prefix: str, median: bool = False) -> dict:
    """mean/std/min/max (and median) of a 1-d tensor as ``<prefix>_<stat>`` floats (zeros when empty)."""
    values = values.double()
    if values.numel() == 0:
        keys = ("mean", "std", "min", "max") + (("median",) if median else ())
        return {f"{prefix}_{k}": 0.0 for k in keys}
    out = {
        f"{prefix}_mean": float(values.mean()),
        f"{prefix}_std": float(values.std(unbiased=False)),
        f"{prefix}_min": float(values.min()),
        f"{prefix}_max": float(values.max()),
    }
    if median:
        out[f"{prefix}_median"] = float(values.quantile(0.5))
    return out


def acceptance_summary(cos: torch.Tensor, match: torch.Tensor | None, mask: torch.Tensor,
                       gamma: int = DECODE_GAMMA) -> dict:
    """All cosine-proxy and token-exact acceptance metrics of rows [B, T] (per-position cos, token match, mask).

    SD accept rates: prefill = the accepted prefix over the row's length
    (gamma = sequence), averaged over rows; decode = accepted drafts over
    drafted positions in the ``decode_rounds`` replay with ``gamma``.
    """
    lengths = mask.sum(1)
    valid = cos[mask]
    out = {"num_rows": int(mask.shape[0]), "num_positions": int(lengths.sum())}
    out |= stats(lengths, "num_hidden_tokens")
    out |= stats(valid, "cos_sim", median=True)
    for name, accept in accept_maps(cos, match, mask).items():
        out |= acceptance_of(accept, lengths, name, gamma)
    if match is not None:
        out["token_top1_match"] = out.pop("accept_token_exact")
    return out


def acceptance_of(accept: torch.Tensor, lengths: torch.Tensor, name: str, gamma: int) -> dict:
    """Accept rate, consecutive accepts and SD accept rates of one accept map, suffixed ``_<name>``."""
    n = max(int(lengths.sum()), 1)
    run = consecutive(accept)
    hits, drafted, rounds = decode_rounds(accept, lengths, gamma)
    out = {f"accept_{name}": int(accept.sum()) / n}
    cons = stats(run, f"consecutive_{name}")
    out |= {k.replace(f"consecutive_{name}_", "consecutive_") + f"_{name}": v for k, v in cons.items()}
    out[f"sd_accept_rate_prefill_{name}"] = float((run / lengths.clamp(min=1)).double().mean()) if len(run) else 0.0
    out[f"sd_accept_rate_decode_gamma{gamma}_{name}"] = int(hits.sum()) / max(int(drafted.sum()), 1)
    out[f"accepted_per_round_gamma{gamma}_{name}"] = int(hits.sum()) / max(int(rounds.sum()), 1)
    return out


def position_stats(cos: torch.Tensor, match: torch.Tensor | None, mask: torch.Tensor, positions: int) -> list[dict]:
    """Per position (the first ``positions``): samples, mean/std cos, accept at every threshold, token top-1."""
    out = []
    for p in range(min(positions, cos.shape[1])):
        valid = mask[:, p]
        n = int(valid.sum())
        if n == 0:
            break
        values = cos[valid, p].double()
        row = {"position": p, "num_samples": n, "cos_mean": float(values.mean()),
               "cos_std": float(values.std(unbiased=False))}
        row |= {f"accept_{tag(t)}": int((values >= t).sum()) / n for t in THRESHOLDS}
        if match is not None:
            row["token_top1_match"] = int(match[valid, p].sum()) / n
        out.append(row)
    return out


def cos_histogram(cos: torch.Tensor, mask: torch.Tensor, bins: int = 40, low: float = -1.0) -> dict:
    """Counts of valid cosine similarities in ``bins`` equal bins over [low, 1]."""
    values = cos[mask].double().clamp(min=low, max=1.0)
    counts = torch.histc(values, bins=bins, min=low, max=1.0) if values.numel() else torch.zeros(bins)
    edges = torch.linspace(low, 1.0, bins + 1)
    return {"edges": [round(float(e), 6) for e in edges], "counts": [int(c) for c in counts]}


@dataclass(frozen=True)
class Timing:
    """Per-stage latencies (ms) the speedup estimates use: config defaults are the seeds' (130 / 310)."""

    egpt_prefill_ms: float
    vl_prefill_ms: float
    vl_decode_ms: float
    egpt_decode_ms: float
    adapter_ms: float

    def prefill_gap_drafts(self) -> int:
        """Drafts the drafter (+ adapter) produces while the verifier is still in its prefill."""
        gap = max(self.vl_prefill_ms - self.egpt_prefill_ms, 0.0)
        return math.floor(gap / max(self.egpt_decode_ms + self.adapter_ms, 1e-9))


def estimated_speedup_prefill(free_tokens: float, t: Timing) -> float:
    """The seeds' prefill estimate: 1 + (tokens accepted from the prefill gap x verifier decode ms) / verifier prefill ms."""
    return 1.0 + free_tokens * t.vl_decode_ms / t.vl_prefill_ms


def estimated_speedup_decode(accepted_per_round: float, draft_ms_per_token: float, t: Timing,
                             gamma: int = DECODE_GAMMA) -> float:
    """The seeds' decode estimate: (accepted + 1) / (1 + overhead), overhead = gamma drafts' cost per verifier step."""
    return (accepted_per_round + 1.0) / (1.0 + gamma * draft_ms_per_token / t.vl_decode_ms)


def estimated_speedup_e2e(output_tokens: float, free_tokens: float, decode_speedup: float, t: Timing) -> float:
    """Baseline (verifier prefill + all tokens decoded) over SD (prefill, free tokens, the rest at the decode speedup)."""
    baseline = t.vl_prefill_ms + output_tokens * t.vl_decode_ms
    rest = max(output_tokens - free_tokens, 0.0)
    sd = max(t.vl_prefill_ms, t.egpt_prefill_ms) + rest * t.vl_decode_ms / max(decode_speedup, 1e-9)
    return baseline / sd


def speedup_estimates(name: str, free_tokens: float, accepted_per_round: float, output_tokens: float,
                      draft_ms_per_token: float, t: Timing, gamma: int = DECODE_GAMMA) -> dict:
    """The three estimates of one accept map, named ``estimated_speedup_<stage>_<name>``."""
    decode = estimated_speedup_decode(accepted_per_round, draft_ms_per_token, t, gamma)
    return {
        f"prefill_free_tokens_mean_{name}": free_tokens,
        f"estimated_speedup_prefill_{name}": estimated_speedup_prefill(free_tokens, t),
        f"estimated_speedup_decode_gamma{gamma}_{name}": decode,
        f"estimated_speedup_e2e_{name}": estimated_speedup_e2e(output_tokens, free_tokens, decode, t),
    }


def two_phase(prefill: torch.Tensor, decode: torch.Tensor, lengths: torch.Tensor, gap: int, name: str,
              gamma: int = DECODE_GAMMA) -> dict:
    """Prefill hiding then decode SD on accept maps indexed by verifier token position, suffixed ``_<name>``.

    ``verifier_forwards_mean`` counts the forward verifying the prefill drafts plus one per decode round;
    ``accepted_token_fraction`` is the share of the verifier's tokens that came from accepted drafts.

    Phase 1 accepts the prefix k of the first ``gap`` prefill drafts; the
    verifier supplies token k; phase 2 replays ``decode_rounds`` from k + 1.
    """
    first = consecutive(prefill[:, :gap]) if gap > 0 else torch.zeros(len(lengths), dtype=torch.long)
    first = torch.minimum(first, lengths)
    hits, drafted, rounds = decode_rounds(decode, lengths, gamma, start=first + 1)
    n = max(int(lengths.sum()), 1)
    return {
        f"prefill_accepted_mean_{name}": float(first.double().mean()) if len(first) else 0.0,
        f"prefill_accepted_max_{name}": int(first.max()) if len(first) else 0,
        f"sd_accept_rate_decode_gamma{gamma}_{name}": int(hits.sum()) / max(int(drafted.sum()), 1),
        f"accepted_per_round_gamma{gamma}_{name}": int(hits.sum()) / max(int(rounds.sum()), 1),
        f"accepted_token_fraction_{name}": (int(first.sum()) + int(hits.sum())) / n,
        f"verifier_forwards_mean_{name}": float((rounds + 1).double().mean()) if len(rounds) else 0.0,
    }
