"""Reading a feature store for training: masked (drafter, verifier) hidden-state batches.

Rows are streamed a block at a time (a whole number of shards, so each read
decompresses whole shards once), like the seeds' chunk loader but over one
store; with ``shuffle`` the block order and the rows inside a block are
permuted. Only committed rows are read.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import store
from .extract import from_storage


@dataclass
class FeatureBatch:
    drafter: torch.Tensor  # [B, T, Dd] float32
    verifier: torch.Tensor  # [B, T, Dv] float32
    mask: torch.Tensor  # [B, T] bool: positions that hold a real pair
    rows: np.ndarray  # [B] store rows


class FeatureStore:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.group, self.n = store.open_committed(self.path)
        self.logical_dtype = self.group.attrs["logical_dtype"]
        self.shard_rows = self.group["verifier_hidden"].shards[0]

    def __len__(self) -> int:
        return self.n

    def read(self, rows: slice, teacher_forced: bool) -> FeatureBatch:
        """Rows ``rows`` (a contiguous slice) as one batch.

        Teacher-forced pairs share the verifier's text prefix, so every
        position up to the verifier's length is a pair; free-running pairs
        align two different texts position by position, up to the shorter.
        """
        g = self.group
        drafter = g["drafter_hidden_tf" if teacher_forced else "drafter_hidden"][rows]
        verifier = g["verifier_hidden"][rows]
        length = g["verifier_len"][rows].astype(np.int64)
        if not teacher_forced:
            length = np.minimum(length, g["drafter_len"][rows])
        positions = torch.arange(verifier.shape[1])[None]
        return FeatureBatch(
            drafter=from_storage(drafter, self.logical_dtype),
            verifier=from_storage(verifier, self.logical_dtype),
            mask=positions < torch.from_numpy(length)[:, None],
            rows=np.arange(rows.start, rows.stop),
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
            data = self.read(slice(int(start), int(min(start + block, self.n))), teacher_forced)
            order = rng.permutation(len(data.rows)) if shuffle else np.arange(len(data.rows))
            for i in range(0, len(order), batch_size):
                pick = order[i : i + batch_size]
                yield FeatureBatch(data.drafter[pick], data.verifier[pick], data.mask[pick], data.rows[pick])
