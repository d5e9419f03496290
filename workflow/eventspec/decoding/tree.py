"""EAGLE-2 dynamic draft trees: grown by a cached decode head, verified in one verifier forward.

Growing (``TreeDrafter.draft``): the head reads the positions the verifier
confirmed (``HeadDrafter.catch_up``); its top-k tokens are the first depth.
Each further depth feeds the k most probable nodes of the last depth (by
cumulative log-probability of the head through the verifier's LM head) to the
head at once, each over its own ancestors (a tree mask on the head's cache),
and takes each one's top-k children. All nodes grown are then reranked by
cumulative log-probability to the node budget (a node's score never exceeds
its parent's, so the best nodes are a tree; a child tied with a dropped parent
is dropped); nodes below a drafted EOS never compete. The kept nodes go depth first, the best child first,
so the most probable path is nodes 0, 1, ... One compiled call grows a whole tree.

Verifying (``verify_tree``): one forward of the pending token and the nodes
over the verifier's static cache, each row seeing the prompt, the answer and
its own ancestors (a 4-D attention mask; transformers uses a 4-D mask as given),
each at its depth's position. The accepted path is the longest root-to-leaf
path whose every node is the verifier's argmax after its parent; the bonus is
the argmax after the path's last node. Then the path's KV rows are copied in
place into the slots right after the pending token and the cache length is
reset to the end of the path (EAGLE's ``update_inference_inputs`` does the same;
this is written from the algorithm), so the cache is that of the accepted text.
Widths are padded to the node budget: a compiled verifier forward sees one shape.

A chain is a tree of one child per node; it stays the engine's list of drafts.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch

from .drafting import HeadDrafter
from .static_step import StaticStep
from .track import Track


@dataclass
class DraftTree:
    """Nodes, each after its parent: ``tokens[i]``'s parent is node ``parents[i]`` (-1: the pending token)."""

    tokens: list[int]
    parents: list[int]
    width: int  # verify width, the pending token included: the budget + 1 (padding nodes see only themselves)

    def __len__(self) -> int:
        return len(self.tokens)

    def verify(self, track: Track, pending: int) -> tuple[list[int], int]:
        """The engine's seam for a tree (``engine.verify_drafts``): ``verify_tree`` on this tree."""
        return verify_tree(track, pending, self)

    def depths(self) -> list[int]:
        """Each node's depth (the pending token's children are at 1)."""
        out: list[int] = []
        for p in self.parents:
            out.append(1 if p < 0 else out[p] + 1)
        return out

    def ancestors(self, i: int) -> list[int]:
        """Node ``i`` and its ancestors (pending token excluded), nearest first."""
        path = []
        while i >= 0:
            path.append(i)
            i = self.parents[i]
        return path


def rerank(tokens: list[int], parents: list[int], scores: list[float], budget: int, eos: int) -> tuple[list[int],
                                                                                                     list[int]]:
    """The ``budget`` best-scored nodes of a grown pool that form a tree (every kept node's parent kept, nothing
    below an EOS), as (tokens, parents re-indexed), depth first with the best child first: the head's most
    probable path is nodes 0, 1, ..., so when the verifier accepts it the cache needs no compaction."""
    def below_eos(i: int) -> bool:
        return any(tokens[a] == eos for a in _chain(parents, i)[1:])

    order = sorted((i for i in range(len(tokens)) if not below_eos(i)), key=lambda i: -scores[i])[:budget]
    chosen = set(order)

    def rooted(i: int) -> bool:
        return all(a in chosen for a in _chain(parents, i)[1:])

    kept = [i for i in order if rooted(i)]  # best first
    children: dict[int, list[int]] = {}
    for i in kept:
        children.setdefault(parents[i], []).append(i)
    ordered, stack = [], children.get(-1, [])[::-1]
    while stack:  # depth first, the best child first
        ordered.append(stack.pop())
        stack.extend(children.get(ordered[-1], [])[::-1])
    index = {i: r for r, i in enumerate(ordered)}
    return [tokens[i] for i in ordered], [index[parents[i]] if parents[i] >= 0 else -1 for i in ordered]


def _chain(parents: list[int], i: int) -> list[int]:
    path = [i]
    while parents[path[-1]] >= 0:
        path.append(parents[path[-1]])
    return path


