"""Two decode heads on the same held-out pairs: token-exact τ per decode round, paired, with a bootstrap interval.

The question it answers: does reading the event camera add acceptance at no
extra cost per draft (B1E against B1 with the same settings)? Each held-out
(window, question) row is replayed as greedy speculative decoding on each
head's token-exact accept map (``metrics.decode_rounds``, γ drafts per round,
teacher-forced positions); its τ per round is (accepted drafts + rounds) /
rounds. The difference of the means (``candidate`` − ``reference``) gets a 95%
percentile interval from resampling rows with replacement, the same rows for
both heads (paired); overall and per question type (colour and night questions
are where the cameras differ).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..features import FeatureStore
from ..schemas import write_json
from . import metrics as M
from .evaluate import Rows, adapter_rows, load_inputs, question_names

COMPARISON = "head_comparison.json"


def tau_per_round(rows: Rows, gamma: int) -> np.ndarray:
    """Per row, token-exact τ per decode round (accepted drafts + one verifier token per round, over rounds)."""
    lengths = rows.mask.sum(1)
    accepted, _, rounds = M.decode_rounds(rows.match & rows.mask, lengths, gamma)
    return ((accepted + rounds).double() / rounds.clamp(min=1).double()).numpy()


def paired_bootstrap(reference: np.ndarray, candidate: np.ndarray, resamples: int, seed: int) -> dict:
    """Means of both, their difference (candidate - reference) and its 95% paired-bootstrap interval."""
    diff = candidate - reference
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(resamples, len(diff)))].mean(1) if len(diff) else np.zeros(1)
    low, high = np.percentile(means, [2.5, 97.5])
    return {"pairs": int(len(diff)), "reference_mean": float(reference.mean()) if len(diff) else 0.0,
            "candidate_mean": float(candidate.mean()) if len(diff) else 0.0,
            "difference": float(diff.mean()) if len(diff) else 0.0, "interval_95": [float(low), float(high)]}


def compare_heads(reference_dir, candidate_dir, store_path, lm_head_path, verifier_path, eval_cfg: dict, out,
                  resamples: int = 10000, seed: int = 0) -> dict:
    """Write ``head_comparison.json`` into ``out``: both heads' τ per round on every held-out row, paired."""
    store = FeatureStore(store_path)
    taus, names = {}, {}
    for role, directory in (("reference", Path(reference_dir)), ("candidate", Path(candidate_dir))):
        config, model, lm_head, embedding = load_inputs(directory, lm_head_path, verifier_path, store,
                                                        eval_cfg["device"])
        if config["kind"] != "decode":
            raise ValueError(f"{directory}: a {config['level']} adapter is not a decode head")
        rows = adapter_rows(model, config, store, lm_head, embedding, eval_cfg)
        taus[role], names[role], questions = tau_per_round(rows, eval_cfg["gamma"]), config["name"], rows.question
    qids = question_names(store)
    result = {
        "reference": names["reference"], "candidate": names["candidate"], "gamma": eval_cfg["gamma"],
        "metric": "token-exact tau per decode round (accepted drafts + 1 per round), teacher-forced replay",
        "resamples": resamples, "seed": seed,
        "overall": paired_bootstrap(taus["reference"], taus["candidate"], resamples, seed),
        "per_question": {qids[q]: paired_bootstrap(taus["reference"][questions == q], taus["candidate"][questions == q],
                                                   resamples, seed) for q in sorted(set(questions.tolist()))},
    }
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / COMPARISON, result, "head_comparison")
    return result


def verdict(result: dict) -> str:
    """One sentence: whether the candidate's τ per round differs from the reference's, with the interval."""
    o = result["overall"]
    low, high = o["interval_95"]
    word = "adds" if low > 0 else ("loses" if high < 0 else "does not significantly change")
    return (f"{result['candidate']} vs {result['reference']}: tau/round {o['candidate_mean']:.3f} vs "
            f"{o['reference_mean']:.3f}, difference {o['difference']:+.3f} (95% paired bootstrap [{low:+.3f}, "
            f"{high:+.3f}], {o['pairs']} held-out pairs): the candidate {word} acceptance")
