"""The adapter family, generic in the drafter and verifier dims (Dd -> Dv).

Prefill adapters (L1-L4) map the drafter's hidden state at a position to the
verifier's at the same position. Decode heads (L5, L5F, B1, B1E) predict the
verifier's hidden state of the NEXT position, EAGLE-style, from a causal
history. At 4096 -> 4096 with the seeds' hyperparameters the parameter counts
are the seeds': L1 2,113,537; L2 6,324,227; L3 16,797,698; L4 100,714,497 (the
seeds' Linear layers of L1-L3 carry no bias, L4's do: that is what their
counts say). A projection Dd -> Dv is added only where the dims differ.

Decode head inputs at position t (the engine's contract): ``verifier_hidden[t]``
is h_v[t]; ``token_embeds[t]`` is the verifier's input embedding of the token
h_v[t] produced; ``drafter_hidden[t]`` is the drafter's state after reading the
tokens <= t; ``drafter_prompt`` (B1E) is the drafter's state after its prompt,
one vector per pair. ``forward`` returns h_v[t+1] predictions; output t depends
only on inputs <= t. ``step`` is the same computation for new positions over the
head's own KV cache (``HeadCache``), the decoding engine's path.
"""

from __future__ import annotations

import torch
from torch import nn

from ..levels import DECODE_LEVELS, DEFAULT_HPARAMS, LEVELS, PREFILL_LEVELS  # noqa: F401 (re-exported)
from .errors import AdapterError


def causal_mask(length: int, device) -> torch.Tensor:
    """Additive-style boolean mask: True where position i may NOT attend to j (j > i)."""
    return torch.ones(length, length, dtype=torch.bool, device=device).triu(1)


def projection(d_in: int, d_out: int) -> nn.Module:
    """Dd -> Dv where the dims differ, identity (no parameters) where they agree."""
    return nn.Identity() if d_in == d_out else nn.Linear(d_in, d_out, bias=False)


