"""Reading a feature store for training: masked (drafter, verifier) hidden-state batches.

Rows are streamed a block at a time (a whole number of shards, so each read
decompresses whole shards once), like the seeds' chunk loader but over one
store; with ``shuffle`` the block order and the rows inside a block are
permuted. Only committed rows are read. Hidden states come in their stored
dtype (float16/bfloat16): a trainer casts them on its device, which keeps host
memory traffic at half the float32 size.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import store
from .hidden_dtype import stored_tensor


@dataclass
class FeatureBatch:
    drafter: torch.Tensor  # [B, T', Dd] stored dtype
    verifier: torch.Tensor  # [B, T', Dv] stored dtype
    mask: torch.Tensor  # [B, T'] bool: positions that hold a real pair (T' <= T: the block's longest)
    rows: np.ndarray  # [B] store rows


class FeatureStore:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.group, self.n = store.open_committed(self.path)
        self.logical_dtype = self.group.attrs["logical_dtype"]
        self.shard_rows = self.group["verifier_hidden"].shards[0]
        self.verifier_len = np.asarray(self.group["verifier_len"][: self.n], dtype=np.int64)
        self.drafter_len = np.asarray(self.group["drafter_len"][: self.n], dtype=np.int64)
        self.aligned_len = np.minimum(self.verifier_len, self.drafter_len)

    def __len__(self) -> int:
        return self.n

    def read(self, rows: slice, teacher_forced: bool, order: np.ndarray | None = None) -> FeatureBatch:
        """Rows ``rows`` (a contiguous slice, optionally permuted by ``order``) as one batch.

        Teacher-forced pairs share the verifier's text prefix, so every
        position up to the verifier's length is a pair; free-running pairs
        align two different texts position by position, up to the shorter.
        Only the positions up to the longest pair of the block are read.
        """
        length = (self.verifier_len if teacher_forced else self.aligned_len)[rows]
        width = max(int(length.max()), 1)
        drafter = self.group["drafter_hidden_tf" if teacher_forced else "drafter_hidden"][rows, :width]
        verifier = self.group["verifier_hidden"][rows, :width]
        index = np.arange(rows.start, rows.stop)
        if order is not None:
            drafter, verifier, length, index = drafter[order], verifier[order], length[order], index[order]
        return FeatureBatch(
            drafter=stored_tensor(drafter, self.logical_dtype),
            verifier=stored_tensor(verifier, self.logical_dtype),
            mask=torch.arange(width)[None] < torch.from_numpy(length)[:, None],
            rows=index,
        )

    def batches(
        self,
        batch_size: int,
        teacher_forced: bool = True,
        shuffle: bool = False,
        seed: int = 0,
        block_shards: int = 16,
    ) -> Iterator[FeatureBatch]:
        """Masked batches over all committed rows, streamed ``block_shards`` shards at a time."""
        rng = np.random.default_rng(seed)
        block = self.shard_rows * block_shards
        starts = np.arange(0, self.n, block)
        if shuffle:
            starts = rng.permutation(starts)
        for start in starts:
            rows = slice(int(start), int(min(start + block, self.n)))
            order = rng.permutation(rows.stop - rows.start) if shuffle else None
            data = self.read(rows, teacher_forced, order)
            for i in range(0, len(data.rows), batch_size):
                part = slice(i, i + batch_size)
                yield FeatureBatch(data.drafter[part], data.verifier[part], data.mask[part], data.rows[part])
