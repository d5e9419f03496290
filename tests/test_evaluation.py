"""Stage 3: acceptance metrics on hand-computed cases, streaming evaluation, two-phase, schemas, report, figures."""

import json
import math

import jsonschema
import numpy as np
import pytest
import torch
import zarr

from adapter_fixtures import write_feature_store, write_lm_head, write_verifier_embedding
from figure_fixtures import draw
from eventspec import config as config_mod
from eventspec.adapters import AdapterError
from eventspec.adapters.train import train_adapter
from eventspec.cli import main as cli_main
from eventspec.evaluation import metrics as M
from eventspec.evaluation.evaluate import evaluate_adapter, evaluate_two_phase
from eventspec.evaluation.report import write_report
from eventspec.evaluation.timing import load_timing
from eventspec.schemas import _schema, write_json

WORKED = [0.95, 0.92, 0.91, 0.85, 0.93, 0.90, 0.82]
SMALL_ATTENTION = {"num_heads": 2, "ffn_dim": 32, "max_positions": 32}
TIMING = M.Timing(egpt_prefill_ms=130, vl_prefill_ms=310, vl_decode_ms=20, egpt_decode_ms=15, adapter_ms=5)


def row(values, width=None):
    cos = torch.tensor([values + [0.99] * ((width or len(values)) - len(values))])
    mask = torch.arange(cos.shape[1])[None] < len(values)
    return cos, mask


# --- metrics on hand-computed cases -------------------------------------------------------------


def test_worked_example_accepts_five_of_seven_and_three_consecutive_with_ge():
    cos, mask = row(WORKED)
    accept = M.accepted(cos, mask, 0.90)
    assert accept.tolist() == [[True, True, True, False, True, True, False]]  # 0.90 itself is accepted (>=)
    assert int(accept.sum()) == 5
    assert M.consecutive(accept).tolist() == [3]
    summary = M.acceptance_summary(cos, None, mask)
    assert summary["accept_90"] == pytest.approx(5 / 7)
    assert summary["consecutive_mean_90"] == 3
    assert summary["sd_accept_rate_prefill_90"] == pytest.approx(3 / 7)
    assert summary["accept_95"] == pytest.approx(1 / 7) and summary["consecutive_mean_95"] == 1
    assert summary["accept_80"] == 1 and summary["consecutive_mean_80"] == 7


def test_cosine_statistics_by_hand():
    cos, mask = row(WORKED)
    s = M.acceptance_summary(cos, None, mask)
    assert s["cos_sim_mean"] == pytest.approx(sum(WORKED) / 7, abs=1e-6)
    assert s["cos_sim_median"] == pytest.approx(0.91, abs=1e-6)
    assert (s["cos_sim_min"], s["cos_sim_max"]) == pytest.approx((0.82, 0.95), abs=1e-6)
    assert s["cos_sim_std"] == pytest.approx(float(np.std(WORKED)), abs=1e-6)
    assert s["num_hidden_tokens_mean"] == 7 and s["num_positions"] == 7


def test_consecutive_statistics_over_rows():
    accept = torch.tensor([[1, 1, 0, 1], [0, 1, 1, 1], [1, 1, 1, 1]], dtype=torch.bool)
    run = M.consecutive(accept)
    assert run.tolist() == [2, 0, 4]
    s = M.stats(run, "c")
    assert (s["c_mean"], s["c_max"], s["c_min"]) == (2, 4, 0)
    assert s["c_std"] == pytest.approx(math.sqrt(8 / 3))


def test_masked_padding_never_counts():
    cos, mask = row(WORKED)
    plain = M.acceptance_summary(cos, mask, mask), M.position_stats(cos, mask, mask, 20)
    cos, mask = row(WORKED, width=12)  # padding holds 0.99 and a token match: both would count if padding did
    match = torch.ones_like(mask)
    assert (M.acceptance_summary(cos, match, mask), M.position_stats(cos, match, mask, 20)) == plain


