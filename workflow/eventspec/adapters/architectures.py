"""The adapter family, generic in the drafter and verifier dims (Dd -> Dv).

Prefill adapters (L1-L4) map the drafter's hidden state at a position to the
verifier's at the same position. Decode heads (L5, L5F, B1) predict the
verifier's hidden state of the NEXT position, EAGLE-style, from a causal
history. At 4096 -> 4096 with the seeds' hyperparameters the parameter counts
are the seeds': L1 2,113,537; L2 6,324,227; L3 16,797,698; L4 100,714,497 (the
seeds' Linear layers of L1-L3 carry no bias, L4's do: that is what their
counts say). A projection Dd -> Dv is added only where the dims differ.

Decode head inputs at position t (the engine's contract): ``verifier_hidden[t]``
is h_v[t]; ``token_embeds[t]`` is the verifier's input embedding of the token
h_v[t] produced; ``drafter_hidden[t]`` is the drafter's state after reading the
tokens <= t. ``forward`` returns h_v[t+1] predictions; output t depends only
on inputs <= t.
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

    def predict(self, aligned: torch.Tensor, token_embeds: torch.Tensor | None) -> torch.Tensor:
        length = aligned.shape[1]
        if length > self.max_positions:
            raise AdapterError(f"{self.level}: {length} positions exceed hyperparams.max_positions={self.max_positions}")
        x = aligned
        if self.fuse is not None:
            if token_embeds is None:
                raise AdapterError(f"{self.level}: this head was trained with use_token_embedding; pass token_embeds")
            x = self.fuse(torch.cat([x, token_embeds.to(x.dtype)], dim=-1))
        x = x + self.positions(torch.arange(length, device=x.device))
        return self.out_norm(self.blocks(x))

    def primary(self, drafter_hidden, verifier_hidden) -> torch.Tensor:
        """The input this head reads: the drafter's (L5) or the verifier's (B1, and L5F's fused) hidden."""
        source = drafter_hidden if self.source == "drafter" else verifier_hidden
        if source is None:
            raise AdapterError(f"{self.level}: needs {self.source}_hidden")
        return source

    def forward(self, drafter_hidden=None, verifier_hidden=None, token_embeds=None) -> torch.Tensor:
        return self.predict(self.aligned(self.primary(drafter_hidden, verifier_hidden)), token_embeds)

    def forward_with_alignment(self, drafter_hidden=None, verifier_hidden=None, token_embeds=None):
        """(next-position prediction, same-prefix alignment) for training."""
        aligned = self.aligned(self.primary(drafter_hidden, verifier_hidden))
        return self.predict(aligned, token_embeds), aligned


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

    def forward_with_alignment(self, drafter_hidden=None, verifier_hidden=None, token_embeds=None):
        if drafter_hidden is None or verifier_hidden is None:
            raise AdapterError("L5F: needs both drafter_hidden and verifier_hidden")
        d = self.drafter_proj(self.drafter_norm(drafter_hidden))
        v = self.verifier_proj(self.verifier_norm(verifier_hidden))
        g = torch.sigmoid(self.gate(torch.cat([d, v], dim=-1)))
        return self.head(verifier_hidden=g * d + (1 - g) * v, token_embeds=token_embeds), d

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
    input_dim = verifier_dim if level == "B1" else drafter_dim
    return EagleHead(level, input_dim, verifier_dim, *attention, hp["max_positions"], token)


def count_parameters(level: str, drafter_dim: int, verifier_dim: int, **hparams) -> int:
    """Parameters of an adapter, counted on the meta device (nothing is allocated)."""
    with torch.device("meta"):
        model = build_adapter(level, drafter_dim, verifier_dim, **hparams)
    return sum(p.numel() for p in model.parameters())