class TreeDrafter:
    """EAGLE-2 draft trees from a cached decode head reading the verifier alone (B1, B1E): ``depth`` levels (at
    most the round's room), ``top_k`` children per expanded node and ``top_k`` nodes expanded per depth,
    reranked to ``budget`` nodes.

    A round's head work is one call of ``grow`` (compiled with ``compile``): the last catch-up chunk and every
    depth, so a round pays one compiled call's fixed cost (dynamo's guards, the wrapper), not one per depth. It
    always grows ``depth`` levels (one graph); levels past the round's room are dropped before the rerank."""

    def __init__(self, head: torch.nn.Module, verifier_backend, depth: int, top_k: int, budget: int,
                 compile: bool = False):
        if "drafter" in head.uses or not hasattr(head, "step"):
            raise ValueError(f"draft trees need a cached head reading no per-draft drafter state (B1, B1E), "
                             f"not {head.level}")
        self.depth, self.top_k, self.budget = depth, top_k, budget
        self.head = HeadDrafter(head, verifier_backend, compile=compile, spare_slots=depth * top_k)
        self.uses_drafter = self.head.uses_drafter
        self.width = budget + 1
        self.grow = torch.compile(self._grow, dynamic=False) if compile else self._grow
        # each pool node's depth (1: the pending token's children): top_k at depth 1, top_k² at each further one
        self.pool_depths = [1] * top_k + [d for d in range(2, depth + 1) for _ in range(top_k * top_k)]

    @property
    def drafter(self) -> Track | None:
        return self.head.drafter

    @drafter.setter
    def drafter(self, track: Track | None) -> None:
        self.head.drafter = track

    def _grow(self, verifier_rows, ids, catch_slots, last, n, condition, cache):
        """The head over the last catch-up chunk (row ``last`` is answer position ``n - 1``), then ``depth``
        levels of the tree: the pool's tokens, parents (-1: the pending token) and cumulative log-probabilities
        through the verifier's LM head, depth by depth. ``last`` and ``n`` are 0-d tensors (one graph for every
        round)."""
        hd, k = self.head, self.top_k
        predicted, logits = hd.after_known(verifier_rows, ids, catch_slots, last, condition, cache)
        top = logits.log_softmax(-1).topk(k)
        pool_tokens, pool_scores = [top.indices], [top.values]
        pool_parents = [torch.full((k,), -1, device=logits.device)]
        frontier = torch.arange(k, device=logits.device)  # pool indices of the last depth's best nodes
        states = predicted.expand(k, -1)  # their input: the parent's predicted verifier state
        visible = (hd.slot_ids < n).expand(k, -1)  # their ancestors' head slots (the answer so far)
        size = k
        for d in range(1, self.depth):
            slots = n + (d - 1) * k + torch.arange(k, device=n.device)
            visible = visible | (hd.slot_ids == slots[:, None])
            positions = (n + d - 1).expand(k)
            tokens, scores = torch.cat(pool_tokens)[frontier], torch.cat(pool_scores)[frontier]
            out, out_logits = hd._step(states, None, tokens, positions, slots, visible, condition, cache)
            children = out_logits.log_softmax(-1).topk(k)
            child_scores = (scores[:, None] + children.values).flatten()
            pool_tokens.append(children.indices.flatten())
            pool_scores.append(child_scores)
            pool_parents.append(frontier.repeat_interleave(k))
            best = child_scores.topk(k).indices
            frontier = size + best
            states, visible = out[best // k], visible[best // k]
            size += k * k
        return torch.cat(pool_tokens), torch.cat(pool_parents), torch.cat(pool_scores)

    @torch.no_grad()
    def draft(self, verifier: Track, answer: list[int], k: int) -> DraftTree:
        """A tree of at most ``budget`` nodes and ``min(depth, k)`` levels continuing ``answer``."""
        hd, n = self.head, len(answer)
        tokens, parents, scores = self.grow(*hd.round_inputs(verifier, answer), hd.condition, hd.cache)
        room = min(self.depth, k, hd.head.max_positions - n + 1)
        keep = sum(1 for d in self.pool_depths if d <= room)  # the pool is in depth order
        tokens, parents = rerank(tokens[:keep].tolist(), parents[:keep].tolist(), scores[:keep].tolist(),
                                 self.budget, hd.eos)
        return DraftTree(tokens, parents, self.width)


_compiled: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _tree_forward(step: StaticStep, ids, positions, slots, block, cache):
    mask = tree_mask(block, slots[0], step.cache_len, mask_dtype(step.backend))
    out = step.backend.model.model(input_ids=ids, position_ids=positions, cache_position=slots,
                                   attention_mask=mask, past_key_values=cache, use_cache=True)
    hidden = out.last_hidden_state[0]
    return hidden, step.backend.logits(hidden)


def tree_forward(step: StaticStep):
    """``step``'s forward over a tree (its ``tree_block`` expanded to the 4-D mask inside), compiled when
    ``step`` is (one per step)."""
    if step not in _compiled:
        compiled = step.forward is not step._forward
        fn = lambda ids, positions, slots, block, cache: _tree_forward(step, ids, positions, slots, block, cache)  # noqa: E731
        _compiled[step] = torch.compile(fn, mode="reduce-overhead" if step.graphed else None) if compiled else fn
    return _compiled[step]


def tree_block(tree: DraftTree) -> torch.Tensor:
    """[width, width] bool over the pending token and the nodes (padding last): who sees whom. The pending token
    and each node see the pending token and their own ancestors; padding rows only themselves."""
    rows = [[c == r for c in range(tree.width)] for r in range(tree.width)]
    for r in range(len(tree) + 1):
        rows[r][0] = True
    for i in range(len(tree)):
        for a in tree.ancestors(i):
            rows[i + 1][a + 1] = True
    return torch.tensor(rows)


def tree_mask(block: torch.Tensor, start: torch.Tensor, cache_len: int, dtype: torch.dtype) -> torch.Tensor:
    """The 4-D mask [1, 1, width, cache_len] of a tree whose pending token sits at ``start`` (a 0-d tensor): every
    row sees the cache before ``start``, then ``block``. Tensor ops only (it runs inside the compiled forward).
    ``dtype`` bool: True where a row may attend (SDPA's boolean mask); a float dtype: additive (0 or its min)."""
    width = block.shape[0]
    offset = torch.arange(cache_len, device=block.device) - start  # each cache column relative to the pending token
    inside = (offset >= 0) & (offset < width)
    allowed = (offset < 0) | (inside & block[:, offset.clamp(0, width - 1)])
    if dtype != torch.bool:
        allowed = torch.zeros(allowed.shape, dtype=dtype, device=block.device).masked_fill(
            ~allowed, torch.finfo(dtype).min)
    return allowed[None, None]


def mask_dtype(backend) -> torch.dtype:
    """A boolean tree mask for SDPA, the model's dtype otherwise (eager attention adds the mask to its scores)."""
    config = backend.model.config.get_text_config()
    return torch.bool if config._attn_implementation == "sdpa" else next(backend.model.parameters()).dtype


def accepted_path(tree: DraftTree, targets: list[int]) -> list[int]:
    """Nodes of the longest root-to-leaf path each equal to the verifier's argmax after its parent
    (``targets[0]``: after the pending token, ``targets[i + 1]``: after node i)."""
    children: dict[int, list[int]] = {}
    for i, p in enumerate(tree.parents):
        children.setdefault(p, []).append(i)
    path, node = [], -1
    while True:
        nxt = next((c for c in children.get(node, []) if tree.tokens[c] == targets[node + 1]), None)
        if nxt is None:
            return path
        path.append(nxt)
        node = nxt


def compact(step: StaticStep, start: int, path: list[int]) -> None:
    """Copy the KV rows of the accepted ``path`` (written at ``start + 1 + node``) into the slots right after the
    pending token at ``start``, in place, and reset the cache length to the end of the path."""
    if path and path != list(range(len(path))):
        device = step.cache.layers[0].keys.device
        source = torch.tensor([start + 1 + i for i in path], device=device)
        target = torch.arange(start + 1, start + 1 + len(path), device=device)
        for layer in step.cache.layers:
            layer.keys.index_copy_(2, target, layer.keys.index_select(2, source))
            layer.values.index_copy_(2, target, layer.values.index_select(2, source))
    step.crop(start + 1 + len(path))


@torch.no_grad()
def verify_tree(track: Track, pending: int, tree: DraftTree) -> tuple[list[int], int]:
    """One verifier forward over ``pending`` and ``tree``; keep the accepted path (cache compacted, the track
    reading ``pending`` and the path); return (the path's tokens, the bonus token)."""
    step = track.step
    if step is None:
        raise ValueError("draft trees are verified on the verifier's static cache (cache: static)")
    start = track.length
    if start + tree.width > step.cache_len:
        raise ValueError(f"draft tree of width {tree.width} at position {start} exceeds the static cache "
                         f"({step.cache_len} positions)")
    backend = track.backend
    pad = tree.width - 1 - len(tree)
    ids = backend.embeddable(torch.tensor([[pending, *tree.tokens, *[pending] * pad]], device=backend.device))
    depths = [0, *tree.depths(), *[0] * pad]
    positions = torch.tensor([[start + d for d in depths]], device=backend.device)
    block = tree_block(tree).to(backend.device)
    slots = torch.arange(start, start + tree.width, device=backend.device)
    hidden, logits = tree_forward(step)(ids, positions, slots, block, step.cache)
    if step.graphed:
        hidden, logits = hidden.clone(), logits.clone()
    path = accepted_path(tree, logits.argmax(-1).tolist())
    compact(step, start, path)
    rows = [0, *(i + 1 for i in path)]
    track.read.extend([pending, *(tree.tokens[i] for i in path)])
    track.hidden.extend(hidden[rows].unbind(0))
    track.logits.extend(logits[rows].unbind(0))
    return [tree.tokens[i] for i in path], int(logits[rows[-1]].argmax())
