"""Stage 3: one adapter (or a prefill + decode pair) on the held-out feature store -> metrics JSON.

The store is streamed in byte-bounded blocks (``evaluate.block_mb``); what is
kept across blocks is a per-row summary of O(positions) scalars (cosine,
token match, mask, question), never hidden states. Metrics are computed
from those rows overall and per question type (the store attrs'
``questions``: the colour and night questions are where the cameras differ).

Position convention: a prefill adapter's output t is scored against h_v[t]
(token t); a decode head's output t against h_v[t+1] (token t+1), so its
accepted prefix counts drafts after the verifier's first token. Two-phase
evaluation puts both on the verifier's token positions: the prefill adapter
drafts the first ``Timing.prefill_gap_drafts()`` tokens hidden behind the
verifier's prefill; the verifier's first correction is at the end of the
accepted prefix k, and the decode head drafts gamma at a time from k + 1.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..adapters.checkpoint import BEST, build_from_config, load_adapter, read_config
from ..adapters.errors import AdapterError
from ..adapters.examples import example, load_verifier_embedding, run
from ..adapters.train import load_lm_head
from ..devices import check_device
from ..features import FeatureStore
from ..schemas import write_json
from . import metrics as M

ACCEPTANCE = "acceptance_metrics.json"
POSITIONS = "position_stats.json"
ESTIMATE_NOTE = ("estimated_* values are formula-based estimates from per-stage timings (the seeds' formulas), "
                 "not measurements; the benchmark (Stage 4) measures wall-clock speedup")


@dataclass
class Rows:
    """Per-row summaries of a whole store: cosine [N, T], token match [N, T], mask [N, T], question index [N]."""

    cos: torch.Tensor
    match: torch.Tensor
    mask: torch.Tensor
    question: np.ndarray

    def take(self, index) -> Rows:
        return Rows(self.cos[index], self.match[index], self.mask[index], self.question[index])


def pad_to(x: torch.Tensor, width: int, value=0) -> torch.Tensor:
    return torch.nn.functional.pad(x, (0, width - x.shape[1]), value=value)


def adapter_rows(model, config: dict, store: FeatureStore, lm_head: torch.Tensor, embedding, eval_cfg: dict) -> Rows:
    """Stream the store once through ``model``: per-row cosine/token match at its output positions."""
    parts = []
    questions = np.asarray(store.group["question_id"][: store.n], dtype=np.int64)
    batches = store.batches(eval_cfg["batch_size"], teacher_forced=config["input"] == "teacher_forced",
                            block_bytes=eval_cfg["block_mb"] * 2**20, with_drafter=not config["vlm_only"])
    with torch.no_grad():
        for batch in batches:
            ex = example(batch, model, embedding)
            pred, _ = run(model, ex)
            cos = M.cosine(pred, ex.target)
            match = M.token_matches(pred, lm_head, ex.tokens, ex.mask)
            parts.append(Rows(pad_to(cos.cpu(), store.T), pad_to(match.cpu(), store.T, False),
                              pad_to(ex.mask.cpu(), store.T, False), questions[batch.rows]))
    return Rows(torch.cat([p.cos for p in parts]), torch.cat([p.match for p in parts]),
                torch.cat([p.mask for p in parts]), np.concatenate([p.question for p in parts]))


def question_names(store: FeatureStore) -> list[str]:
    questions = store.group.attrs.get("questions")
    if not questions:
        raise AdapterError(f"{store.path}: store attrs carry no 'questions' (question_id -> qid)")
    return [q["qid"] for q in questions]


def draft_ms(config: dict, timing: M.Timing) -> float:
    """Cost of one draft: the adapter, plus a drafter decode step unless it reads no drafter state per draft (B1, B1E)."""
    return timing.adapter_ms + (0.0 if config["vlm_only"] or config["level"] == "B1E" else timing.egpt_decode_ms)


def adapter_summary(rows: Rows, config: dict, timing: M.Timing, gamma: int) -> dict:
    """Acceptance metrics of one adapter's rows plus its speedup estimates (cosine at every threshold, token-exact)."""
    out = M.acceptance_summary(rows.cos, rows.match, rows.mask, gamma)
    gap = timing.prefill_gap_drafts() if config["kind"] == "prefill" else 0
    for name, accept in M.accept_maps(rows.cos, rows.match, rows.mask).items():
        free = float(M.consecutive(accept).clamp(max=gap).double().mean()) if len(rows.question) else 0.0
        out |= M.speedup_estimates(name, free, out[f"accepted_per_round_gamma{gamma}_{name}"],
                                   out["num_hidden_tokens_mean"], draft_ms(config, timing), timing, gamma)
    return out


