"""The speculative decoding engine: token-exact greedy output for every kind of configuration, crops, the worker."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr
from decoding_fixtures import RandomHead, RandomPrefillAdapter

from eventspec.decoding import track as tr
from eventspec.decoding.concurrent import DrafterWorker, DraftJob, InProcessDrafter
from eventspec.decoding.drafting import HeadDrafter, TokenDrafter
from eventspec.decoding.oracle import OracleHead, OraclePrefill
from eventspec.decoding.static_step import StaticStep
from eventspec.decoding.engine import (
    Generated, LosslessError, baseline_generate, check_lossless, speculative_generate,
)
from eventspec.models.backend import greedy_generate, teacher_forced_hidden
from eventspec.models.drafter import load_drafter
from eventspec.models.verifier import load_verifier

QUESTIONS = ["What objects are in the scene?", "Is it day or night?", "Describe the scene."]
MAX_NEW = 12


@pytest.fixture(scope="module")
def pair(tiny_models):
    torch.set_num_threads(1)
    return load_verifier(tiny_models["verifier"]), load_drafter(tiny_models["drafter"])


@pytest.fixture(scope="module")
def samples(tiny_world):
    g = zarr.open_group(tiny_world[1]["test"][0], mode="r")
    return np.asarray(g["frames"][:3]), np.asarray(g["event_images"][:3])


def case(pair, samples, i):
    verifier, _ = pair
    frames, events = samples
    return verifier.prepare(frames[i : i + 1], [QUESTIONS[i]]), DraftJob(events[i : i + 1], QUESTIONS[i])


def oracle_table(verifier, inputs, n=MAX_NEW + 4):
    gen = greedy_generate(verifier, inputs, n)
    return teacher_forced_hidden(verifier, inputs, gen.tokens)[0], gen.tokens[0, : int(gen.lengths[0])].tolist()


def run(pair, samples, i, max_new=MAX_NEW, source=None, gamma=0, propose=None, k_max=0, adapters=None, feed_own=False,
        step=None):
    verifier, drafter = pair
    inputs, job = case(pair, samples, i)
    job.propose, job.k_max, job.feed_own = propose, k_max, feed_own
    uses_drafter = propose is not None or (source is not None and source.uses_drafter)
    runner = InProcessDrafter(drafter, adapters or {}, verifier.lm_head) if uses_drafter else None
    return speculative_generate(verifier, inputs, max_new, source, gamma, runner, job if runner else None, drafter,
                                step)


def reference(pair, samples, i, max_new=MAX_NEW):
    verifier, _ = pair
    inputs, _ = case(pair, samples, i)
    return baseline_generate(verifier, inputs, max_new)


@pytest.mark.parametrize("i", range(3))
def test_baseline_equals_backend_greedy(pair, samples, i):
    verifier, _ = pair
    inputs, _ = case(pair, samples, i)
    gen = greedy_generate(verifier, inputs, MAX_NEW)
    assert baseline_generate(verifier, inputs, MAX_NEW).tokens == gen.tokens[0, : int(gen.lengths[0])].tolist()


def test_crop_equals_fresh_prefill(pair, samples):
    verifier, drafter = pair
    inputs, job = case(pair, samples, 0)
    for backend, inp in ((verifier, inputs), (drafter, drafter.prepare(job.event_images, [job.question]))):
        a = tr.prefill(backend, inp)
        tr.forward(a, [5, 6, 7, 8])
        tr.crop(a, 2)
        assert a.read == [5, 6] and len(a.hidden) == 3 and a.length == a.prompt_len + 2
        h_a, l_a = tr.forward(a, [9, 10])
        b = tr.prefill(backend, inp)
        h_b, l_b = tr.forward(b, [5, 6, 9, 10])
        torch.testing.assert_close(h_a, h_b[2:], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(l_a, l_b[2:], atol=1e-4, rtol=1e-5)
        torch.testing.assert_close(torch.stack(a.hidden), torch.stack(b.hidden), atol=1e-5, rtol=1e-5)
        assert a.cache.get_seq_length() == b.cache.get_seq_length()
        tr.crop(a, 0)  # back to the prompt: the prefill's own last state
        c = tr.prefill(backend, inp)
        torch.testing.assert_close(a.last_logits(), c.last_logits())
        tr.sync(a, [5, 6, 9, 10])
        torch.testing.assert_close(a.hidden[-1], b.hidden[-1], atol=1e-5, rtol=1e-5)


def test_static_cache_crop_equals_fresh_prefill(pair, samples):
    """The verifier on a reused StaticCache: a crop moves the write position back, and what it then reads
    matches a DynamicCache run of the kept text; a later prompt in the same cache sees nothing of the earlier."""
    verifier, _ = pair
    inputs, _ = case(pair, samples, 0)
    step = StaticStep(verifier)
    a = tr.prefill(verifier, inputs, step, room=8)
    assert step.cache_len >= a.prompt_len + 8
    tr.forward(a, [5, 6, 7, 8])
    tr.crop(a, 2)
    assert a.read == [5, 6] and a.length == a.prompt_len + 2
    assert int(step.cache.get_seq_length()) == a.length
    h_a, l_a = tr.forward(a, [9, 10])
    b = tr.prefill(verifier, inputs)
    h_b, l_b = tr.forward(b, [5, 6, 9, 10])
    torch.testing.assert_close(h_a, h_b[2:], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(l_a, l_b[2:], atol=1e-4, rtol=1e-5)
    other, _ = case(pair, samples, 1)
    c = tr.prefill(verifier, other, step, room=8)  # the same cache, reset
    d = tr.prefill(verifier, other)
    torch.testing.assert_close(tr.forward(c, [5, 6])[1], tr.forward(d, [5, 6])[1], atol=1e-4, rtol=1e-5)


@pytest.fixture(scope="module")
def steps(pair):
    """Both static-cache verifier steps, the compiled one compiled once for every test that uses it."""
    return {"static": StaticStep(pair[0]), "compiled": StaticStep(pair[0], compile=True)}


@pytest.mark.parametrize("kind", ["static", "compiled"])
@pytest.mark.parametrize("name", ["baseline", "B1_decode", "oracle L4+B1", "rejected"])
@pytest.mark.parametrize("i", range(3))
def test_static_and_compiled_verifier_steps_are_lossless(pair, samples, steps, kind, name, i):
    verifier, _ = pair
    inputs, _ = case(pair, samples, i)
    ref = reference(pair, samples, i)
    if name == "baseline":
        assert baseline_generate(verifier, inputs, MAX_NEW, steps[kind]).tokens == ref.tokens
        return
    table, _ = oracle_table(verifier, inputs)
    config = _sources(pair, table)[name]
    if kind == "compiled":  # the decode head compiled too, as the benchmark's compiled configurations run it
        head = config["source"]
        config["source"] = HeadDrafter(head.head, verifier, head.adaptive, compile=True)
    gen = run(pair, samples, i, step=steps[kind], **config)
    assert gen.tokens == ref.tokens
    if name == "oracle L4+B1":
        assert gen.verifier_forwards < len(ref.tokens)


def test_oracle_decode_head_accepts_every_draft(pair, samples):
    verifier, _ = pair
    inputs, _ = case(pair, samples, 1)
    table, tokens = oracle_table(verifier, inputs)
    head = HeadDrafter(OracleHead(table), verifier)
    gen = run(pair, samples, 1, source=head, gamma=3)
    assert gen.tokens == tokens[:MAX_NEW]
    assert all(r.accepted == r.drafted == 3 for r in gen.rounds[:-1]) and len(gen.rounds) == 3


def _sources(pair, table):
    verifier, drafter = pair
    dv, dd = verifier.hidden_size, drafter.hidden_size
    return {
        "token_sd": dict(source=TokenDrafter(), gamma=3, propose="token", k_max=4),
        "L1+VL": dict(propose="L1", k_max=5, adapters={"L1": RandomPrefillAdapter(dd, dv)}),
        "L1+VL own text": dict(propose="L1", k_max=5, adapters={"L1": RandomPrefillAdapter(dd, dv)}, feed_own=True),
        "L5_decode": dict(source=HeadDrafter(RandomHead({"drafter"}, True, dd, dv), verifier), gamma=4),
        "B1_decode": dict(source=HeadDrafter(RandomHead({"verifier"}, True, dd, dv), verifier), gamma=4),
        "L5F_adaptive": dict(source=HeadDrafter(RandomHead({"drafter", "verifier"}, False, dd, dv), verifier, 0.5),
                             gamma=5),
        "oracle L4+B1": dict(source=HeadDrafter(OracleHead(table), verifier), gamma=4, propose="L4", k_max=3,
                             adapters={"L4": OraclePrefill(table)}),
        "oracle L4+L5F": dict(source=HeadDrafter(OracleHead(table, uses=("drafter", "verifier")), verifier),
                              gamma=4, propose="L4", k_max=3, adapters={"L4": OraclePrefill(table)}),
        "rejected": dict(source=HeadDrafter(OracleHead(table, sign=-1.0), verifier), gamma=3, propose="L4", k_max=3,
                         adapters={"L4": OraclePrefill(table, sign=-1.0)}),
    }


@pytest.mark.parametrize("name", ["token_sd", "L1+VL", "L1+VL own text", "L5_decode", "B1_decode", "L5F_adaptive",
                                  "oracle L4+B1", "oracle L4+L5F", "rejected"])
@pytest.mark.parametrize("i", range(3))
def test_every_configuration_is_lossless(pair, samples, name, i):
    verifier, _ = pair
    inputs, _ = case(pair, samples, i)
    table, _ = oracle_table(verifier, inputs)
    ref = reference(pair, samples, i)
    gen = run(pair, samples, i, **_sources(pair, table)[name])
    assert gen.tokens == ref.tokens, name
    drafted = sum(r.drafted for r in gen.rounds)
    accepted = sum(r.accepted for r in gen.rounds)
    assert len(gen.tokens) == gen.early_accepted + sum(r.accepted for r in gen.rounds if not r.from_prefill) + len(
        gen.rounds) + (gen.early_accepted == 0)
    if name.startswith("oracle"):
        assert gen.early_accepted >= 1 and accepted == drafted > 0
        assert gen.verifier_forwards < len(ref.tokens)
    if name == "rejected":
        assert accepted == 0 and drafted > 0 and gen.early_accepted == 0


@pytest.mark.parametrize("max_new", [1, 2, 3, 5, 7])
def test_max_new_tokens_boundary_and_gamma_beyond_what_is_left(pair, samples, max_new):
    verifier, _ = pair
    inputs, _ = case(pair, samples, 0)
    table, _ = oracle_table(verifier, inputs)
    ref = reference(pair, samples, 0, max_new)
    assert len(ref.tokens) == max_new
    for gamma in (1, 4, 50):
        head = HeadDrafter(OracleHead(table), verifier)
        gen = run(pair, samples, 0, max_new, source=head, gamma=gamma, propose="L4", k_max=50,
                  adapters={"L4": OraclePrefill(table)})
        assert gen.tokens == ref.tokens
        assert 1 + sum(r.accepted + 1 for r in gen.rounds) == max_new  # never a token past the limit


def first_new_token_at(tokens: list[int], at_least: int = 2, at_most: int = 4) -> int | None:
    """The latest position in [at_least, at_most] holding a token that has not come before (the random pair repeats
    tokens, so only a first occurrence can be made the EOS there)."""
    fresh = [i for i, t in enumerate(tokens[: at_most + 1]) if tokens.index(t) == i and i >= at_least]
    return fresh[-1] if fresh else None


def test_eos_inside_accepted_drafts(pair, samples, monkeypatch):
    verifier, _ = pair
    cases = [(i, *oracle_table(verifier, case(pair, samples, i)[0])) for i in range(3)]
    usable = [(i, table, tokens, first) for i, table, tokens in cases if (first := first_new_token_at(tokens)) is not None]
    if not usable:
        pytest.skip(f"the random tiny verifier repeats one token from the start: {[c[2][:6] for c in cases]}")
    i, table, tokens, first = usable[0]
    eos = tokens[first]
    monkeypatch.setattr(type(verifier), "eos_token_id", property(lambda self: eos))
    ref = reference(pair, samples, i)
    assert ref.tokens == tokens[: first + 1]
    for gamma, k_max in ((8, 0), (3, 8)):
        gen = run(pair, samples, i, source=HeadDrafter(OracleHead(table), verifier), gamma=gamma, propose="L4",
                  k_max=k_max, adapters={"L4": OraclePrefill(table)})
        assert gen.tokens == ref.tokens
        assert any(r.accepted > 0 for r in gen.rounds) or gen.early_accepted > 1
        assert all(r.accepted == r.drafted for r in gen.rounds)  # no draft past the drafted EOS


def test_worker_process_gives_the_same_tokens(pair, samples, tiny_models):
    verifier, drafter = pair
    inputs, job = case(pair, samples, 0)
    table, _ = oracle_table(verifier, inputs)
    ref = reference(pair, samples, 0)
    adapters = {"L4": OraclePrefill(table)}
    with DrafterWorker(tiny_models["drafter"], adapters, verifier.lm_head.weight) as worker:
        for k_max in (0, 6):
            job.propose, job.k_max = "L4", k_max
            source = HeadDrafter(OracleHead(table, uses=("drafter",)), verifier)
            gen = speculative_generate(verifier, inputs, MAX_NEW, source, 3, worker, job, drafter)
            assert gen.tokens == ref.tokens
            assert gen.early_drafts <= k_max and gen.drafter_prefill_s > 0
        with pytest.raises(AttributeError):  # the verifier prefill fails; the job is collected anyway ...
            speculative_generate(verifier, None, MAX_NEW, source, 3, worker, job, drafter)
        assert not worker.conn.poll(1.0)  # no stale reply left in the pipe
        gen = speculative_generate(verifier, inputs, MAX_NEW, source, 3, worker, job, drafter)
        assert gen.tokens == ref.tokens  # ... so the next reply belongs to the next job
        assert worker.process.is_alive()
    assert not worker.process.is_alive()


def test_worker_reports_its_errors(pair, samples, tiny_models):
    verifier, _ = pair
    inputs, job = case(pair, samples, 0)
    with DrafterWorker(tiny_models["drafter"], {}, verifier.lm_head.weight) as worker:
        job.propose, job.k_max = "L9", 2
        worker.start(job)
        with pytest.raises(RuntimeError, match="prefill adapter 'L9' not loaded"):
            worker.finish()


CRASHING_MAIN = """
import os, sys, torch
sys.path[:0] = {paths!r}
from eventspec.decoding.concurrent import DrafterWorker
if __name__ == "__main__":
    worker = DrafterWorker({drafter!r}, {{}}, torch.zeros(8, 4))
    print(worker.pid, flush=True)
    if {hard}:
        os.kill(os.getpid(), 9)
    with worker:
        raise RuntimeError("main process fails")
