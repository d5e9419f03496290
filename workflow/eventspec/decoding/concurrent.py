"""The drafter beside the verifier's prefill: in this process, or in a worker process with its own threads.

A job is one (event window, question) as uint8 event images and text (small
enough for one pipe write; float pixel values are 5x larger and cost several
process switches on a loaded machine): the drafter preprocesses and prefills
its prompt (vision included), then drafts (``propose`` = prefill adapter or its own tokens) until the
verifier's prefill ends (the ``stop`` event) or ``k_max`` drafts exist. The
result carries the drafts, the time it took and, where decode-phase drafting
reads the drafter, a ``DrafterStates`` over its track: the track itself
in-process; in the worker the track (KV cache included) stays resident on the
drafter's device, and the main process gets its answer-position states (a few
KB) and asks for new ones per round (``drafter_states``). The main process
then needs no drafter of its own.

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
from .drafter_states import (
    DrafterStates, LocalDrafterStates, PipeEnd, StatesRequest, Transfer, WorkerDrafterStates, serve_states, to_numpy,
)
from .drafting import draft_while, draftable_vocab, propose_from_adapter, propose_own_token
from .track import Track, prefill


@dataclass
class DraftJob:
    event_images: np.ndarray  # [1, C, H, W, 3] uint8
    question: str
    propose: str | torch.nn.Module | None = None  # None (prefill only), "token", a prefill adapter's name or module
    k_max: int = 0
    feed_own: bool = False
    return_state: bool = True  # keep the drafter's track for decode-phase drafting (``EarlyDrafts.states``)
    eos: int | None = None  # the verifier's EOS: no drafts past it
    vocab: int | None = None  # the verifier's base vocabulary: the drafter's own tokens stay inside it


@dataclass
class EarlyDrafts:
    """What the drafter made while the verifier prefilled."""

    drafts: list[int]
    prefill_s: float  # drafter preprocessing + vision + prefill
    draft_s: float  # drafting after its prefill
    prepare_s: float = 0.0  # of prefill_s, the preprocessing (event images and prompt to tensors)
    started_at: float = 0.0  # time.perf_counter() (CLOCK_MONOTONIC, shared by processes) when the job began
    done_at: float = 0.0  # ... when its drafts were ready
    states: DrafterStates | None = field(repr=False, default=None)  # the drafter's track (``return_state``)
    transfer: Transfer = field(default_factory=Transfer)  # bytes moved for drafting this pair (grows per round)


class WorkerError(RuntimeError):
    """The drafter worker failed; the message carries its traceback."""


def run_job(drafter, adapters: dict, lm_head, job: DraftJob, should_stop) -> tuple[EarlyDrafts, Track, int]:
    """Prefill the drafter and draft; return the drafts, its track and the vocabulary its own tokens keep to."""
    t0 = now(drafter.device)
    vocab = draftable_vocab(drafter, job.vocab)
    inputs = drafter.prepare(job.event_images, [job.question])
    prepared = now(drafter.device)
    track = prefill(drafter, inputs)
    t1 = now(drafter.device)
    if job.propose is None:
        drafts = []
    else:
        module = isinstance(job.propose, torch.nn.Module)
        adapter = _beside(job.propose, lm_head) if module else adapters.get(job.propose)
        if job.propose == "token":
            def propose(track):
                return propose_own_token(track, vocab)
        elif adapter is None:
            raise KeyError(f"prefill adapter {job.propose!r} not loaded in the drafter worker")
        else:
            propose = propose_from_adapter(adapter, lm_head)
        drafts = draft_while(track, propose, job.k_max, should_stop, job.feed_own, job.eos)
    t2 = now(drafter.device)
    return EarlyDrafts(drafts, t1 - t0, t2 - t1, prepared - t0, t0, t2), track, vocab


class InProcessDrafter:
    """The same job run sequentially after the verifier's prefill (no hiding): tests, and single-core runs."""

    def __init__(self, drafter, adapters: dict, lm_head):
        self.drafter, self.adapters, self.lm_head = drafter, adapters, lm_head
        self.job = None

    def start(self, job: DraftJob) -> None:
        self.job = job

    def halt(self) -> None:
        """Nothing runs until ``finish``."""

    def ready(self) -> bool:
        """Always: ``finish`` runs the job now."""
        return True

    def finish(self) -> EarlyDrafts:
        early, track, vocab = run_job(self.drafter, self.adapters, self.lm_head, self.job, lambda: False)
        if self.job.return_state:
            early.states = LocalDrafterStates(track, vocab, early.transfer)
        return early