def test_decode_rounds_replay_by_hand():
    cos, mask = row(WORKED)
    accept = M.accepted(cos, mask, 0.90)  # 1 1 1 0 1 1 0
    hits, drafted, rounds = M.decode_rounds(accept, mask.sum(1), gamma=5)
    # round 1 drafts 0-4, accepts 3, verifier's token at 3; round 2 drafts 4-6, accepts 2, verifier's token at 6.
    assert (hits.tolist(), drafted.tolist(), rounds.tolist()) == ([5], [8], [2])
    s = M.acceptance_summary(cos, None, mask, gamma=5)
    assert s["sd_accept_rate_decode_gamma5_90"] == pytest.approx(5 / 8)
    assert s["accepted_per_round_gamma5_90"] == pytest.approx(2.5)
    hits, drafted, rounds = M.decode_rounds(accept, mask.sum(1), gamma=5, start=torch.tensor([4]))
    assert (hits.tolist(), drafted.tolist(), rounds.tolist()) == ([2], [3], [1])


def test_token_matches_and_token_exact_consecutive():
    head = torch.eye(4)
    tokens = torch.tensor([[0, 1, 2, 3, -1]])
    mask = tokens >= 0
    pred = torch.nn.functional.one_hot(torch.tensor([[0, 1, 3, 3, 0]]), 4).float()  # wrong at position 2
    match = M.token_matches(pred, head, tokens, mask)
    assert match.tolist() == [[True, True, False, True, False]]
    cos = torch.ones(1, 5)
    s = M.acceptance_summary(cos, match, mask)
    assert s["token_top1_match"] == pytest.approx(3 / 4)
    assert s["consecutive_mean_token_exact"] == 2 and s["consecutive_mean_90"] == 4


def test_position_stats_by_hand():
    cos = torch.tensor([[0.95, 0.80], [0.85, 0.99]])
    mask = torch.tensor([[True, True], [True, False]])
    match = torch.tensor([[True, False], [False, True]])
    stats = M.position_stats(cos, match, mask, 5)
    assert len(stats) == 2
    assert stats[0]["num_samples"] == 2 and stats[0]["cos_mean"] == pytest.approx(0.90)
    assert stats[0]["accept_90"] == 0.5 and stats[0]["token_top1_match"] == 0.5
    assert stats[1]["num_samples"] == 1 and stats[1]["accept_80"] == 1 and stats[1]["token_top1_match"] == 0


def test_speedup_estimates_by_hand():
    assert TIMING.prefill_gap_drafts() == 9  # (310 - 130) / (15 + 5)
    assert M.estimated_speedup_prefill(4, TIMING) == pytest.approx(1 + 4 * 20 / 310)
    assert M.estimated_speedup_decode(2.5, 20, TIMING, gamma=5) == pytest.approx(3.5 / 6)
    # baseline 310 + 10 x 20 = 510; SD 310 + (10 - 4) x 20 / 2 = 370
    assert M.estimated_speedup_e2e(10, 4, 2.0, TIMING) == pytest.approx(510 / 370)
    names = M.speedup_estimates("90", 4, 2.5, 10, 20, TIMING)
    assert all(k.startswith(("estimated_", "prefill_free")) for k in names)


def test_two_phase_by_hand():
    prefill = torch.tensor([[1, 1, 0, 1, 1, 1, 1, 1]], dtype=torch.bool)
    decode = torch.tensor([[0, 0, 0, 1, 1, 0, 1, 1]], dtype=torch.bool)
    out = M.two_phase(prefill, decode, torch.tensor([8]), gap=4, name="x", gamma=2)
    # phase 1: prefix 2 of the first 4; verifier's token 2; decode rounds from 3: [3,4] both, token 5; [6,7] both
    assert out["prefill_accepted_mean_x"] == 2
    assert out["accepted_per_round_gamma2_x"] == 2 and out["sd_accept_rate_decode_gamma2_x"] == 1
    assert out["accepted_token_fraction_x"] == pytest.approx(6 / 8)
    assert out["verifier_forwards_mean_x"] == 3


