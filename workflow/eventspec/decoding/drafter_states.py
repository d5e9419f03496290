"""The drafter's decoding state as the decode-phase draft sources read it, wherever the drafter runs.

``HeadDrafter`` (decode heads that read the drafter: L5, L5F) and
``TokenDrafter`` (token-level SD) keep the drafter in step with the answer
and read its hidden states or its own greedy tokens. They do it through a
``DrafterStates``:

- ``LocalDrafterStates``: the drafter's ``Track`` in this process
  (``InProcessDrafter``);
- ``WorkerDrafterStates``: the track stays resident in the drafter worker
  process, on the drafter's device; per request only token ids go there and
  only the drafter's hidden states of the positions it has just read (or its
  own drafts) come back. This process mirrors the ids the drafter has read
  and the states it was sent, so a round asks only for what is new.

Before, the worker pickled its whole KV cache to this process every pair
(layers x 2 x positions x width; ~335 MB for EventGPT-7B at ~640 positions
in bfloat16) and this process kept a second full drafter to continue it.

Both count what they move in a ``Transfer``: bytes between processes (the
pickled messages, both ways, the job and its reply included) and bytes
between host and device for drafting (drafter states copied off or onto a
CUDA device, token ids uploaded to the drafter's device; the inputs every
configuration uploads, event images and pixels, are not counted).
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from .drafting import draft_while, on_module, propose_own_token
from .track import Track, common_prefix, crop, forward, sync

TOKEN_BYTES = 8
"""An id as the drafter reads it (torch.long)."""


@dataclass
class Transfer:
    """Bytes one pair moved for drafting."""

    between_processes: int = 0
    host_device: int = 0


def crosses_host(a: torch.device, b: torch.device) -> bool:
    """Whether a copy from ``a`` to ``b`` goes between host and device (cuda:1 -> cuda:0 does not)."""
    return (torch.device(a).type == "cpu") != (torch.device(b).type == "cpu")


class DrafterStates(Protocol):
    transfer: Transfer

    def sync(self, tokens: list[int]) -> None:
        """Make the drafter have read exactly ``tokens`` (crop to the common prefix, read the rest)."""

    def read(self, tokens: list[int]) -> None:
        """The drafter reads ``tokens`` after what it has read."""

    def hidden_on(self, module: torch.nn.Module, start: int) -> torch.Tensor:
        """The drafter's states ``hidden[start:]`` ([T, D], ``track.Track``'s convention) on ``module``'s device
        in its dtype."""

    def own_drafts(self, answer: list[int], k: int) -> list[int]:
        """Up to ``k`` of the drafter's own greedy tokens continuing ``answer`` (none past its EOS, none outside
        the shared vocabulary)."""


class LocalDrafterStates:
    """The drafter's track in this process."""

    def __init__(self, track: Track, vocab: int, transfer: Transfer | None = None):
        self.track, self.vocab = track, vocab
        self.transfer = transfer or Transfer()

    def _tokens_in(self, n: int) -> None:
        if self.track.backend.device.type != "cpu":
            self.transfer.host_device += n * TOKEN_BYTES

    def sync(self, tokens: list[int]) -> None:
        self._tokens_in(len(tokens) - common_prefix(self.track.read, tokens))
        sync(self.track, tokens)

    def read(self, tokens: list[int]) -> None:
        self._tokens_in(len(tokens))
        forward(self.track, tokens, logits=False)

    def hidden_on(self, module: torch.nn.Module, start: int) -> torch.Tensor:
        states = on_module(self.track.hidden[start:], module)
        if crosses_host(self.track.hidden[0].device, states.device):
            self.transfer.host_device += states.nbytes
        return states

    def own_drafts(self, answer: list[int], k: int) -> list[int]:
        self.sync(answer)
        before = len(self.track.read)
        drafts = draft_while(self.track, lambda track: propose_own_token(track, self.vocab), k, lambda: False,
                             eos=self.track.backend.eos_token_id)
        self._tokens_in(len(self.track.read) - before)
        return drafts


def to_numpy(t: torch.Tensor) -> tuple[np.ndarray, str]:
    """Raw bytes as numpy (bfloat16 as its int16 bits): pickles ~100x faster than a torch tensor."""
    dtype = str(t.dtype).removeprefix("torch.")
    t = t.detach().cpu().contiguous()
    return (t.view(torch.int16) if t.dtype == torch.bfloat16 else t).numpy(), dtype


