"""Decode heads' own KV cache: the cached step equals the full re-run, and drafting on it drafts what the
whole-history head drafts (the same rounds, the same tokens)."""

import pytest
import torch

from eventspec.adapters.architectures import HeadCache, build_adapter
from eventspec.decoding.drafting import HeadDrafter
from test_decoding import pair, reference, run, samples  # noqa: F401 (fixtures)

SMALL = dict(num_heads=4, num_layers=2, ffn_dim=48, dropout=0.0, max_positions=32)


def head_inputs(level, head, dd, dv, length, seed=0):
    g = torch.Generator().manual_seed(seed)
    full = {"verifier_hidden": torch.randn(1, length, dv, generator=g),
            "token_embeds": torch.randn(1, length, dv, generator=g)}
    if level in ("L5", "L5F"):
        full["drafter_hidden"] = torch.randn(1, length, dd, generator=g)
    if level == "L5":
        del full["verifier_hidden"]
    if level == "B1E":
        full["drafter_prompt"] = torch.randn(1, dd, generator=g)
    return full


@pytest.mark.parametrize("level", ["L5", "L5F", "B1", "B1E"])
def test_cached_step_equals_the_full_rerun(level):
    dd, dv, length = 24, 32, 11
    torch.manual_seed(3)
    head = build_adapter(level, dd, dv, use_token_embedding=True, **SMALL).eval()
    full = head_inputs(level, head, dd, dv, length)
    with torch.no_grad():
        expected = head(**full)[0]
        cache = HeadCache(head, 40)
        condition = head.condition(full["drafter_prompt"][0]) if level == "B1E" else None
        slot_ids = torch.arange(cache.slots)
        outputs, start = [], 0
        for width in (4, 1, 3, 1, 2):  # a first chunk, single drafts, a catch-up of several
            rows = slice(start, start + width)
            x = head.step_input(drafter_hidden=full.get("drafter_hidden", [None])[0][rows] if "drafter_hidden" in full
                                else None, verifier_hidden=full.get("verifier_hidden", [None])[0][rows]
                                if "verifier_hidden" in full else None, condition=condition)
            slots = slot_ids[rows]
            outputs.append(head.step(x, full["token_embeds"][0, rows], slots, slots, slot_ids <= slots[:, None],
                                     cache))
            start += width
        # a crop: rewrite the last two positions with the same inputs over the stale slots
        rows = slice(length - 2, length)
        x = head.step_input(drafter_hidden=full["drafter_hidden"][0][rows] if "drafter_hidden" in full else None,
                            verifier_hidden=full["verifier_hidden"][0][rows] if "verifier_hidden" in full else None,
                            condition=condition)
        slots = slot_ids[rows]
        rewritten = head.step(x, full["token_embeds"][0, rows], slots, slots, slot_ids <= slots[:, None], cache)
    torch.testing.assert_close(torch.cat(outputs), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(rewritten, expected[-2:], atol=1e-5, rtol=1e-5)


def whole_history(drafter: HeadDrafter) -> HeadDrafter:
    """The same head drafting by re-running it on the whole history per draft (the reference of the cache)."""
    drafter.cached, drafter.predict = False, drafter._predict
    return drafter


@pytest.mark.parametrize("compile, gamma", [(False, 0), (True, 0), (True, 4)])
@pytest.mark.parametrize("i", range(3))
def test_cached_drafting_drafts_what_the_whole_history_head_drafts(pair, samples, i, compile, gamma):  # noqa: F811
    """``gamma`` 4: every round drafts a chain of 4 in one call (the benchmark's one graph) and keeps what fits
    the round's room; the drafts are still the whole-history head's."""
    verifier, drafter = pair
    torch.manual_seed(7)
    head = build_adapter("B1", drafter.hidden_size, verifier.hidden_size, use_token_embedding=True,
                         **SMALL).eval()
    sources = [recording(HeadDrafter(head, verifier, compile=compile, gamma=gamma)),
               recording(whole_history(HeadDrafter(head, verifier)))]
    cached, rerun = (run(pair, samples, i, source=s, gamma=4) for s in sources)
    assert cached.tokens == rerun.tokens == reference(pair, samples, i).tokens
    assert sources[0].drafted == sources[1].drafted and len(sources[0].drafted) >= 2


def recording(source: HeadDrafter) -> HeadDrafter:
    """``source`` keeping every round's drafts in ``source.drafted``."""
    draft, source.drafted = source.draft, []

    def keep(*args):
        source.drafted.append(draft(*args))
        return source.drafted[-1]

    source.draft = keep
    return source


def test_event_conditioned_head_reads_the_drafter_once_per_pair(pair, samples):  # noqa: F811
    verifier, drafter = pair
    head = build_adapter("B1E", drafter.hidden_size, verifier.hidden_size, use_token_embedding=True, **SMALL).eval()
    source = recording(HeadDrafter(head, verifier))
    for i in range(2):
        gen = run(pair, samples, i, source=source, gamma=3)
        assert gen.tokens == reference(pair, samples, i).tokens
        assert source.drafter_reads == i + 1  # once per pair, however many rounds
        assert source.drafter.track.read == []  # the drafter never ran a decode step for a draft
    assert len(source.drafted) > 2


@pytest.mark.parametrize("compile", [False, True])
def test_a_round_after_more_than_one_catch_up_chunk_drafts_what_the_whole_history_head_drafts(pair, samples,  # noqa: F811
                                                                                             compile):
    """A first round after 11 confirmed tokens (more than ``CATCH_UP`` = 8): the earlier chunk runs eagerly, the
    last one in the round's compiled call; the drafts are the whole-history head's."""
    from eventspec.decoding import track as tr
    from eventspec.decoding.drafting import CATCH_UP
    from test_decoding import case

    verifier, drafter = pair
    answer = reference(pair, samples, 1).tokens[:11]
    assert len(answer) > CATCH_UP
    torch.manual_seed(7)
    head = build_adapter("B1", drafter.hidden_size, verifier.hidden_size, use_token_embedding=True, **SMALL).eval()
    track = tr.prefill(verifier, case(pair, samples, 1)[0])
    tr.forward(track, answer[:-1])  # the verifier has read all of the answer but its last token
    cached = HeadDrafter(head, verifier, compile=compile, gamma=4).draft(track, answer, 4)
    rerun = whole_history(HeadDrafter(head, verifier)).draft(track, answer, 4)
    assert cached == rerun and len(cached) >= 1
