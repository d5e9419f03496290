"""EAGLE-2 draft trees: lossless against greedy decoding whatever the tree holds, the accepted path found
wherever it branches, and the static cache after compaction equal to a fresh prefill of the accepted text."""

import pytest
import torch

from eventspec.adapters.architectures import build_adapter
from eventspec.decoding import track as tr
from eventspec.decoding.static_step import StaticStep
from eventspec.decoding.tree import DraftTree, TreeDrafter, rerank, tree_block, tree_mask, verify_tree
from test_decoding import (  # noqa: F401 (fixtures)
    MAX_NEW, case, first_new_token_at, oracle_table, pair, reference, run, samples,
)
from test_head_cache import SMALL

BUDGET = 12


class ScriptedTrees:
    """Trees built around the verifier's known answer: at every depth a wrong first branch, then the right token
    (``right_depth`` levels deep at most: past it only wrong tokens), so the accepted path is never the first
    branch; ``right_depth`` 0: every node wrong."""

    uses_drafter = False
    width = BUDGET + 1

    def __init__(self, answer: list[int], vocab: int, right_depth: int):
        self.answer, self.vocab, self.right_depth, self.trees = answer, vocab, right_depth, []

    def wrong(self, token: int, shift: int = 1) -> int:
        return (token + shift) % self.vocab

    def draft(self, verifier, answer: list[int], k: int) -> DraftTree:
        tokens, parents, parent = [], [], -1
        for d in range(k):
            right = self.answer[len(answer) + d] if len(answer) + d < len(self.answer) else 0
            tokens.append(self.wrong(right, 1))  # a wrong first child, with a child of its own
            parents.append(parent)
            tokens.append(right)
            parents.append(len(tokens) - 2)  # (below the wrong one: never reached)
            tokens.append(right if d < self.right_depth else self.wrong(right, 2))
            parents.append(parent)
            parent = len(tokens) - 1
            if len(tokens) + 3 > BUDGET:
                break
        self.trees.append(DraftTree(tokens, parents, self.width))
        return self.trees[-1]


@pytest.fixture(scope="module")
def tree_steps(pair):
    return {"static": StaticStep(pair[0]), "compiled": StaticStep(pair[0], compile=True)}


@pytest.mark.parametrize("kind", ["static", "compiled"])
@pytest.mark.parametrize("right_depth", [0, 1, 3, 50])
@pytest.mark.parametrize("i", range(3))
def test_scripted_trees_give_the_greedy_tokens(pair, samples, tree_steps, kind, right_depth, i):
    verifier, _ = pair
    ref = reference(pair, samples, i)
    source = ScriptedTrees(ref.tokens, verifier.embed.num_embeddings, right_depth)
    gen = run(pair, samples, i, source=source, gamma=4, step=tree_steps[kind])
    assert gen.tokens == ref.tokens
    accepted = [r.accepted for r in gen.rounds]
    if right_depth == 0:
        assert set(accepted) == {0}  # every path rejected: one token per round
    else:  # the accepted path is the second branch, as deep as the script put right tokens
        assert max(accepted) == min(right_depth, 4) and sum(accepted) > 0
        assert all(r.drafted == len(t) for r, t in zip(gen.rounds, source.trees))


@pytest.mark.parametrize("max_new", [1, 2, 3, 5])
def test_trees_stop_at_max_new_tokens(pair, samples, tree_steps, max_new):
    verifier, _ = pair
    ref = reference(pair, samples, 0, max_new)
    source = ScriptedTrees(ref.tokens + [0] * 8, verifier.embed.num_embeddings, 50)
    gen = run(pair, samples, 0, max_new, source=source, gamma=6, step=tree_steps["static"])
    assert gen.tokens == ref.tokens and len(gen.tokens) == max_new


def test_eos_inside_the_tree(pair, samples, tree_steps, monkeypatch):
    verifier, _ = pair
    cases = [(i, *oracle_table(verifier, case(pair, samples, i)[0])) for i in range(3)]
    usable = [(i, tokens, first) for i, _, tokens in cases if (first := first_new_token_at(tokens)) is not None]
    # a skip here would hide that the test no longer checks anything: fail, as test_eos_inside_accepted_drafts does
    assert usable, f"the random tiny verifier repeats one token from the start: {[c[2][:6] for c in cases]}"
    i, tokens, first = usable[0]
    monkeypatch.setattr(type(verifier), "eos_token_id", property(lambda self: tokens[first]))
    ref = reference(pair, samples, i)
    assert ref.tokens == tokens[: first + 1]
    source = ScriptedTrees(tokens + [0] * 8, verifier.embed.num_embeddings, 50)  # the tree runs past the EOS
    gen = run(pair, samples, i, source=source, gamma=6, step=tree_steps["static"])
    assert gen.tokens == ref.tokens and gen.rounds[0].accepted >= 1