def from_numpy(packed: tuple[np.ndarray, str]) -> torch.Tensor:
    array, dtype = packed
    t = torch.from_numpy(array)
    return t.view(torch.bfloat16) if dtype == "bfloat16" else t


class PipeEnd:
    """One end of a ``multiprocessing`` pipe that pickles itself, counting the bytes it moves."""

    def __init__(self, conn):
        self.conn = conn
        self.bytes = 0

    def send(self, message) -> None:
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        self.bytes += len(data)
        self.conn.send_bytes(data)

    def recv(self):
        data = self.conn.recv_bytes()
        self.bytes += len(data)
        return pickle.loads(data)

    def poll(self, timeout: float = 0.0) -> bool:
        return self.conn.poll(timeout)

    def close(self) -> None:
        self.conn.close()


@dataclass
class StatesRequest:
    """Drafter worker: crop the resident track to ``keep`` answer tokens, read ``tokens``; reply with the new
    positions' states (``drafts`` = 0) or with up to ``drafts`` own tokens and the count of tokens read."""

    keep: int
    tokens: list[int]
    drafts: int = 0


def serve_states(track: Track, vocab: int, request: StatesRequest) -> tuple:
    """The worker's side of ``WorkerDrafterStates``: (states as numpy or None, own drafts, tokens read,
    host<->device bytes)."""
    on_device = track.backend.device.type != "cpu"
    crop(track, request.keep)
    if request.drafts:
        local = LocalDrafterStates(track, vocab)
        drafts = local.own_drafts(track.read + request.tokens, request.drafts)
        return None, drafts, len(track.read), local.transfer.host_device
    forward(track, request.tokens, logits=False)
    new = torch.stack(track.hidden[len(track.hidden) - len(request.tokens):]) if request.tokens else None
    moved = (len(request.tokens) * TOKEN_BYTES + (0 if new is None else new.nbytes)) if on_device else 0
    return None if new is None else to_numpy(new), [], len(track.read), moved


class WorkerDrafterStates:
    """The drafter's track resident in the drafter worker (``concurrent.DrafterWorker``)."""

    def __init__(self, worker, read: list[int], hidden: tuple[np.ndarray, str], transfer: Transfer):
        self.worker, self.transfer = worker, transfer
        self.read_ids = list(read)
        self.hidden: list[torch.Tensor] | None = list(from_numpy(hidden))  # None once own drafts left it behind
        self.on_head: torch.Tensor | None = None  # ``hidden`` rows already copied to ``head``'s device
        self.head: torch.nn.Module | None = None

    def _ask(self, request: StatesRequest) -> tuple:
        before = self.worker.conn.bytes
        states, drafts, n_read, moved = self.worker.request(request)
        self.transfer.between_processes += self.worker.conn.bytes - before
        self.transfer.host_device += moved
        return states, drafts, n_read

    def sync(self, tokens: list[int]) -> None:
        keep = common_prefix(self.read_ids, tokens)
        if keep == len(self.read_ids) == len(tokens):
            return
        states, _, _ = self._ask(StatesRequest(keep, tokens[keep:]))
        del self.read_ids[keep:]
        self.read_ids.extend(tokens[keep:])
        if self.hidden is not None:
            del self.hidden[keep + 1 :]
            self.on_head = None if self.on_head is None else self.on_head[: keep + 1]
            self.hidden.extend([] if states is None else from_numpy(states).unbind(0))

    def read(self, tokens: list[int]) -> None:
        self.sync(self.read_ids + tokens)

    def hidden_on(self, module: torch.nn.Module, start: int) -> torch.Tensor:
        if self.hidden is None:
            raise RuntimeError("the drafter's states were not kept beside its own drafts (one reader per pair)")
        if self.on_head is not None and self.head is module:  # only rows not yet there cross
            new = on_module(self.hidden[len(self.on_head):], module) if len(self.on_head) < len(self.hidden) else None
            rows = self.on_head if new is None else torch.cat([self.on_head, new])
        else:  # first call for this head: the whole history, once
            rows = new = on_module(self.hidden, module)
        if new is not None and new.device.type != "cpu":
            self.transfer.host_device += new.nbytes
        self.on_head, self.head = rows, module
        return rows[start:]

    def own_drafts(self, answer: list[int], k: int) -> list[int]:
        keep = common_prefix(self.read_ids, answer)
        _, drafts, n_read = self._ask(StatesRequest(keep, answer[keep:], k))
        self.read_ids = (answer + drafts)[:n_read]
        self.hidden = None
        return drafts
