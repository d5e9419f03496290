"""Reading a feature store for training: masked (drafter, verifier) hidden-state batches.

Reads are bounded in bytes, not rows: a block is the largest whole number of
shards (or, when one shard is over budget, of zarr chunks) whose hidden states
fit ``block_bytes``, so the same setting holds at D=128 and at D=4096. With
``shuffle`` the blocks are read in a permuted order into a shuffle window of
at most ``buffer_bytes`` (and at least one block); a full window is served
in one random permutation of its rows, and the next window starts. The next
block is read in a worker thread while the current one is served. Peak memory
is about the window plus two blocks, whatever the size of the store. Only
committed rows are read. Hidden states come in their stored dtype
(float16/bfloat16): a trainer casts them on its device, which keeps host
memory traffic at half the float32 size.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import store
from .hidden_dtype import stored_tensor
from .store_layout import validate_layout

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

    def take(self, index: slice) -> FeatureBatch:
        """The rows in ``index`` (a view)."""
        drafter = None if self.drafter is None else self.drafter[index]
        return FeatureBatch(drafter, self.verifier[index], self.tokens[index], self.mask[index], self.rows[index])

    def gather(self, index: np.ndarray) -> FeatureBatch:
        """A copy of the rows at ``index``, cut to their longest pair (``index_select`` on the narrowed
        tensors: about 4x faster than advanced indexing, and no padding tail is copied)."""
        rows = torch.from_numpy(index)
        mask = self.mask.index_select(0, rows)
        width = longest_pair(mask)

        def pick(x):
            return None if x is None else x[:, :width].index_select(0, rows)

        return FeatureBatch(pick(self.drafter), pick(self.verifier), pick(self.tokens), mask[:, :width],
                            self.rows[index])

    def trimmed(self) -> FeatureBatch:
        """The same rows cut to their longest pair: a batch drawn from a long block carries no all-padding tail."""
        width = longest_pair(self.mask)
        if width == self.mask.shape[1]:
            return self
        drafter = None if self.drafter is None else self.drafter[:, :width]
        return FeatureBatch(drafter, self.verifier[:, :width], self.tokens[:, :width], self.mask[:, :width], self.rows)


def longest_pair(mask: torch.Tensor) -> int:
    """Positions of the longest pair among the rows of ``mask`` [B, T'] (at least 1, also for no rows)."""
    return max(int(mask.sum(1).max()), 1) if len(mask) else 1


def concat(parts: list[FeatureBatch]) -> FeatureBatch:
    """Rows of several batches in one, padded to the widest (each row is copied once; one part is returned as is)."""
    if len(parts) == 1:
        return parts[0]
    width = max(p.mask.shape[1] for p in parts)
    rows = sum(len(p) for p in parts)

    def stacked(field: str, fill) -> torch.Tensor | None:
        first = getattr(parts[0], field)
        if first is None:
            return None
        out = torch.full((rows, width, *first.shape[2:]), fill, dtype=first.dtype)
        start = 0
        for p in parts:
            values = getattr(p, field)
            out[start : start + len(values), : values.shape[1]] = values
            start += len(values)
        return out

    return FeatureBatch(stacked("drafter", 0), stacked("verifier", 0), stacked("tokens", -1), stacked("mask", False),
                        np.concatenate([p.rows for p in parts]))


class FeatureStore:
    def __init__(self, path: str | Path, check_layout: bool = True):
        """Open a committed feature store; ``check_layout`` first checks it against xsd/feature_store.schema.json
        (about 10 ms: metadata only). Only a store that holds part of the arrays on purpose skips it."""
        self.path = Path(path)
        self.group, self.n = store.open_committed(self.path)
        if check_layout:
            validate_layout(self.path, "feature")
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

    def _read_ahead(self, blocks: list[slice], teacher_forced: bool, with_drafter: bool) -> Iterator[FeatureBatch]:
        """The blocks in the order given, each read in a worker thread while the one before it is served:
        decompression (zarr's codecs run outside the GIL) overlaps with the consumer."""
        with ThreadPoolExecutor(max_workers=1) as reader:
            pending = None
            for rows in blocks:
                ahead = reader.submit(self.read, rows, teacher_forced, with_drafter)
                if pending is not None:
                    yield pending.result()
                pending = ahead
            if pending is not None:
                yield pending.result()

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
        order, gathered into windows of at most ``buffer_bytes`` (and at least
        one block) whose rows are served in a random permutation; the rows of
        a window's last partial batch join the next window. Each batch is cut
        to its longest pair. (This replaced a reservoir pool that swapped each
        incoming row with a random resident one: it padded every row to T and
        copied each row three times, and read at 0.5x the seeds' chunk layout;
        batching rows of similar lengths would cut padding further but, measured
        on the toy store, trained B1 to a held-out cosine of 0.81 instead of
        0.90 in the same time.)
        """
        blocks = self.blocks(block_bytes, with_drafter)
        if not shuffle:
            for data in self._read_ahead(blocks, teacher_forced, with_drafter):
                for i in range(0, len(data), batch_size):
                    yield data.take(slice(i, i + batch_size)).trimmed()
            return
        rng = np.random.default_rng(seed)
        capacity = max(buffer_bytes // self.row_bytes(with_drafter), batch_size)
        window: list[FeatureBatch] = []
        for block in self._read_ahead([blocks[b] for b in rng.permutation(len(blocks))], teacher_forced, with_drafter):
            if window and sum(map(len, window)) + len(block) > capacity:
                rest = yield from _serve_shuffled(window, batch_size, rng, whole_batches_only=True)
                window = [rest] if rest is not None else []
            window.append(block)
        yield from _serve_shuffled(window, batch_size, rng, whole_batches_only=False)


def _serve_shuffled(window: list[FeatureBatch], batch_size: int, rng: np.random.Generator,
                    whole_batches_only: bool):
    """Yield the window's rows in one random permutation, in batches; return the rows of a last partial batch
    (when ``whole_batches_only``) so they join the next window instead of making a short batch."""
    starts = np.cumsum([0] + [len(part) for part in window])
    order = rng.permutation(int(starts[-1]))
    served = len(order) // batch_size * batch_size if whole_batches_only else len(order)
    for i in range(0, served, batch_size):
        yield _gather(window, starts, order[i : i + batch_size])
    return _gather(window, starts, order[served:]) if served < len(order) else None


def _gather(window: list[FeatureBatch], starts: np.ndarray, picks: np.ndarray) -> FeatureBatch:
    """The window rows ``picks`` (indices into the window's concatenated rows) as one trimmed batch."""
    owner = np.searchsorted(starts, picks, side="right") - 1
    return concat([window[k].gather(picks[owner == k] - starts[k]) for k in np.unique(owner)])