def grouped(rows: Rows, names: list[str], summarize) -> dict:
    """``summarize`` of every question type present in ``rows``."""
    return {names[q]: summarize(rows.take(rows.question == q)) for q in sorted(set(rows.question.tolist()))}


def metadata(directory: Path, config: dict) -> dict:
    """Adapter identity for the report: name, level, kind, parameters, best held-out loss."""
    history_path = directory / "history.json"
    val_loss = None
    if history_path.is_file():
        history = json.loads(history_path.read_text())
        if history.get("best_epoch"):
            val_loss = history["epochs"][history["best_epoch"] - 1]["val_loss"]
    with torch.device("meta"):
        params = sum(p.numel() for p in build_from_config(config).parameters())
    return {"name": config["name"], "level": config["level"], "kind": config["kind"], "input": config["input"],
            "params": params, "val_loss": val_loss}


def load_inputs(directory: Path, lm_head_path, verifier_path, store: FeatureStore, device: str = "cpu"):
    """(config, model, LM head, token embedding or None) of the adapter in ``directory``, all on ``device``
    (``evaluate.device``; float32)."""
    device = check_device(device, "evaluate.device")
    config = read_config(directory)
    if not (directory / BEST).is_file():
        raise AdapterError(f"{directory / BEST}: adapter weights missing")
    if (config["drafter_dim"], config["verifier_dim"]) != (store.drafter_dim, store.verifier_dim):
        raise AdapterError(f"{directory}: adapter dims ({config['drafter_dim']}, {config['verifier_dim']}) differ "
                           f"from {store.path}'s ({store.drafter_dim}, {store.verifier_dim})")
    embedding = None
    if config["use_token_embedding"]:
        if verifier_path is None:
            raise AdapterError(f"{directory}: use_token_embedding needs the verifier model (models.verifier.path)")
        embedding = load_verifier_embedding(verifier_path).to(device)
    return config, load_adapter(directory, device), load_lm_head(lm_head_path, store.verifier_dim).to(device), embedding


def positions_report(rows: Rows, names: list[str], positions: int) -> dict:
    return {
        "overall": M.position_stats(rows.cos, rows.match, rows.mask, positions),
        "per_question": grouped(rows, names, lambda r: M.position_stats(r.cos, r.match, r.mask, positions)),
    }


def common_fields(store: FeatureStore, timing: M.Timing, timing_source: str, eval_cfg: dict) -> dict:
    return {
        "store": str(store.path),
        "comparison": "accepted when cos >= tau (0.90 counts at tau = 0.90); token-exact: argmax(lm_head(pred)) == verifier token",
        "thresholds": list(M.THRESHOLDS),
        "gamma": eval_cfg["gamma"],
        "timing": {**timing.__dict__, "source": timing_source},
        "prefill_gap_drafts": timing.prefill_gap_drafts(),
        "estimates_note": ESTIMATE_NOTE,
    }


def evaluate_adapter(directory, store_path, lm_head_path, verifier_path, eval_cfg: dict, timing: M.Timing,
                     timing_source: str, out) -> dict:
    """Write ``acceptance_metrics.json`` and ``position_stats.json`` of one trained adapter into ``out``."""
    directory, out = Path(directory), Path(out)
    store = FeatureStore(store_path)
    config, model, lm_head, embedding = load_inputs(directory, lm_head_path, verifier_path, store, eval_cfg["device"])
    rows = adapter_rows(model, config, store, lm_head, embedding, eval_cfg)
    names = question_names(store)
    summary = lambda r: adapter_summary(r, config, timing, eval_cfg["gamma"])  # noqa: E731
    result = {
        "adapter": metadata(directory, config),
        **common_fields(store, timing, timing_source, eval_cfg),
        "overall": summary(rows),
        "per_question": grouped(rows, names, summary),
        "cos_histogram": M.cos_histogram(rows.cos, rows.mask),
    }
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / ACCEPTANCE, result, "acceptance_metrics")
    write_json(out / POSITIONS, {"adapter": config["name"], **positions_report(rows, names, eval_cfg["positions"])},
               "position_stats")
    return result


