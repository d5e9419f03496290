"""Reading a feature store for training: masked (drafter, verifier) hidden-state batches.

Reads are bounded in bytes, not rows: a block is the largest whole number of
shards (or, when one shard is over budget, of zarr chunks) whose hidden states
fit ``block_bytes``, so the same setting holds at D=128 and at D=4096. With
``shuffle`` the blocks are read in a permuted order and their rows pass
through a shuffle buffer of at most ``buffer_bytes``; batches are drawn at
random from the buffer. Peak memory is one block plus the buffer, whatever the
size of the store. Only committed rows are read. Hidden states come in their
stored dtype (float16/bfloat16): a trainer casts them on its device, which
keeps host memory traffic at half the float32 size.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import store
from .hidden_dtype import stored_tensor

DEFAULT_BLOCK_BYTES = 64 * 2**20
DEFAULT_BUFFER_BYTES = 64 * 2**20


@dataclass
class FeatureBatch:
    drafter: torch.Tensor | None  # [B, T', Dd] stored dtype (None when the drafter is not read)
    verifier: torch.Tensor  # [B, T', Dv] stored dtype
    tokens: torch.Tensor  # [B, T'] int64 verifier tokens (-1 past the end)
    mask: torch.Tensor  # [B, T'] bool: positions that hold a real pair (T' <= T: the batch's longest)
    rows: np.ndarray  # [B] store rows

    def __len__(self) -> int:
        return len(self.rows)

    def take(self, index) -> FeatureBatch:
        """The rows at ``index`` (a slice or an index array)."""
        drafter = None if self.drafter is None else self.drafter[index]
        return FeatureBatch(drafter, self.verifier[index], self.tokens[index], self.mask[index], self.rows[index])

    def trimmed(self) -> FeatureBatch:
        """The same rows cut to their longest pair: a batch drawn from a long block carries no all-padding tail."""
        width = max(int(self.mask.sum(1).max()), 1) if len(self) else 1
        if width == self.mask.shape[1]:
            return self
        drafter = None if self.drafter is None else self.drafter[:, :width]
        return FeatureBatch(drafter, self.verifier[:, :width], self.tokens[:, :width], self.mask[:, :width], self.rows)

    def padded(self, width: int) -> FeatureBatch:
        """The same rows with positions padded (masked) up to ``width``."""
        extra = width - self.mask.shape[1]
        if extra <= 0:
            return self

        def pad(x, value=0):
            return None if x is None else torch.nn.functional.pad(x, (0, 0, 0, extra) if x.dim() == 3 else (0, extra), value=value)

        return FeatureBatch(pad(self.drafter), pad(self.verifier), pad(self.tokens, -1), pad(self.mask, False), self.rows)


def concat(parts: list[FeatureBatch]) -> FeatureBatch:
    """Rows of several batches in one, padded to the widest."""
    width = max(p.mask.shape[1] for p in parts)
    parts = [p.padded(width) for p in parts]
    drafter = None if parts[0].drafter is None else torch.cat([p.drafter for p in parts])
    return FeatureBatch(
        drafter,
        torch.cat([p.verifier for p in parts]),
        torch.cat([p.tokens for p in parts]),
        torch.cat([p.mask for p in parts]),
        np.concatenate([p.rows for p in parts]),
    )


class FeatureStore:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.group, self.n = store.open_committed(self.path)
        if self.n == 0:
            raise store.StoreError(f"{self.path}: feature store has zero committed rows")
        self.logical_dtype = self.group.attrs["logical_dtype"]
        hidden = self.group["verifier_hidden"]
        self.shard_rows = hidden.shards[0]
        self.chunk_rows = hidden.chunks[0]
        self.T, self.verifier_dim = hidden.shape[1:]
        self.drafter_dim = self.group["drafter_hidden"].shape[2]
        self.itemsize = hidden.dtype.itemsize
        self.verifier_len = np.asarray(self.group["verifier_len"][: self.n], dtype=np.int64)
        self.drafter_len = np.asarray(self.group["drafter_len"][: self.n], dtype=np.int64)
        self.aligned_len = np.minimum(self.verifier_len, self.drafter_len)

    def __len__(self) -> int:
        return self.n

    def row_bytes(self, with_drafter: bool = True) -> int:
        """Bytes of one row's hidden states as read (the part that scales with D)."""
        dims = self.verifier_dim + (self.drafter_dim if with_drafter else 0)
        return self.T * dims * self.itemsize

    def block_rows(self, block_bytes: int, with_drafter: bool = True) -> int:
        """Rows per read: whole shards when one fits ``block_bytes``, else whole chunks (at least one)."""
        rows = max(block_bytes // self.row_bytes(with_drafter), 1)
        unit = self.shard_rows if rows >= self.shard_rows else self.chunk_rows
        return max(rows // unit, 1) * unit

    def read(self, rows: slice, teacher_forced: bool, with_drafter: bool = True) -> FeatureBatch:
        """Rows ``rows`` (a contiguous slice) as one batch.

        Teacher-forced pairs share the verifier's text prefix, so every
        position up to the verifier's length is a pair; free-running pairs
        align two different texts position by position, up to the shorter.
        Only the positions up to the longest pair of the block are read.
        """
        length = (self.verifier_len if teacher_forced else self.aligned_len)[rows]
        width = max(int(length.max()), 1)
        drafter = None
        if with_drafter:
            drafter = self.group["drafter_hidden_tf" if teacher_forced else "drafter_hidden"][rows, :width]
            drafter = stored_tensor(drafter, self.logical_dtype)
        verifier = self.group["verifier_hidden"][rows, :width]
        tokens = np.asarray(self.group["verifier_tokens"][rows, :width], dtype=np.int64)
        return FeatureBatch(
            drafter=drafter,
            verifier=stored_tensor(verifier, self.logical_dtype),
            tokens=torch.from_numpy(tokens),
            mask=torch.arange(width)[None] < torch.from_numpy(length)[:, None],
            rows=np.arange(rows.start, rows.stop),
        )

    def blocks(self, block_bytes: int, with_drafter: bool = True) -> list[slice]:
        block = self.block_rows(block_bytes, with_drafter)
        return [slice(int(s), int(min(s + block, self.n))) for s in range(0, self.n, block)]

    def batches(
        self,
        batch_size: int,
        teacher_forced: bool = True,
        shuffle: bool = False,
        seed: int = 0,
        block_bytes: int = DEFAULT_BLOCK_BYTES,
        buffer_bytes: int = DEFAULT_BUFFER_BYTES,
        with_drafter: bool = True,
    ) -> Iterator[FeatureBatch]:
        """Masked batches over all committed rows, read ``block_bytes`` at a time.

        Without ``shuffle``: rows in store order. With it: blocks in a random
        order, rows drawn at random from a buffer of at most ``buffer_bytes``
        (and at least one batch) that each block refills.
        """
        blocks = self.blocks(block_bytes, with_drafter)
        if not shuffle:
            for rows in blocks:
                data = self.read(rows, teacher_forced, with_drafter)
                for i in range(0, len(data), batch_size):
                    yield data.take(slice(i, i + batch_size)).trimmed()
            return
        rng = np.random.default_rng(seed)
        capacity = max(buffer_bytes // self.row_bytes(with_drafter), batch_size)
        buffer: FeatureBatch | None = None
        for b in rng.permutation(len(blocks)):
            block = self.read(blocks[b], teacher_forced, with_drafter)
            mixed = block if buffer is None else concat([buffer, block])
            mixed = mixed.take(rng.permutation(len(mixed)))
            served = max(len(mixed) - capacity, 0) // batch_size * batch_size
            for i in range(0, served, batch_size):
                yield mixed.take(slice(i, i + batch_size)).trimmed()
            buffer = mixed.take(slice(served, None))
        for i in range(0, len(buffer), batch_size):
            yield buffer.take(slice(i, i + batch_size)).trimmed()