# --- streaming evaluation ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluation")
    test = write_feature_store(root / "test.zarr", 40, seed=1, shard_rows=16)
    group = zarr.open_group(test, mode="r+")
    group["question_id"][:] = np.arange(40, dtype=np.int32) % 3
    group.attrs["questions"] = [{"qid": q, "text": q} for q in ("colors", "time_of_day", "objects")]
    paths = {"test": test, "train": write_feature_store(root / "train.zarr", 96, seed=0),
             "lm_head": write_lm_head(root / "lm_head.safetensors"), "verifier": write_verifier_embedding(root / "v")}
    for name, level in (("pre", "L1"), ("dec", "L5F")):
        hparams = {} if level == "L1" else SMALL_ATTENTION
        cfg = config_mod.validate({"adapters": {name: {"level": level, "hyperparams": hparams, "epochs": 1,
                                                       "batch_size": 16}}})
        train_cfg = cfg["train"] | {"block_mb": 1, "shuffle_buffer_mb": 1}
        train_adapter(name, cfg["adapters"][name], train_cfg, paths["train"], test, paths["lm_head"],
                      root / name, paths["verifier"])
        paths[name] = root / name
    return paths


def eval_cfg(**changes):
    return config_mod.validate({"evaluate": changes})["evaluate"]


def run_eval(world, name, out, **changes):
    section = eval_cfg(**changes)
    timing, source = load_timing(section)
    return evaluate_adapter(world[name], world["test"], world["lm_head"], world["verifier"], section, timing,
                            source, out)


@pytest.mark.parametrize("name", ["pre", "dec"])
def test_one_batch_equals_sample_by_sample(world, tmp_path, name):
    whole = run_eval(world, name, tmp_path / "whole", batch_size=64, block_mb=64)
    single = run_eval(world, name, tmp_path / "single", batch_size=1, block_mb=1)
    for key in ("overall", "per_question", "cos_histogram"):
        assert _close(whole[key], single[key]), key
    positions = [json.loads((tmp_path / d / "position_stats.json").read_text()) for d in ("whole", "single")]
    assert _close(positions[0], positions[1])


def _close(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    if isinstance(a, float):
        return a == pytest.approx(b, rel=1e-5, abs=1e-6)
    return a == b


def test_evaluation_files_validate_and_group_by_question(world, tmp_path):
    result = run_eval(world, "pre", tmp_path)
    assert set(result["per_question"]) == {"colors", "time_of_day", "objects"}
    assert sum(q["num_rows"] for q in result["per_question"].values()) == result["overall"]["num_rows"] == 40
    for name, schema in (("acceptance_metrics.json", "acceptance_metrics"), ("position_stats.json", "position_stats")):
        jsonschema.validate(json.loads((tmp_path / name).read_text()), _schema(schema))
    assert all(k.startswith("estimated_") for k in result["overall"] if "speedup" in k)
    from eventspec.adapters import load_adapter

    history = json.loads((world["pre"] / "history.json").read_text())
    assert result["adapter"]["params"] == sum(p.numel() for p in load_adapter(world["pre"]).parameters())
    assert result["adapter"]["val_loss"] == history["epochs"][history["best_epoch"] - 1]["val_loss"]


def test_schema_rejects_a_malformed_metrics_file(world, tmp_path):
    result = run_eval(world, "pre", tmp_path)
    broken = json.loads(json.dumps(result))
    del broken["overall"]["consecutive_mean_token_exact"]
    with pytest.raises(jsonschema.ValidationError):
        write_json(tmp_path / "broken.json", broken, "acceptance_metrics")
    broken = json.loads(json.dumps(result))
    broken["overall"]["accept_90"] = "high"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, _schema("acceptance_metrics"))


def test_two_phase_runs_and_refuses_swapped_roles(world, tmp_path):
    section = eval_cfg()
    timing, source = load_timing(section)
    args = (world["test"], world["lm_head"], world["verifier"], section, timing, source)
    result = evaluate_two_phase(world["pre"], world["dec"], *args, tmp_path / "pair")
    jsonschema.validate(result, _schema("two_phase_metrics"))
    overall = result["overall"]
    assert 0 <= overall["prefill_accepted_mean_token_exact"] <= result["prefill_gap_drafts"]
    assert 0 <= overall["accepted_token_fraction_token_exact"] <= 1
    with pytest.raises(AdapterError, match="as the prefill adapter"):
        evaluate_two_phase(world["dec"], world["pre"], *args, tmp_path / "swapped")
    draw(tmp_path, "stage_timeline", tmp_path / "pair/acceptance_metrics.json", tau=0.85)


