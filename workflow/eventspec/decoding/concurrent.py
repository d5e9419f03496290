"""The drafter beside the verifier's prefill: in this process, or in a worker process with its own threads.

A job is one (event window, question) as uint8 event images and text (small
enough for one pipe write; float pixel values are 5x larger and cost several
process switches on a loaded machine): the drafter preprocesses and prefills
its prompt (vision included), then drafts (``propose`` = prefill adapter or its own tokens) until the
verifier's prefill ends (the ``stop`` event) or ``k_max`` drafts exist. The
result carries the drafts, the time it took and the drafter's cache and
history, so the main process continues with the same drafter state.

On one CPU the worker gets its own thread budget (a core of its own); a
second Python *thread* is no substitute (measured on a GPU: 3-4x slower,
nothing drafted in time). The worker exits when the main process closes it,
fails (``with`` block), or dies (its pipe reaches EOF).
"""

from __future__ import annotations

import multiprocessing as mp
import traceback
from dataclasses import dataclass, field

import numpy as np
import torch

from .clock import now
from .drafting import draft_while, propose_from_adapter, propose_own_token
from .track import Track, pack, prefill, unpack


@dataclass
class DraftJob:
    event_images: np.ndarray  # [1, C, H, W, 3] uint8
    question: str
    propose: str | torch.nn.Module | None = None  # None (prefill only), "token", a prefill adapter's name or module
    k_max: int = 0
    feed_own: bool = False
    return_state: bool = True  # send the drafter's cache and history back (decode-phase drafting needs them)
    eos: int | None = None  # the verifier's EOS: no drafts past it


@dataclass
class EarlyDrafts:
    """What the drafter made while the verifier prefilled."""

    drafts: list[int]
    prefill_s: float  # drafter preprocessing + vision + prefill
    draft_s: float  # drafting after its prefill
    started_at: float = 0.0  # time.perf_counter() (CLOCK_MONOTONIC, shared by processes) when the job began
    done_at: float = 0.0  # ... when its drafts were ready
    state: dict | None = field(repr=False, default=None)  # the drafter's track, ``track.pack``-ed
    local: Track | None = field(repr=False, default=None)  # ... or, from the in-process drafter, the track itself

    @property
    def has_state(self) -> bool:
        return self.state is not None or self.local is not None

    def track(self, backend) -> Track:
        return self.local if self.local is not None else unpack(backend, self.state)


class WorkerError(RuntimeError):
    """The drafter worker failed; the message carries its traceback."""


def run_job(drafter, adapters: dict, lm_head, job: DraftJob, should_stop) -> tuple[EarlyDrafts, Track]:
    t0 = now(drafter.device)
    track = prefill(drafter, drafter.prepare(job.event_images, [job.question]))
    t1 = now(drafter.device)
    if job.propose is None:
        drafts = []
    else:
        module = isinstance(job.propose, torch.nn.Module)
        adapter = _beside(job.propose, lm_head) if module else adapters.get(job.propose)
        if job.propose == "token":
            propose = propose_own_token
        elif adapter is None:
            raise KeyError(f"prefill adapter {job.propose!r} not loaded in the drafter worker")
        else:
            propose = propose_from_adapter(adapter, lm_head)
        drafts = draft_while(track, propose, job.k_max, should_stop, job.feed_own, job.eos)
    t2 = now(drafter.device)
    return EarlyDrafts(drafts, t1 - t0, t2 - t1, t0, t2), track


def _with_state(early: EarlyDrafts, track: Track) -> EarlyDrafts:
    early.state = pack(track)
    return early


class InProcessDrafter:
    """The same job run sequentially after the verifier's prefill (no hiding): tests, and single-core runs."""

    def __init__(self, drafter, adapters: dict, lm_head):
        self.drafter, self.adapters, self.lm_head = drafter, adapters, lm_head
        self.job = None

    def start(self, job: DraftJob) -> None:
        self.job = job

    def finish(self) -> EarlyDrafts:
        early, track = run_job(self.drafter, self.adapters, self.lm_head, self.job, lambda: False)
        if self.job.return_state:  # same process: the track itself, no pack/unpack through host memory
            early.local = track
        return early


def _serve(conn, stop, spec: dict) -> None:
    """Worker main: load the drafter and adapters once, then run jobs until told to stop or the pipe closes."""
    try:
        torch.set_num_threads(spec["threads"])
        from ..models.drafter import load_drafter

        drafter = load_drafter(spec["drafter_path"], spec["dtype"], spec["quant"], spec["device"])
        lm_head = torch.nn.Linear(*spec["lm_head"].shape[::-1], bias=False)
        lm_head.weight.data = spec["lm_head"].to(spec["device"])
        adapters = {name: adapter_beside(a, lm_head) for name, a in spec["adapters"].items()}
        conn.send("ready")
    except Exception:  # noqa: BLE001 - reported to the main process
        conn.send(WorkerError(traceback.format_exc()))
        return
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        try:
            early, track = run_job(drafter, adapters, lm_head, job, stop.is_set)
            conn.send(_with_state(early, track) if job.return_state else early)
        except (BrokenPipeError, OSError):
            return
        except Exception:  # noqa: BLE001
            conn.send(WorkerError(traceback.format_exc()))


def _beside(adapter: torch.nn.Module, lm_head: torch.nn.Module) -> torch.nn.Module:
    """``adapter`` on the device of the LM head its drafts go through (the worker's copy sits on the drafter's
    device), in the verifier's dtype (the LM head's)."""
    return adapter.to(lm_head.weight.device, lm_head.weight.dtype).eval()


def adapter_beside(adapter, lm_head: torch.nn.Module):
    """An adapter module as given, or one loaded from its directory, beside ``lm_head``."""
    if isinstance(adapter, torch.nn.Module):
        return _beside(adapter, lm_head)
    from ..adapters import load_adapter

    return load_adapter(adapter, lm_head.weight.device, lm_head.weight.dtype)


class DrafterWorker:
    """The drafter in a spawned process; use as a context manager so it ends with the main process."""

    def __init__(self, drafter_path, adapters: dict, lm_head_weight: torch.Tensor, dtype="float32", quant="none",
                 device="cpu", threads: int = 1):
        ctx = mp.get_context("spawn")
        self.stop = ctx.Event()
        self.conn, child = ctx.Pipe()
        spec = {"drafter_path": str(drafter_path), "adapters": adapters, "lm_head": lm_head_weight.detach().cpu(),
                "dtype": dtype, "quant": quant, "device": device, "threads": threads}
        self.process = ctx.Process(target=_serve, args=(child, self.stop, spec), daemon=True, name="eventspec-drafter")
        self.process.start()
        child.close()
        self._receive()

    @property
    def pid(self) -> int:
        return self.process.pid

    def _receive(self):
        try:
            msg = self.conn.recv()
        except EOFError as err:
            raise WorkerError(f"drafter worker (pid {self.pid}) exited with code {self.process.exitcode}") from err
        if isinstance(msg, WorkerError):
            self.close()
            raise msg
        return msg

    def start(self, job: DraftJob) -> None:
        self.stop.clear()
        self.conn.send(job)

    def finish(self) -> EarlyDrafts:
        self.stop.set()
        return self._receive()

    def close(self) -> None:
        if self.process.is_alive():
            try:
                self.conn.send(None)
            except OSError:
                pass
            self.process.join(timeout=5)
            if self.process.is_alive():
                self.process.terminate()
                self.process.join()
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
