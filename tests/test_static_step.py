"""The verifier's static-cache step: one allocation, width buckets compiled once, threads that are what they say,
and the transformers behaviour its crop relies on."""

import re
from unittest import mock

import numpy as np
import pytest
import torch
import zarr
from torch._dynamo.utils import counters

from eventspec.decoding import track as tr
from eventspec.decoding.static_step import StaticStep, buckets
from eventspec.models.verifier import load_verifier


@pytest.fixture(scope="module")
def verifier_inputs(tiny_models, tiny_world):
    verifier = load_verifier(tiny_models["verifier"])
    g = zarr.open_group(tiny_world[1]["test"][0], mode="r")
    return verifier, verifier.prepare(np.asarray(g["frames"][:1]), ["What objects are in the scene?"])


def graphs() -> int:
    return counters["stats"]["unique_graphs"]


def test_buckets():
    assert buckets(1) == [1] and buckets(9) == [1, 2, 4, 8, 9] and buckets(8) == [1, 2, 4, 8]


def test_no_recompile_after_warming_every_bucket(verifier_inputs):
    """Every width 1-9 after ``warm``: no graph compiled (CPU inductor), outputs equal to the eager step's."""
    verifier, inputs = verifier_inputs
    torch._dynamo.reset()
    torch.set_num_threads(1)
    step, eager = StaticStep(verifier, compile=True, widest=9), StaticStep(verifier, widest=9)
    for s in (step, eager):
        s.allocate(512)
    track = tr.prefill(verifier, inputs, step)
    step.warm(track.length)
    before = graphs()
    reference = tr.prefill(verifier, inputs, eager)
    for k in range(1, 10):
        tokens = list(range(3, 3 + k))
        _, logits = tr.forward(track, tokens)
        _, expected = tr.forward(reference, tokens)
        torch.testing.assert_close(logits, expected, atol=1e-4, rtol=1e-4)
        tr.crop(track, 0), tr.crop(reference, 0)
    assert graphs() == before


def test_a_one_thread_call_runs_one_thread_kernels(verifier_inputs):
    """Inductor bakes the thread count into its CPU kernels; a step compiled at 2 threads and then called at 1
    must compile (and run) kernels of its own, with no ``#pragma omp parallel`` in them (dynamo's GLOBAL_STATE
    guard on the thread count does this in torch 2.13; sharing the 2-thread graph would compile nothing)."""
    verifier, inputs = verifier_inputs
    from torch._inductor.graph import GraphLowering

    torch._dynamo.reset()
    step = StaticStep(verifier, compile=True, widest=1)
    step.allocate(512)
    code: list[str] = []
    torch.set_num_threads(2)
    track = tr.prefill(verifier, inputs, step)
    with mock.patch.object(GraphLowering, "save_output_code", code.append):
        tr.forward(track, [3])
        assert code  # compiled at 2 threads
        code.clear()
        torch.set_num_threads(1)
        before = graphs()
        tr.crop(track, 0)
        tr.forward(track, [3])
    torch.set_num_threads(1)
    one = "\n".join(code)
    assert graphs() == before + 1 and one and not re.search(r"#pragma omp parallel", one)


def test_static_layer_writes_at_its_counter_and_ignores_cache_position(verifier_inputs):
    """``StaticStep.crop`` sets ``StaticLayer.cumulative_length``: pinned for transformers 5.23, where
    ``update`` writes at that counter whatever ``cache_position`` says."""
    verifier, inputs = verifier_inputs
    step = StaticStep(verifier)
    step.allocate(512)
    track = tr.prefill(verifier, inputs, step)
    at = track.length
    layer = step.cache.layers[0]
    assert int(layer.cumulative_length) == at
    step.crop(at - 3)
    keys = layer.keys.clone()
    ids = torch.tensor([[3]])
    step.forward(ids, torch.tensor([[at + 7]]), step.cache)  # cache_position says at + 7
    changed = (layer.keys != keys).any(-1).any(1)[0].nonzero().flatten().tolist()
    assert changed == [at - 3] and int(layer.cumulative_length) == at - 2