def to_token_positions(rows: Rows, kind: str) -> Rows:
    """Rows indexed by the verifier token they score: a decode head's output t scores token t+1."""
    if kind == "prefill":
        return rows
    shift = lambda x: torch.cat([torch.zeros_like(x[:, :1]), x[:, :-1]], dim=1)  # noqa: E731
    return Rows(shift(rows.cos), shift(rows.match), shift(rows.mask), rows.question)


def two_phase_summary(prefill: Rows, decode: Rows, lengths: torch.Tensor, timing: M.Timing, decode_draft_ms: float,
                      gamma: int) -> dict:
    """Prefill hiding then decode SD, per accept map (cosine at every threshold, token-exact)."""
    out = {"num_rows": int(len(lengths)), "num_hidden_tokens_mean": float(lengths.double().mean()) if len(lengths) else 0.0}
    gap = timing.prefill_gap_drafts()
    decode_maps = M.accept_maps(decode.cos, decode.match, decode.mask)
    for name, prefill_map in M.accept_maps(prefill.cos, prefill.match, prefill.mask).items():
        out |= M.two_phase(prefill_map, decode_maps[name], lengths, gap, name, gamma)
        out |= M.speedup_estimates(name, out[f"prefill_accepted_mean_{name}"],
                                   out[f"accepted_per_round_gamma{gamma}_{name}"], out["num_hidden_tokens_mean"],
                                   decode_draft_ms, timing, gamma)
    return out


def evaluate_two_phase(prefill_dir, decode_dir, store_path, lm_head_path, verifier_path, eval_cfg: dict,
                       timing: M.Timing, timing_source: str, out) -> dict:
    """Two-phase metrics of a prefill adapter (L1-L4) and a decode head (L5/L5F/B1) into ``out``."""
    out = Path(out)
    store = FeatureStore(store_path)
    names = question_names(store)
    rows, configs = {}, {}
    for phase, directory in (("prefill", Path(prefill_dir)), ("decode", Path(decode_dir))):
        config, model, lm_head, embedding = load_inputs(directory, lm_head_path, verifier_path, store,
                                                        eval_cfg["device"])
        if config["kind"] != phase:
            raise AdapterError(f"{directory}: a {config['kind']} adapter ({config['level']}) given as the {phase} "
                               f"adapter of a two-phase pair")
        configs[phase] = metadata(directory, config) | {"vlm_only": config["vlm_only"]}
        rows[phase] = to_token_positions(adapter_rows(model, config, store, lm_head, embedding, eval_cfg), phase)
    lengths = torch.from_numpy(store.verifier_len)
    decode_cost = draft_ms(configs["decode"], timing)

    def summary(index):
        return two_phase_summary(rows["prefill"].take(index), rows["decode"].take(index), lengths[index], timing,
                                 decode_cost, eval_cfg["gamma"])

    question = rows["prefill"].question
    result = {
        "adapter": {"name": f"{configs['prefill']['name']}+{configs['decode']['name']}", "kind": "two_phase",
                    "prefill": {k: v for k, v in configs["prefill"].items() if k != "vlm_only"},
                    "decode": {k: v for k, v in configs["decode"].items() if k != "vlm_only"}},
        **common_fields(store, timing, timing_source, eval_cfg),
        "overall": summary(np.arange(len(question))),
        "per_question": {names[q]: summary(np.flatnonzero(question == q)) for q in sorted(set(question.tolist()))},
    }
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / ACCEPTANCE, result, "two_phase_metrics")
    return result