class Bottleneck(nn.Module):
    """LayerNorm -> down -> GELU -> dropout -> up, added to the input with a learnable alpha."""

    def __init__(self, dim: int, bottleneck: int, dropout: float, alpha: float, inner_norm: bool = False):
        super().__init__()
        self.norm = nn.Identity() if inner_norm else nn.LayerNorm(dim)
        self.down = nn.Linear(dim, bottleneck, bias=False)
        self.inner = nn.LayerNorm(bottleneck) if inner_norm else nn.Identity()
        self.drop = nn.Dropout(dropout)
        self.up = nn.Linear(bottleneck, dim, bias=False)
        self.alpha = nn.Parameter(torch.tensor(float(alpha)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.alpha * self.up(self.drop(nn.functional.gelu(self.inner(self.down(self.norm(x))))))


class Block(nn.Module):
    """Pre-norm causal self-attention + FFN, both residual."""

    def __init__(self, dim: int, num_heads: int, ffn_dim: int, dropout: float):
        super().__init__()
        self.attn_norm = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.ffn_norm = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(ffn_dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.attn_norm(x)
        mask = causal_mask(x.shape[1], x.device)
        x = x + self.attn(h, h, h, attn_mask=mask, need_weights=False)[0]
        return x + self.ffn(self.ffn_norm(x))

    def step(self, x: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, slots: torch.Tensor,
             visible: torch.Tensor) -> torch.Tensor:
        """``forward`` for ``x`` [n, D] new positions over a KV cache: their keys and values are written into
        ``keys`` / ``values`` [heads, slots, D / heads] at ``slots`` [n], then each attends to the slots its
        ``visible`` row [n, slots] (bool) allows. Equal to ``forward`` over the whole history (tested)."""
        n, dim = x.shape
        heads = self.attn.num_heads
        h = self.attn_norm(x)
        q, k, v = nn.functional.linear(h, self.attn.in_proj_weight, self.attn.in_proj_bias).chunk(3, dim=-1)
        keys.index_copy_(1, slots, k.view(n, heads, -1).transpose(0, 1))
        values.index_copy_(1, slots, v.view(n, heads, -1).transpose(0, 1))
        a = nn.functional.scaled_dot_product_attention(q.view(n, heads, -1).transpose(0, 1), keys, values,
                                                       attn_mask=visible)
        x = x + self.attn.out_proj(a.transpose(0, 1).reshape(n, dim))
        return x + self.ffn(self.ffn_norm(x))


class HeadCache:
    """A decode head's own KV cache: per block, keys and values [heads, slots, head_dim], allocated once.

    Slot i holds the head position the caller wrote there (a chain writes position t at slot t; a draft tree
    writes its nodes after the known positions). Nothing tracks a length: each step says which slots it
    writes and which each new position sees, so cropping is the caller writing over the slots again."""

    def __init__(self, head: "EagleHead", slots: int):
        ref = head.positions.weight
        block = head.blocks[0].attn
        shape = (block.num_heads, slots, block.embed_dim // block.num_heads)
        self.slots = slots
        self.layers = [(torch.zeros(shape, dtype=ref.dtype, device=ref.device),
                        torch.zeros(shape, dtype=ref.dtype, device=ref.device)) for _ in head.blocks]


class PrefillAdapter(nn.Module):
    kind = "prefill"
    uses = frozenset({"drafter"})
    use_token_embedding = False


class BottleneckAdapter(PrefillAdapter):
    """L1: LN -> 256 bottleneck -> alpha residual -> LN (2,113,537 params at 4096)."""

    level = "L1"

    def __init__(self, drafter_dim, verifier_dim, bottleneck_dim, dropout, alpha):
        super().__init__()
        self.norm = nn.LayerNorm(drafter_dim)
        self.down = nn.Linear(drafter_dim, bottleneck_dim, bias=False)
        self.drop = nn.Dropout(dropout)
        self.up = nn.Linear(bottleneck_dim, verifier_dim, bias=False)
        self.skip = projection(drafter_dim, verifier_dim)
        self.alpha = nn.Parameter(torch.tensor(float(alpha)))
        self.out_norm = nn.LayerNorm(verifier_dim)

    def forward(self, drafter_hidden: torch.Tensor) -> torch.Tensor:
        up = self.up(self.drop(nn.functional.gelu(self.down(self.norm(drafter_hidden)))))
        return self.out_norm(self.skip(drafter_hidden) + self.alpha * up)


class StackedBottleneckAdapter(PrefillAdapter):
    """L2 (3 x 256 bottleneck blocks) and L3 (2 x 1024 wide blocks, input LN): then a final LN."""

    def __init__(self, level, drafter_dim, verifier_dim, bottleneck_dim, num_blocks, dropout, alpha):
        super().__init__()
        self.level = level
        wide = level == "L3"
        self.in_norm = nn.LayerNorm(drafter_dim) if wide else nn.Identity()
        self.skip = projection(drafter_dim, verifier_dim)
        self.blocks = nn.Sequential(
            *(Bottleneck(verifier_dim, bottleneck_dim, dropout, alpha, inner_norm=wide) for _ in range(num_blocks))
        )
        self.out_norm = nn.LayerNorm(verifier_dim)

    def forward(self, drafter_hidden: torch.Tensor) -> torch.Tensor:
        return self.out_norm(self.blocks(self.skip(self.in_norm(drafter_hidden))))


class AttentionAdapter(PrefillAdapter):
    """L4: causal self-attention + FFN, output LN + projection, alpha-blended with the input."""

    level = "L4"

    def __init__(self, drafter_dim, verifier_dim, num_heads, num_layers, ffn_dim, dropout, alpha):
        super().__init__()
        self.skip = projection(drafter_dim, verifier_dim)
        self.blocks = nn.Sequential(*(Block(verifier_dim, num_heads, ffn_dim, dropout) for _ in range(num_layers)))
        self.out_norm = nn.LayerNorm(verifier_dim)
        self.out = nn.Linear(verifier_dim, verifier_dim)
        self.alpha = nn.Parameter(torch.tensor(float(alpha)))

    def forward(self, drafter_hidden: torch.Tensor) -> torch.Tensor:
        x = self.skip(drafter_hidden)
        projected = self.out(self.out_norm(self.blocks(x)))
        return x + self.alpha * (projected - x)


class EagleHead(nn.Module):
    """L5 (drafter -> next verifier hidden) and B1 (verifier -> next verifier hidden).

    The input is first projected into the verifier's space (``align``; for L5
    trained to match the verifier's hidden state at the same text prefix,
    the seeds' alignment loss), optionally fused with the chosen token's
    embedding (EAGLE's fc over [feature, embedding]), given learned positions
    and passed through causal transformer blocks and a final LN.
    """

    kind = "decode"

    def __init__(self, level, input_dim, verifier_dim, num_heads, num_layers, ffn_dim, dropout, max_positions,
                 use_token_embedding=False):
        super().__init__()
        self.level = level
        self.source = "drafter" if level == "L5" else "verifier"
        self.uses = frozenset({self.source})
        self.use_token_embedding = bool(use_token_embedding)
        self.max_positions = max_positions
        self.in_norm = nn.LayerNorm(input_dim)
        self.align = nn.Linear(input_dim, verifier_dim)
        self.fuse = nn.Linear(2 * verifier_dim, verifier_dim) if use_token_embedding else None
        self.positions = nn.Embedding(max_positions, verifier_dim)
        self.blocks = nn.Sequential(*(Block(verifier_dim, num_heads, ffn_dim, dropout) for _ in range(num_layers)))
        self.out_norm = nn.LayerNorm(verifier_dim)

    def aligned(self, features: torch.Tensor) -> torch.Tensor:
        """The input in the verifier's space, position by position (the alignment loss's output)."""
        return self.align(self.in_norm(features))

    def fused(self, aligned: torch.Tensor, token_embeds: torch.Tensor | None) -> torch.Tensor:
        """The blocks' input before positions: the aligned features, fused with the token embeddings (EAGLE's fc)."""
        if self.fuse is None:
            return aligned
        if token_embeds is None:
            raise AdapterError(f"{self.level}: this head was trained with use_token_embedding; pass token_embeds")
        return self.fuse(torch.cat([aligned, token_embeds.to(aligned.dtype)], dim=-1))

    def predict(self, aligned: torch.Tensor, token_embeds: torch.Tensor | None) -> torch.Tensor:
        length = aligned.shape[1]
        if length > self.max_positions:
            raise AdapterError(f"{self.level}: {length} positions exceed hyperparams.max_positions={self.max_positions}")
        x = self.fused(aligned, token_embeds) + self.positions(torch.arange(length, device=aligned.device))
        return self.out_norm(self.blocks(x))

    def step(self, aligned: torch.Tensor, token_embeds: torch.Tensor | None, positions: torch.Tensor,
             slots: torch.Tensor, visible: torch.Tensor, cache: HeadCache) -> torch.Tensor:
        """``predict`` for ``aligned`` [n, D] new positions (head positions ``positions`` [n], written at cache
        ``slots`` [n], each seeing the slots of its ``visible`` row [n, cache slots]): their outputs [n, D]."""
        x = self.fused(aligned, token_embeds) + self.positions(positions)
        for block, (keys, values) in zip(self.blocks, cache.layers):
            x = block.step(x, keys, values, slots, visible)
        return self.out_norm(x)

    def primary(self, drafter_hidden, verifier_hidden) -> torch.Tensor:
        """The input this head reads: the drafter's (L5) or the verifier's (B1, and L5F's fused) hidden."""
        source = drafter_hidden if self.source == "drafter" else verifier_hidden
        if source is None:
            raise AdapterError(f"{self.level}: needs {self.source}_hidden")
        return source

    def step_input(self, drafter_hidden=None, verifier_hidden=None, condition=None) -> torch.Tensor:
        """Per position, what ``step`` reads: the aligned input [n, D] (plus ``condition``, a per-pair vector)."""
        aligned = self.aligned(self.primary(drafter_hidden, verifier_hidden))
        return aligned if condition is None else aligned + condition

    def forward(self, drafter_hidden=None, verifier_hidden=None, token_embeds=None) -> torch.Tensor:
        return self.predict(self.aligned(self.primary(drafter_hidden, verifier_hidden)), token_embeds)

    def forward_with_alignment(self, drafter_hidden=None, verifier_hidden=None, token_embeds=None):
        """(next-position prediction, same-prefix alignment) for training."""
        aligned = self.aligned(self.primary(drafter_hidden, verifier_hidden))
        return self.predict(aligned, token_embeds), aligned


class EventConditionedHead(EagleHead):
    """B1E: B1 (verifier -> next verifier hidden) conditioned on the event camera at B1's cost per draft.

    The drafter's state after its prompt (events + question: it has attended to every event token),
    ``drafter_prompt`` [B, Dd], is read once per pair, projected to a vector ``condition`` and added to every
    position's aligned input. Drafting never runs the drafter: per draft it costs what B1 costs (one add)."""

    def __init__(self, drafter_dim, verifier_dim, num_heads, num_layers, ffn_dim, dropout, max_positions,
                 use_token_embedding=False):
        super().__init__("B1E", verifier_dim, verifier_dim, num_heads, num_layers, ffn_dim, dropout, max_positions,
                         use_token_embedding)
        self.uses = frozenset({"verifier", "drafter_prompt"})
        self.event_norm = nn.LayerNorm(drafter_dim)
        self.event_proj = nn.Linear(drafter_dim, verifier_dim)

    def condition(self, drafter_prompt: torch.Tensor) -> torch.Tensor:
        """The per-pair vector [..., Dv] added to every position's aligned input."""
        return self.event_proj(self.event_norm(drafter_prompt))

    def forward(self, drafter_hidden=None, verifier_hidden=None, token_embeds=None, drafter_prompt=None):
        if drafter_prompt is None:
            raise AdapterError("B1E: needs drafter_prompt (the drafter's state after its prompt)")
        aligned = self.aligned(self.primary(drafter_hidden, verifier_hidden))
        return self.predict(aligned + self.condition(drafter_prompt)[:, None], token_embeds)


class FusedEagleHead(nn.Module):
    """L5F: a learned gate fuses the drafter's state with the verifier's previous hidden, then L5.

    fused = g * P_d(LN(h_d)) + (1 - g) * P_v(LN(h_v)), g = sigmoid(W [P_d; P_v]).
    """

    kind = "decode"
    level = "L5F"
    uses = frozenset({"drafter", "verifier"})

    def __init__(self, drafter_dim, verifier_dim, num_heads, num_layers, ffn_dim, dropout, max_positions,
                 use_token_embedding=False):
        super().__init__()
        self.use_token_embedding = bool(use_token_embedding)
        self.drafter_norm = nn.LayerNorm(drafter_dim)
        self.drafter_proj = nn.Linear(drafter_dim, verifier_dim)
        self.verifier_norm = nn.LayerNorm(verifier_dim)
        self.verifier_proj = nn.Linear(verifier_dim, verifier_dim)
        self.gate = nn.Linear(2 * verifier_dim, verifier_dim)
        self.head = EagleHead("L5F", verifier_dim, verifier_dim, num_heads, num_layers, ffn_dim, dropout,
                              max_positions, use_token_embedding)

    def gated(self, drafter_hidden, verifier_hidden) -> tuple[torch.Tensor, torch.Tensor]:
        """(the gated fusion, the drafter's projection)."""
        if drafter_hidden is None or verifier_hidden is None:
            raise AdapterError("L5F: needs both drafter_hidden and verifier_hidden")
        d = self.drafter_proj(self.drafter_norm(drafter_hidden))
        v = self.verifier_proj(self.verifier_norm(verifier_hidden))
        g = torch.sigmoid(self.gate(torch.cat([d, v], dim=-1)))
        return g * d + (1 - g) * v, d

    @property
    def positions(self) -> nn.Embedding:
        return self.head.positions

    @property
    def blocks(self) -> nn.Sequential:
        return self.head.blocks

    @property
    def max_positions(self) -> int:
        return self.head.max_positions

    def step_input(self, drafter_hidden=None, verifier_hidden=None, condition=None) -> torch.Tensor:
        return self.head.step_input(verifier_hidden=self.gated(drafter_hidden, verifier_hidden)[0])

    def step(self, *args) -> torch.Tensor:
        return self.head.step(*args)

    def forward_with_alignment(self, drafter_hidden=None, verifier_hidden=None, token_embeds=None):
        fused, d = self.gated(drafter_hidden, verifier_hidden)
        return self.head(verifier_hidden=fused, token_embeds=token_embeds), d

    def forward(self, drafter_hidden=None, verifier_hidden=None, token_embeds=None) -> torch.Tensor:
        return self.forward_with_alignment(drafter_hidden, verifier_hidden, token_embeds)[0]


def resolve_hparams(level: str, hparams: dict) -> dict:
    """The level's defaults overridden by ``hparams`` (only keys the level knows)."""
    if level not in LEVELS:
        raise AdapterError(f"unknown adapter level '{level}' (known: {', '.join(LEVELS)})")
    known = DEFAULT_HPARAMS[level]
    extra = set(hparams) - set(known) - {"use_token_embedding"}
    if extra:
        raise AdapterError(f"level {level}: unknown hyperparams {sorted(extra)} (known: {sorted(known)})")
    return known | hparams


def build_adapter(level: str, drafter_dim: int, verifier_dim: int, **hparams) -> nn.Module:
    """An untrained adapter of ``level``; ``hparams`` override the level's defaults."""
    hp = resolve_hparams(level, {k: v for k, v in hparams.items() if v is not None})
    if level == "L1":
        return BottleneckAdapter(drafter_dim, verifier_dim, hp["bottleneck_dim"], hp["dropout"], hp["alpha"])
    if level in ("L2", "L3"):
        return StackedBottleneckAdapter(level, drafter_dim, verifier_dim, hp["bottleneck_dim"], hp["num_blocks"],
                                        hp["dropout"], hp["alpha"])
    attention = (hp["num_heads"], hp["num_layers"], hp["ffn_dim"], hp["dropout"])
    if level == "L4":
        return AttentionAdapter(drafter_dim, verifier_dim, *attention, hp["alpha"])
    token = hp.get("use_token_embedding", False)
    if level == "L5F":
        return FusedEagleHead(drafter_dim, verifier_dim, *attention, hp["max_positions"], token)
    if level == "B1E":
        return EventConditionedHead(drafter_dim, verifier_dim, *attention, hp["max_positions"], token)
    input_dim = verifier_dim if level == "B1" else drafter_dim
    return EagleHead(level, input_dim, verifier_dim, *attention, hp["max_positions"], token)


def count_parameters(level: str, drafter_dim: int, verifier_dim: int, **hparams) -> int:
    """Parameters of an adapter, counted on the meta device (nothing is allocated)."""
    with torch.device("meta"):
        model = build_adapter(level, drafter_dim, verifier_dim, **hparams)
    return sum(p.numel() for p in model.parameters())