"""


@pytest.mark.parametrize("hard", [False, True])
def test_worker_ends_when_main_process_fails(tiny_models, tmp_path, hard):
    script = tmp_path / "main.py"
    script.write_text(CRASHING_MAIN.format(paths=sys.path, drafter=str(tiny_models["drafter"]), hard=hard))
    res = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert res.returncode != 0
    pid = int(res.stdout.split()[0])
    deadline = time.time() + 20
    while time.time() < deadline and _alive(pid):
        time.sleep(0.2)
    assert not _alive(pid), f"drafter worker {pid} outlived its main process"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def test_lossless_rule_names_the_sample_and_tolerates_only_ties():
    base = Generated([3, 4, 5], 0.0, 0.0, margins=[0.5, 1e-7, 0.3])
    assert check_lossless("s1", base, [3, 4, 5], torch.float32) is False
    assert check_lossless("s1", base, [3, 9, 2], torch.float32) is True  # first difference at a tie
    with pytest.raises(LosslessError, match="sample 7 q 2.*token 0"):
        check_lossless("sample 7 q 2", base, [4, 4, 5], torch.float32)
    with pytest.raises(LosslessError, match="s1.*lengths"):
        check_lossless("s1", base, [3, 4], torch.float32)
    wide = Generated([3, 4], 0.0, 0.0, margins=[0.5, 1e-3])
    assert check_lossless("s", wide, [3, 8], torch.bfloat16) is True
    with pytest.raises(LosslessError):
        check_lossless("s", wide, [3, 8], torch.float32)


def bench_config(tiny_world, tiny_models, tmp_path, **bench):
    from eventspec import config as config_mod

    cfg, _ = tiny_world
    cfg = dict(cfg)
    cfg["results"] = str(tmp_path)
    cfg["models"] = {"verifier": {"path": str(tiny_models["verifier"])}, "drafter": {"path": str(tiny_models["drafter"])}}
    cfg["benchmark"] = {"max_samples": 3, "max_new_tokens": 8, "warmup": 1, "repeats": 2} | bench
    return config_mod.validate(cfg)


def test_benchmark_writes_a_valid_summary(tiny_world, tiny_models, tmp_path):
    import json

    import jsonschema

    from eventspec.decoding.benchmark import run_benchmark

    cfg = bench_config(tiny_world, tiny_models, tmp_path)
    names = ["vl_baseline", "hf_generate", "prompt_lookup", "token_sd", "oracle"]
    summary = run_benchmark(cfg, tiny_world[1]["test"][0], tmp_path / "bench", names)
    schema = json.loads((Path(__file__).resolve().parents[1] / "xsd/bench_summary.schema.json").read_text())
    jsonschema.validate(json.loads((tmp_path / "bench/summary.json").read_text()), schema)
    rows = {n: [json.loads(x) for x in (tmp_path / f"bench/{n}.jsonl").read_text().splitlines()] for n in names}
    assert all(len(r) == 3 for r in rows.values())
    for n in names:
        assert [r["tokens"] for r in rows[n]] == [r["tokens"] for r in rows["vl_baseline"]]
    s = summary["configs"]
    assert s["vl_baseline"]["speedup"] == 1.0 and s["vl_baseline"]["tau"] == 1.0
    assert s["oracle"]["acceptance_rate"] == 1.0 and s["oracle"]["tau"] > 1.0
    rounds = [a + 1 for r in rows["oracle"] for d, a, _ in r["rounds"] if d]
    assert s["oracle"]["tau_round"] == pytest.approx(sum(rounds) / len(rounds)) and s["vl_baseline"]["tau_round"] is None
    for c in ("vl_baseline", "prompt_lookup", "token_sd", "oracle"):
        assert s[c]["efficiency"] == pytest.approx(s[c]["speedup"] / s[c]["ideal_speedup"])
    assert s["hf_generate"]["tau"] is None and s["hf_generate"]["ideal_speedup"] is None
    assert "| oracle |" in (tmp_path / "bench/summary.md").read_text()


def test_clip_frames_spaces_or_repeats_the_stored_frames():
    from eventspec.decoding.benchmark import clip_frames

    clip = np.arange(8)[None, :, None]  # [B=1, F=8, 1]
    assert clip_frames(clip, 4)[0, :, 0].tolist() == [0, 2, 4, 6]
    assert clip_frames(clip, 8)[0, :, 0].tolist() == list(range(8))
    assert clip_frames(clip, 16)[0, :, 0].tolist() == [i // 2 for i in range(16)]


def test_frames_sweep_runs_each_frame_count_and_writes_a_valid_summary(tiny_world, tiny_models, tmp_path):
    import json

    import jsonschema

    from eventspec.decoding.benchmark import run_frames_sweep

    cfg = bench_config(tiny_world, tiny_models, tmp_path, frames_sweep={
        "frames": [2, 6], "configs": ["vl_baseline", "oracle"], "max_samples": 2})
    summary = run_frames_sweep(cfg, tiny_world[1]["test"][0], tmp_path / "frames")
    schema = json.loads((Path(__file__).resolve().parents[1] / "xsd/bench_frames.schema.json").read_text())
    jsonschema.validate(json.loads((tmp_path / "frames/frames_summary.json").read_text()), schema)
    assert summary["frames"] == [2, 6] and list(summary["configs"]) == ["vl_baseline", "oracle"]
    points = [json.loads((tmp_path / f"frames/frames_{n}/summary.json").read_text()) for n in (2, 6)]
    assert [p["settings"]["frames"] for p in points] == [2, 6]
    assert [p["settings"]["pairs"] for p in points] == [2, 2]
    assert summary["configs"]["oracle"]["speedup"] == [p["configs"]["oracle"]["speedup"] for p in points]
    assert "| oracle |" in (tmp_path / "frames/frames_summary.md").read_text()


def test_ideal_time_counts_components_and_frees_drafts_made_during_the_prefill():
    from eventspec.decoding.benchmark import component_costs, ideal_time

    recs = [{"rounds": [[3, 3, True], [4, 2, False], [4, 4, False]], "verify_s": [2.0, 3.0, 5.0],
             "draft_s": [9.0, 4.0, 12.0], "prefill_s": 10.0, "verifier_forwards": 4}]
    costs = component_costs(recs)
    assert costs["verify_s"] == {4: 2.0, 5: 4.0} and costs["draft_s"] == 2.0
    assert ideal_time(recs[0], costs) == 10.0 + 2.0 + 2 * (4.0 + 4 * 2.0)


def test_benchmark_fails_naming_the_sample_on_a_token_difference(tiny_world, tiny_models, tmp_path, monkeypatch):
    from eventspec.decoding import benchmark

    real = benchmark.hf_generate

    def wrong(*args, **kw):
        gen = real(*args, **kw)
        gen.tokens = [t + 1 for t in gen.tokens]
        return gen

    monkeypatch.setattr(benchmark, "hf_generate", wrong)
    cfg = bench_config(tiny_world, tiny_models, tmp_path, warmup=0)
    with pytest.raises(LosslessError, match="config hf_generate, sample 0 question 0"):
        benchmark.run_benchmark(cfg, tiny_world[1]["test"][0], tmp_path / "bench", ["vl_baseline", "hf_generate"])


@pytest.fixture(scope="module")
def real_pair(real_shaped_models):
    from eventspec.extract import load_pair

    return load_pair({name: {"path": str(path), "dtype": "float32", "quant": "none", "device": "cpu"}
                      for name, path in real_shaped_models.items()})


@pytest.mark.parametrize("name", ["token_sd", "L1+VL", "L5F_adaptive"])
def test_lossless_on_the_real_shaped_pair(real_pair, samples, name):
    """Two tokenizers, EventGPT's -200 placeholder, a 32064-row verifier beside a 32000-row drafter."""
    verifier, drafter = real_pair
    table, _ = oracle_table(verifier, case(real_pair, samples, 0)[0])
    kwargs = _sources(real_pair, table)[name]
    assert run(real_pair, samples, 0, **kwargs).tokens == reference(real_pair, samples, 0).tokens


