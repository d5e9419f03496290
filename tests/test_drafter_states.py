"""The drafter's states in decode-phase drafting (``decoding.drafter_states``): the drafter worker keeps its track
and sends back only the states and tokens a round needs, drafting exactly as in-process; the drafter's own tokens
stay inside the shared vocabulary; the same paths on CUDA (one device, and two where present)."""

import pickle

import pytest
import torch
from decoding_fixtures import RandomHead
from test_decoding import MAX_NEW, case, oracle_table, pair, reference, samples  # noqa: F401 - fixtures

from eventspec.decoding.concurrent import DrafterWorker, InProcessDrafter, lm_head_on
from eventspec.decoding.drafter_states import TOKEN_BYTES
from eventspec.decoding.drafting import HeadDrafter, TokenDrafter, draftable_vocab, propose_own_token
from eventspec.decoding.timed import timed_speculative as speculative_generate
from eventspec.decoding.oracle import OracleHead
from eventspec.models.drafter import load_drafter
from eventspec.models.verifier import load_verifier

MESSAGE_OVERHEAD = 400
"""Pickled bytes of one message besides its token ids and states (class names, field names, framing)."""

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def recorded(source):
    """``source`` whose ``draft`` calls are recorded (the list returned)."""
    drafts, draft = [], source.draft

    def record(*args):
        out = draft(*args)
        drafts.append(out)
        return out

    source.draft = record
    return drafts


def sources(verifier, drafter, table) -> dict:
    """Decode-phase sources that read the drafter: token-level SD, an L5 oracle (long accepted rounds), an
    untrained L5F (rejections: the drafter is cropped and re-reads)."""
    dd, dv = drafter.hidden_size, verifier.hidden_size
    return {
        "token_sd": (lambda: TokenDrafter(), "token", 4),
        "L5_oracle": (lambda: HeadDrafter(OracleHead(table, uses=("drafter",)), verifier), None, 0),
        "L5F_random": (lambda: HeadDrafter(RandomHead({"drafter", "verifier"}, True, dd, dv), verifier), None, 0),
    }


class InTime:
    """A drafter worker whose reply is always there at the verifier's first poll (``ready`` waits for it): the
    verifier never waits for a late drafter (it decodes on without drafts), so only then do the worker's drafts
    not depend on which process ended its prefill first."""

    def __init__(self, worker: DrafterWorker):
        self.worker = worker

    def __getattr__(self, name):
        return getattr(self.worker, name)

    def ready(self) -> bool:
        return self.worker.conn.poll(None)


def generate(verifier, inputs, job, make, propose, k_max, runner):
    source = make()
    job.propose, job.k_max, job.vocab = propose, k_max, None
    drafts = recorded(source)
    gen = speculative_generate(verifier, inputs, MAX_NEW, source, 3, runner, job)
    return gen, drafts


def cache_bytes(track) -> int:
    return sum(layer.keys.nbytes + layer.values.nbytes for layer in track.cache.layers)