def lm_head_on(weight: torch.Tensor, device) -> torch.nn.Linear:
    """A bias-free LM head holding ``weight`` on ``device``, in its dtype (built on the meta device: no
    throwaway float32 matrix first)."""
    lm_head = torch.nn.Linear(*weight.shape[::-1], bias=False, device="meta")
    lm_head.weight = torch.nn.Parameter(weight.to(device), requires_grad=False)
    return lm_head


def _early_reply(early: EarlyDrafts, track: Track, job: DraftJob) -> tuple:
    """The worker's reply to a job: its drafts and, with ``return_state``, what the main process mirrors of the
    resident track (the ids it read and its states: [1 + read, D], small; never its KV cache)."""
    mirror = (list(track.read), to_numpy(torch.stack(track.hidden))) if job.return_state else None
    moved = mirror[1][0].nbytes if mirror is not None and track.backend.device.type != "cpu" else 0
    return early, mirror, moved


def _serve(conn, stop, spec: dict) -> None:
    """Worker main: load the drafter and adapters once, then run jobs and the decode-phase requests on the last
    job's track (``StatesRequest``) until told to stop or the pipe closes."""
    conn = PipeEnd(conn)
    try:
        torch.set_num_threads(spec["threads"])
        from ..models.drafter import load_drafter

        drafter = load_drafter(spec["drafter_path"], spec["dtype"], spec["quant"], spec["device"],
                               vision_dtype=spec["vision_dtype"])
        lm_head = lm_head_on(spec["lm_head"], drafter.device)
        adapters = {name: adapter_beside(a, lm_head) for name, a in spec["adapters"].items()}
        conn.send("ready")
    except Exception:  # noqa: BLE001 - reported to the main process
        conn.send(WorkerError(traceback.format_exc()))
        return
    resident: tuple[Track, int] | None = None  # the last job's track and the vocabulary its own tokens keep to
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        try:
            if isinstance(message, StatesRequest):
                if resident is None:
                    raise RuntimeError("a drafter states request before any job that keeps the drafter's state")
                conn.send(serve_states(*resident, message))
                continue
            resident = None  # the previous pair's cache is freed before this one's prefill
            early, track, vocab = run_job(drafter, adapters, lm_head, message, stop.is_set)
            resident = (track, vocab) if message.return_state else None
            conn.send(_early_reply(early, track, message))
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
                 device="cpu", threads: int = 1, vision_dtype: str = "bfloat16"):
        ctx = mp.get_context("spawn")
        self.stop = ctx.Event()
        conn, child = ctx.Pipe()
        self.conn = PipeEnd(conn)  # counts the bytes between the processes
        spec = {"drafter_path": str(drafter_path), "adapters": adapters, "lm_head": lm_head_weight.detach().cpu(),
                "dtype": dtype, "quant": quant, "device": device, "threads": threads, "vision_dtype": vision_dtype}
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
        self.sent_at = self.conn.bytes
        self.conn.send(job)

    def halt(self) -> None:
        """The verifier's prefill is done: the drafter drafts no more and replies once its prefill is."""
        self.stop.set()

    def ready(self) -> bool:
        """Whether the job's reply is here (``finish`` would not block)."""
        return self.conn.poll()

    def finish(self) -> EarlyDrafts:
        self.stop.set()
        early, mirror, moved = self._receive()
        early.transfer = Transfer(self.conn.bytes - self.sent_at, moved)
        if mirror is not None:
            early.states = WorkerDrafterStates(self, *mirror, early.transfer)
        return early

    def request(self, request: StatesRequest) -> tuple:
        """One decode-phase request on the resident track (``WorkerDrafterStates``)."""
        self.conn.send(request)
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
