"""``METRICS_COMPARISON.md``: one row per adapter (and per two-phase pair) from their ``acceptance_metrics.json``.

Columns: the seeds' (params, val loss, accept@tau, cos_sim) beside the
token-exact ones (top-1 match, token-exact consecutive accepts, decode SD
accept rate) and the formula-based speedup ESTIMATES. A last section says how
well the cosine proxy predicts token-exact acceptance across adapters.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd


def load_metrics(paths) -> list[dict]:
    return [json.loads(Path(p).read_text()) for p in paths]


def adapter_table(results: list[dict], tau: str) -> pd.DataFrame:
    """One row per single adapter, sorted by token-exact consecutive accepts."""
    rows = []
    for r in results:
        if r["adapter"]["kind"] == "two_phase":
            continue
        a, o = r["adapter"], r["overall"]
        rows.append({
            "adapter": a["name"], "level": a["level"], "input": a["input"], "params": a["params"],
            "val_loss": a["val_loss"], "cos_sim": o["cos_sim_mean"], f"accept@0.{tau}": o[f"accept_{tau}"],
            f"consec@0.{tau}": o[f"consecutive_mean_{tau}"], "token_top1": o["token_top1_match"],
            "token_exact_consec": o["consecutive_mean_token_exact"],
            "token_exact_consec_max": o["consecutive_max_token_exact"],
            f"sd_decode_accept@0.{tau}": o[f"sd_accept_rate_decode_gamma{r['gamma']}_{tau}"],
            "sd_decode_accept_token_exact": o[f"sd_accept_rate_decode_gamma{r['gamma']}_token_exact"],
            f"est_speedup_e2e@0.{tau}": o[f"estimated_speedup_e2e_{tau}"],
            "est_speedup_e2e_token_exact": o["estimated_speedup_e2e_token_exact"],
        })
    frame = pd.DataFrame(rows)
    return frame.sort_values("token_exact_consec", ascending=False, kind="stable") if len(frame) else frame


def two_phase_table(results: list[dict], tau: str) -> pd.DataFrame:
    rows = []
    for r in results:
        if r["adapter"]["kind"] != "two_phase":
            continue
        o, g = r["overall"], r["gamma"]
        rows.append({
            "pair": r["adapter"]["name"], "prefill_gap_drafts": r["prefill_gap_drafts"],
            f"prefill_accepted@0.{tau}": o[f"prefill_accepted_mean_{tau}"],
            "prefill_accepted_token_exact": o["prefill_accepted_mean_token_exact"],
            f"decode_per_round@0.{tau}": o[f"accepted_per_round_gamma{g}_{tau}"],
            "decode_per_round_token_exact": o[f"accepted_per_round_gamma{g}_token_exact"],
            "drafted_share_token_exact": o["accepted_token_fraction_token_exact"],
            f"est_speedup_e2e@0.{tau}": o[f"estimated_speedup_e2e_{tau}"],
            "est_speedup_e2e_token_exact": o["estimated_speedup_e2e_token_exact"],
        })
    return pd.DataFrame(rows)


def per_question_table(results: list[dict]) -> pd.DataFrame:
    """Token-exact consecutive accepts: adapters x question types."""
    data = {r["adapter"]["name"]: {q: m["consecutive_mean_token_exact"] for q, m in r["per_question"].items()}
            for r in results if r["adapter"]["kind"] != "two_phase"}
    return pd.DataFrame(data).T.sort_index(axis=1)


def proxy_agreement(table: pd.DataFrame, tau: str) -> pd.DataFrame:
    """Across adapters: Pearson and Spearman correlation of each cosine proxy with its token-exact counterpart."""
    pairs = [(f"accept@0.{tau}", "token_top1"), (f"consec@0.{tau}", "token_exact_consec"),
             (f"sd_decode_accept@0.{tau}", "sd_decode_accept_token_exact")]
    rows = []
    for proxy, exact in pairs:
        rows.append({"cosine proxy": proxy, "token-exact": exact, "adapters": len(table),
                     "pearson": table[proxy].corr(table[exact]),
                     "spearman": table[proxy].rank().corr(table[exact].rank()),
                     "mean proxy - exact": (table[proxy] - table[exact]).mean()})
    return pd.DataFrame(rows)


def threshold_calibration(results: list[dict]) -> pd.DataFrame:
    """Per cosine threshold, across adapters: how its accept rate and consecutive accepts track the token-exact ones."""
    single = [r["overall"] for r in results if r["adapter"]["kind"] != "two_phase"]
    frame = pd.DataFrame(single)
    rows = []
    for tag in sorted({k.rsplit("_", 1)[1] for k in frame.columns if k.startswith("consecutive_mean_")} - {"exact"}):
        consec, accept = frame[f"consecutive_mean_{tag}"], frame[f"accept_{tag}"]
        exact_consec, top1 = frame["consecutive_mean_token_exact"], frame["token_top1_match"]
        rows.append({"tau": f"0.{tag}", "pearson accept vs top-1": accept.corr(top1),
                     "mean accept - top-1": (accept - top1).mean(),
                     "pearson consec vs token-exact consec": consec.corr(exact_consec),
                     "mean consec - token-exact consec": (consec - exact_consec).mean()})
    return pd.DataFrame(rows)


def write_report(paths, out, tau: float) -> str:
    tag = f"{round(tau * 100)}"
    results = load_metrics(paths)
    table = adapter_table(results, tag)
    sections = [
        "# Adapter comparison on the held-out store",
        f"Cosine proxy: a position is accepted when cos >= 0.{tag}. Token-exact: argmax(verifier LM head(pred)) "
        "equals the verifier's token; its consecutive count is what lossless greedy decoding accepts. "
        "est_speedup_* are formula-based ESTIMATES (timing in each acceptance_metrics.json), not measurements.",
        "## Adapters", table.to_markdown(index=False, floatfmt=".3f"),
    ]
    pairs = two_phase_table(results, tag)
    if len(pairs):
        sections += ["## Two-phase (prefill hiding, then decode SD)", pairs.to_markdown(index=False, floatfmt=".3f")]
    if len(table) > 1:
        sections += ["## How well the cosine proxy predicts token-exact acceptance",
                     proxy_agreement(table, tag).to_markdown(index=False, floatfmt=".3f"),
                     "Every threshold (which tau's cosine proxy sits closest to token-exact acceptance):",
                     threshold_calibration(results).to_markdown(index=False, floatfmt=".3f")]
    if len(table):
        sections += ["## Token-exact consecutive accepts per question type",
                     per_question_table(results).to_markdown(floatfmt=".2f")]
    text = "\n\n".join(sections) + "\n"
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return text