def compare_worker_with_in_process(verifier, drafter, drafter_path, samples_, device="cpu"):
    """Every source: the worker's drafts equal the in-process ones round by round, both lossless; what the worker
    moved is the job, token ids and the drafter's states, not its KV cache. Returns (name, bytes moved, cache)."""
    inputs, job = case((verifier, drafter), samples_, 0)
    table, tokens = oracle_table(verifier, inputs)
    ref = reference((verifier, drafter), samples_, 0)
    in_process = InProcessDrafter(drafter, {}, verifier.lm_head)
    width = drafter.hidden_size * next(drafter.model.parameters()).element_size()
    report = []
    with DrafterWorker(drafter_path, {}, verifier.lm_head.weight, device=device) as worker:
        for name, (make, propose, k_max) in sources(verifier, drafter, table).items():
            local, local_drafts = generate(verifier, inputs, job, make, propose, k_max, in_process)
            remote, remote_drafts = generate(verifier, inputs, job, make, propose, k_max, InTime(worker))
            assert remote_drafts == local_drafts and remote_drafts, name
            assert remote.tokens == local.tokens == ref.tokens, name
            assert local.bytes_between_processes == 0
            cache = cache_bytes(in_process.finish().states.track)  # the drafter's cache at the end of a job
            moved = remote.bytes_between_processes - len(pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL))
            messages = 2 + 2 * len(remote.rounds) * 4  # the job's reply; per round at most a sync and 3 reads
            read = len(remote.tokens) + sum(r.drafted for r in remote.rounds)  # positions the drafter can read
            states = 0 if name == "token_sd" else width * (1 + read)
            assert moved <= states + TOKEN_BYTES * (read + remote.early_drafts) + messages * MESSAGE_OVERHEAD, name
            assert moved < cache / 2, (name, moved, cache)  # the old path pickled the whole cache every pair
            if name != "token_sd":  # the prompt's last state, then per round at least one new answer token's
                assert moved >= width * (1 + len(remote.rounds)), name
            if device == "cpu":
                assert remote.bytes_host_device == local.bytes_host_device == 0
            else:
                assert 0 < remote.bytes_host_device < cache / 4, name
            report.append((name, remote.bytes_between_processes, cache))
        assert worker.process.is_alive()
    return report


def test_worker_drafts_equal_in_process_and_move_states_not_the_cache(pair, samples, tiny_models):  # noqa: F811
    verifier, drafter = pair
    report = compare_worker_with_in_process(verifier, drafter, tiny_models["drafter"], samples)
    print("bytes between processes per pair (name, moved, drafter cache):", report)


def test_worker_answers_only_after_a_job_that_kept_the_state(pair, samples, tiny_models):  # noqa: F811
    from eventspec.decoding.drafter_states import StatesRequest

    verifier, _ = pair
    with DrafterWorker(tiny_models["drafter"], {}, verifier.lm_head.weight) as worker:
        with pytest.raises(RuntimeError, match="before any job that keeps the drafter's state"):
            worker.request(StatesRequest(0, [1]))


def test_lm_head_copy_is_built_without_a_float32_matrix():
    weight = torch.randn(7, 5, dtype=torch.bfloat16)
    head = lm_head_on(weight, "cpu")
    assert head.weight.dtype == torch.bfloat16 and torch.equal(head.weight, weight)
    assert not head.weight.requires_grad


def test_ids_outside_the_shared_vocabulary_are_never_drafted(pair, samples, tiny_models):  # noqa: F811
    """The drafter's favourite ids lie at or above the shared vocabulary (as EventGPT's ``<ev_patch>`` = 32000,
    Video-LLaVA's ``<image>``): none is drafted, in-process or in the worker, early or per round."""
    verifier, drafter = pair
    inputs, job = case(pair, samples, 0)
    track = InProcessDrafter(drafter, {}, verifier.lm_head)
    job.propose, job.k_max = "token", 4
    track.start(job)
    first = track.finish()
    top = first.drafts[0]
    first.states.sync([])  # back to the prompt, where the first draft came from
    logits = first.states.track.last_logits()
    assert int(logits.argmax()) == top > 0
    assert propose_own_token(first.states.track, top) == int(logits[:top].argmax())  # the first ``top`` ids only
    assert draftable_vocab(drafter, 10**6) == draftable_vocab(drafter) == drafter.tokenizer.vocab_size
    assert draftable_vocab(drafter, top) == top
    ref = reference(pair, samples, 0)
    with DrafterWorker(tiny_models["drafter"], {}, verifier.lm_head.weight) as worker:
        for runner in (InProcessDrafter(drafter, {}, verifier.lm_head), worker):
            job.vocab = top  # the verifier's base vocabulary ends below the drafter's favourite
            runner.start(job)
            early = runner.finish().drafts
            assert all(d < top for d in early) and (early or runner is worker)  # the worker stops at finish()
            source = TokenDrafter()
            drafts = recorded(source)
            gen = speculative_generate(verifier, inputs, MAX_NEW, source, 3, runner, job)
            assert gen.tokens == ref.tokens
            assert drafts and all(d < top for round_ in drafts for d in round_)