def test_timing_from_a_benchmark_summary_uses_the_strongest_peer(tmp_path):
    summary = {"strongest_peer": "compiled",
               "component_costs_s": {"verifier_prefill_median": 0.25},
               "configs": {"vl_baseline": {"prefill_s_mean": 0.2, "decode_s_mean": 0.5, "wall_s_median": 0.7,
                                           "tokens_mean": 11, "drafter_prefill_s_mean": 0.0},
                           "compiled": {"prefill_s_mean": 0.2, "wall_s_median": 0.4, "tokens_mean": 11},
                           "spec": {"drafter_prefill_s_mean": 0.05}}}
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    timing, source = load_timing(eval_cfg(), tmp_path / "summary.json")
    assert (timing.vl_prefill_ms, timing.vl_decode_ms, timing.egpt_prefill_ms) == pytest.approx((200, 20, 50))
    assert str(tmp_path / "summary.json") in source and "strongest peer" in source
    summary["strongest_peer"] = "hf"  # transformers' generate reports no prefill: the run's median
    summary["configs"]["hf"] = {"prefill_s_mean": None, "wall_s_median": 0.45, "tokens_mean": 11}
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    timing, _ = load_timing(eval_cfg(), tmp_path / "summary.json")
    assert (timing.vl_prefill_ms, timing.vl_decode_ms) == pytest.approx((250, 20))
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(AdapterError, match="bad.json"):
        load_timing(eval_cfg(), tmp_path / "bad.json")


def test_timing_from_a_profile_takes_the_strongest_greedy_step():
    timing, source = load_timing(eval_cfg(profile="h200-bf16"), "ignored.json")
    assert timing.vl_decode_ms == pytest.approx(6.0)  # compiled step, not the eager 17.7 nor generate's 21.3
    assert (timing.vl_prefill_ms, timing.egpt_prefill_ms, timing.adapter_ms) == pytest.approx((71.2, 35.5, 1.6))
    assert "h200-bf16" in source
    timing, _ = load_timing(eval_cfg(profile="seeds-4bit-2gpu"))
    assert timing.vl_decode_ms == pytest.approx(691 / 49, rel=1e-4) and timing.vl_prefill_ms == pytest.approx(326)


def test_cli_and_report(world, tmp_path, capsys):
    code = cli_main(["evaluate", "--config-json", "{}", "--checkpoint", str(world["dec"] / "best.safetensors"),
                     "--test_data", str(world["test"]), "--lm_head", str(world["lm_head"]), "--verifier",
                     str(world["verifier"]), "--output_dir", str(tmp_path / "dec"), "--vl_prefill_ms", "400"])
    assert code == 0
    metrics = json.loads((tmp_path / "dec/acceptance_metrics.json").read_text())
    assert metrics["timing"]["vl_prefill_ms"] == 400
    run_eval(world, "pre", tmp_path / "pre")
    text = write_report([tmp_path / "pre/acceptance_metrics.json", tmp_path / "dec/acceptance_metrics.json"],
                        tmp_path / "METRICS_COMPARISON.md", 0.9)
    assert "| pre " in text and "| dec " in text and "token_exact_consec" in text and "pearson" in text
    for name in ("pre", "dec"):
        files = (tmp_path / name / "acceptance_metrics.json", tmp_path / name / "position_stats.json")
        for figure in ("metrics_summary", "stage_timeline", "token_metrics"):
            draw(tmp_path / name, figure, *files[: 1 if figure == "stage_timeline" else 2], tau=0.9)
    draw(tmp_path, "adapter_comparison", tmp_path / "pre/acceptance_metrics.json",
         tmp_path / "dec/acceptance_metrics.json", tau=0.8)
    assert cli_main(["evaluate", "--config-json", "{}", "--test_data", str(world["test"]),
                     "--lm_head", str(world["lm_head"])]) == 2
    assert "--checkpoint" in capsys.readouterr().err