def test_cache_after_compaction_equals_a_fresh_prefill_of_the_accepted_text(pair, samples):
    verifier, _ = pair
    inputs, _ = case(pair, samples, 1)
    ref = reference(pair, samples, 1)
    step = StaticStep(verifier)
    a = tr.prefill(verifier, inputs, step, room=MAX_NEW + BUDGET + 1)
    source = ScriptedTrees(ref.tokens, verifier.embed.num_embeddings, 3)
    path, bonus = verify_tree(a, ref.tokens[0], source.draft(a, ref.tokens[:1], 4))
    assert path == ref.tokens[1:4] and bonus == ref.tokens[4]
    assert a.read == ref.tokens[:4] and int(step.cache.get_seq_length()) == a.length
    fresh = StaticStep(verifier)
    b = tr.prefill(verifier, inputs, fresh, room=MAX_NEW)
    tr.forward(b, ref.tokens[:4])
    for la, lb in zip(step.cache.layers, fresh.cache.layers):
        torch.testing.assert_close(la.keys[:, :, : a.length], lb.keys[:, :, : b.length], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(la.values[:, :, : a.length], lb.values[:, :, : b.length], atol=1e-5, rtol=1e-5)
    for x, y in zip(a.hidden, b.hidden):
        torch.testing.assert_close(x, y, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(tr.forward(a, [bonus])[1], tr.forward(b, [bonus])[1], atol=1e-4, rtol=1e-5)


def test_rerank_keeps_a_tree_within_the_budget():
    tokens = [10, 11, 12, 13, 14, 2, 16]
    parents = [-1, -1, 0, 0, 1, 0, 5]  # node 5 is EOS (2): its child 6 is dropped
    scores = [-0.1, -0.5, -0.3, -0.3, -0.6, -0.2, -0.2]  # node 3 ties node 2; node 4's parent is dropped at 4
    kept_tokens, kept_parents = rerank(tokens, parents, scores, 4, eos=2)
    assert kept_tokens == [10, 2, 12, 13]
    assert kept_parents == [-1, 0, 0, 0]


@pytest.mark.parametrize("level", ["B1", "B1E"])
@pytest.mark.parametrize("compile", [False, True])
def test_head_grown_trees_are_lossless(pair, samples, tree_steps, level, compile):
    verifier, drafter = pair
    torch.manual_seed(11)
    head = build_adapter(level, drafter.hidden_size, verifier.hidden_size, use_token_embedding=True, **SMALL).eval()
    for i in range(3):
        source = TreeDrafter(head, verifier, depth=4, top_k=3, budget=BUDGET, compile=compile)
        gen = run(pair, samples, i, source=source, gamma=4, step=tree_steps["compiled" if compile else "static"])
        assert gen.tokens == reference(pair, samples, i).tokens
        assert all(0 < r.drafted <= BUDGET for r in gen.rounds if not r.from_prefill and r.drafted)


def test_benchmark_runs_tree_configurations_with_and_without_prefill_hiding(tiny_world, tiny_models, tmp_path):
    from eventspec.decoding.benchmark import run_benchmark
    from test_decoding import bench_config, write_random_adapter

    hidden = tiny_world[0]["toy_models"]["llm"]["hidden"]
    head = {"hyperparams": {"num_heads": 2, "ffn_dim": 32, "max_positions": 64}, "use_token_embedding": True}
    for name, entry in {"L4": {"level": "L4", "hyperparams": {"num_heads": 2, "ffn_dim": 32}},
                        "B1_tok": {"level": "B1", "vlm_only": True, **head}, "B1E": {"level": "B1E", **head}}.items():
        write_random_adapter(tmp_path, name, entry, hidden, hidden)
    tree = {"depth": 3, "top_k": 2, "budget": 5}
    static = {"kind": "speculative", "cache": "static", "tree": tree}  # compiled trees: test_head_grown_trees_...
    configs = {"vl_baseline": {"kind": "baseline"}, "vl_baseline_static": {"kind": "baseline", "cache": "static"},
               "B1_tok_tree": static | {"decode_adapter": "B1_tok"}, "B1E_tree": static | {"decode_adapter": "B1E"},
               "L4+B1E_tree": static | {"decode_adapter": "B1E", "prefill_adapter": "L4"}}
    cfg = bench_config(tiny_world, tiny_models, tmp_path, configs=configs, concurrent=False, warmup=1, repeats=1,
                       max_samples=2)
    summary = run_benchmark(cfg, tiny_world[1]["test"][0], tmp_path / "bench", list(configs))
    s = summary["configs"]
    assert all(s[n]["lossless"] for n in configs)  # run_benchmark raises on any non-tie token difference too
    assert [s[n]["role"] for n in configs] == ["peer", "peer", "peer", "method", "method"]
    static_tables = [ref["verify_by_width"] for key, ref in summary["component_costs_s"]["baseline_by_path"].items()
                     if key.startswith("static/")]
    assert static_tables and set(static_tables[0]) >= {"6"}  # the tree's padded width (budget + 1) is in the table
    assert s["L4+B1E_tree"]["early_drafts_mean"] > 0 and s["B1E_tree"]["early_drafts_mean"] == 0


class Recorded:
    """A draft source that keeps every tree its source drafted."""

    def __init__(self, source):
        self.source, self.trees = source, []
        self.uses_drafter, self.width = source.uses_drafter, source.width

    @property
    def drafter(self):
        return self.source.drafter

    @drafter.setter
    def drafter(self, states):
        self.source.drafter = states

    def draft(self, verifier, answer, k):
        self.trees.append(self.source.draft(verifier, answer, k))
        self.trees[-1].room = k
        return self.trees[-1]


def grown_trees(pair, samples, tree_steps, compile: bool, gamma: int) -> list[DraftTree]:
    verifier, drafter = pair
    torch.manual_seed(11)
    head = build_adapter("B1", drafter.hidden_size, verifier.hidden_size, use_token_embedding=True, **SMALL).eval()
    source = Recorded(TreeDrafter(head, verifier, depth=4, top_k=3, budget=BUDGET, compile=compile))
    gen = run(pair, samples, 1, source=source, gamma=gamma, step=tree_steps["static"])
    assert gen.tokens == reference(pair, samples, 1).tokens
    return source.trees


def test_one_compiled_call_grows_the_tree_the_eager_head_grows(pair, samples, tree_steps):
    """The compiled ``grow`` (catch-up and every depth in one graph) drafts exactly the eager head's trees."""
    eager, compiled = (grown_trees(pair, samples, tree_steps, c, 4) for c in (False, True))
    assert [(t.tokens, t.parents) for t in compiled] == [(t.tokens, t.parents) for t in eager]
    assert any(max(t.depths()) >= 2 for t in eager)  # trees, not one level


def test_trees_keep_to_the_rounds_room(pair, samples, tree_steps):
    """Every depth is grown (one graph), but no node lies deeper than the round's room."""
    trees = grown_trees(pair, samples, tree_steps, True, 2)
    assert trees and all(max(t.depths()) <= min(t.room, 2) for t in trees if len(t))
    assert any(max(t.depths()) == 2 for t in trees)


def test_rerank_puts_the_most_probable_path_first():
    # pool: two roots, the better one (0) with children 2 (best) and 3; node 2's child 4; node 1's child 5
    tokens, parents = [10, 11, 12, 13, 14, 15], [-1, -1, 0, 0, 2, 1]
    scores = [-0.1, -0.4, -0.3, -0.6, -0.5, -0.45]
    kept_tokens, kept_parents = rerank(tokens, parents, scores, 6, eos=2)
    assert kept_tokens == [10, 12, 14, 13, 11, 15]  # depth first, best child first: the path 10 12 14 is 0, 1, 2
    assert kept_parents == [-1, 0, 1, 0, -1, 4]


def test_tree_mask_by_hand():
    """Pending token at position 2 of a 7-slot cache; nodes a (root child), b (a's child), c (root child); one
    padding row: each row sees positions 0-1, the pending token and its own ancestors; padding only itself."""
    tree = DraftTree([7, 8, 9], [-1, 0, -1], width=5)
    mask = tree_mask(tree_block(tree), torch.tensor(2), 7, torch.bool)[0, 0].int().tolist()
    assert mask == [
        [1, 1, 1, 0, 0, 0, 0],  # pending
        [1, 1, 1, 1, 0, 0, 0],  # a
        [1, 1, 1, 1, 1, 0, 0],  # b sees a
        [1, 1, 1, 0, 0, 1, 0],  # c
        [1, 1, 0, 0, 0, 0, 1],  # padding
    ]
    additive = tree_mask(tree_block(tree), torch.tensor(2), 7, torch.float32)[0, 0]
    assert torch.equal(additive == 0, torch.tensor(mask, dtype=torch.bool))
    assert (additive[additive != 0] == torch.finfo(torch.float32).min).all()