@pytest.mark.parametrize("compile", [False, True])
def test_static_and_compiled_steps_on_the_real_shaped_pair(real_pair, samples, compile):
    """Video-LLaVA's layout (text vocab 32064, <video> placeholders) on a reused StaticCache, eager and compiled,
    with a decode head drafting beside the drafter (L5F-style, which also reads the drafter's states)."""
    verifier, drafter = real_pair
    step = StaticStep(verifier, compile=compile)
    for i in range(2):
        inputs, _ = case(real_pair, samples, i)
        ref = reference(real_pair, samples, i)
        assert baseline_generate(verifier, inputs, MAX_NEW, step).tokens == ref.tokens
        head = HeadDrafter(RandomHead({"drafter", "verifier"}, False, drafter.hidden_size, verifier.hidden_size),
                           verifier, compile=compile)
        assert run(real_pair, samples, i, source=head, gamma=4, step=step).tokens == ref.tokens


def test_verifier_only_ids_reach_the_drafter_as_its_unk(real_pair, samples):
    verifier, drafter = real_pair
    _, job = case(real_pair, samples, 0)
    inputs = drafter.prepare(job.event_images, [job.question])
    video = verifier.video_token_id
    assert video >= drafter.embed.num_embeddings
    a, b = tr.prefill(drafter, inputs), tr.prefill(drafter, inputs)
    h_a, _ = tr.forward(a, [29871, video])
    h_b, _ = tr.forward(b, [29871, drafter.unk_token_id])
    assert a.read == [29871, video]
    torch.testing.assert_close(h_a, h_b)