def cuda_pair(tiny_models, drafter_device):
    return load_verifier(tiny_models["verifier"], device="cuda:0"), load_drafter(tiny_models["drafter"],
                                                                                 device=drafter_device)


@needs_cuda
@pytest.mark.parametrize("drafter_device", ["cuda:0", "cuda:1"])
def test_worker_and_in_process_drafting_on_cuda(tiny_models, samples, drafter_device):  # noqa: F811
    """The benchmark's drafter paths on the GPU: verifier on cuda:0, drafter beside it or on a second device;
    only the drafter's new states cross the host (never its cache)."""
    if torch.cuda.device_count() < int(drafter_device[-1]) + 1:
        pytest.skip(f"needs {drafter_device}")
    verifier, drafter = cuda_pair(tiny_models, drafter_device)
    report = compare_worker_with_in_process(verifier, drafter, tiny_models["drafter"], samples, drafter_device)
    print(f"drafter on {drafter_device}: bytes between processes per pair (name, moved, drafter cache):", report)


DEVICES = [("cpu", "cpu"), ("cuda:0", "cuda:0"), ("cuda:0", "cuda:1")]


def skip_missing(*devices):
    for device in devices:
        if device.startswith("cuda") and torch.cuda.device_count() < int(device[-1]) + 1:
            pytest.skip(f"needs {device}")


@pytest.mark.parametrize("verifier_device, drafter_device, concurrent", [
    (*DEVICES[0], True),  # in-process on the CPU: test_decoding's benchmark tests
    *[(*devices, concurrent) for devices in DEVICES[1:] for concurrent in (True, False)],
], ids=["cpu-True", "cuda-True", "cuda-False", "cuda+cuda1-True", "cuda+cuda1-False"])
def test_benchmark_drafter_paths(tiny_world, tiny_models, tmp_path, verifier_device, drafter_device, concurrent):
    """The benchmark's drafter paths end to end (token-level SD and the oracle's prefill drafts; worker and
    in-process; CPU, one GPU, two GPUs): lossless (``run_benchmark`` raises otherwise), one drafter resident (none
    in the main process beside a worker), the bytes each pair moved counted."""
    if verifier_device != "cpu":
        if not torch.cuda.is_available():
            pytest.skip("needs a CUDA device")
        skip_missing(verifier_device, drafter_device)
    from test_decoding import bench_config

    from eventspec.decoding.benchmark import Runner, run_benchmark

    cfg = bench_config(tiny_world, tiny_models, tmp_path, concurrent=concurrent, warmup=1, repeats=1, max_samples=2)
    cfg["models"]["verifier"]["device"], cfg["models"]["drafter"]["device"] = verifier_device, drafter_device
    names = ["vl_baseline", "token_sd", "oracle"]
    runner = Runner(cfg, names)
    try:
        assert (runner.drafter is None) == concurrent
        assert isinstance(runner.worker, DrafterWorker) == concurrent
        frames, events = tiny_world_pair(tiny_world)
        question = "What objects are in the scene?"
        baseline = runner.run("vl_baseline", frames, events, question, 8, None)
        gen = runner.run("token_sd", frames, events, question, 8, baseline)
        assert gen.tokens == baseline.tokens
        assert (gen.bytes_between_processes > 0) == concurrent
        assert (gen.bytes_host_device > 0) == (drafter_device != "cpu")
    finally:
        runner.close()
    summary = run_benchmark(cfg, tiny_world[1]["test"][0], tmp_path / "bench", names)
    assert set(names) <= set(summary["configs"])


def tiny_world_pair(tiny_world):
    import numpy as np
    import zarr

    g = zarr.open_group(tiny_world[1]["test"][0], mode="r")
    return np.asarray(g["frames"][:1]), np.asarray(g["event_images"][:1])
