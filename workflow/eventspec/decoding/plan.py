"""One plan per benchmark configuration, derived once from its config entry and the trained heads.

Everything the benchmark does differently per configuration reads the plan:
its role (peer, method, ceiling), the verifier path (eager dynamic cache,
static cache, compiled; None for transformers' ``generate``), the drafter job
(none; ``token``: the drafter's own tokens; ``adapter``: a prefill adapter;
``oracle``: the verifier's own answer; ``state``: a prefill only, for a decode
head that reads the drafter's states), the drafts made during the verifier's
prefill, whether the drafter's state comes back for decoding, whether the job
runs in the worker process, the main process's threads and the devices held.

A configuration whose drafter would draft nothing and read nothing (a prefill
adapter with ``prefill_drafts: 0`` and no decode head reading the drafter) is
refused with a ConfigError: it would start a drafter that does nothing.

Equal cores: every configuration holds ``threads + worker_threads`` cores. One
whose drafter runs in the worker gives the main process ``threads`` and the
worker ``worker_threads``; every other one runs the main process on all of
them; a configuration's own ``threads`` overrides this. Devices: the verifier's
device, plus the drafter's where a drafter runs (``devices``); ``gpus`` counts
the distinct CUDA devices among them, which the report compares (DESIGN §8).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..config import ConfigError
from .drafting import reads_drafter


@dataclass(frozen=True)
class Plan:
    name: str
    kind: str
    role: str  # peer (needs no event camera), method (an adapter reads the event camera), ceiling (oracle)
    path: str | None  # dynamic, static, compiled; None: transformers' generate
    drafter_job: str | None  # None, token, adapter, oracle, state
    prefill_drafts: int  # most drafts made during the verifier's prefill
    returns_state: bool  # the drafter's track comes back: decode-phase drafting reads it
    in_worker: bool  # the drafter job runs in the worker process beside the prefill
    threads: int  # torch threads of the main process
    devices: tuple[str, ...]  # devices held: the verifier's, then the drafter's if a drafter runs
    gamma: int = 0
    decode_adapter: str | None = None
    prefill_adapter: str | None = None
    compile: bool = False
    tree: dict | None = None  # EAGLE-2 draft tree settings (depth, top_k, budget); None: chains

    @property
    def gpus(self) -> int:
        return len({d for d in self.devices if torch.device(d).type == "cuda"})

    @property
    def verify_width(self) -> int:
        """The widest verifier forward of a round: the drafts (a tree's node budget) plus the pending token."""
        return max(self.gamma, self.prefill_drafts, self.tree["budget"] if self.tree else 0) + 1


def verifier_path(c: dict) -> str | None:
    """The verifier step a configuration runs: ``dynamic``, ``static`` or ``compiled`` (None: transformers'
    ``generate``, whose steps we do not see)."""
    if c["kind"] == "hf_generate":
        return None
    return "compiled" if c.get("compile") else c.get("cache", "dynamic")


def make_plan(name: str, c: dict, heads: dict, bench: dict, verifier_device: str, drafter_device: str) -> Plan:
    """The plan of configuration ``name`` (``c``: its validated config entry; ``heads``: decode heads by name,
    each with ``.uses``)."""
    kind = c["kind"]
    head = heads.get(c.get("decode_adapter"))
    head_reads_drafter = head is not None and reads_drafter(head)
    prefill_drafts = c.get("prefill_drafts", 0)
    job, returns_state = None, False
    if kind == "token_sd":
        job, returns_state = "token", True
    elif kind == "oracle":
        job = "oracle" if prefill_drafts else None
    elif kind == "speculative":
        if c.get("prefill_adapter"):
            if not prefill_drafts and not head_reads_drafter:
                raise ConfigError(f"benchmark.configs.{name}: prefill_adapter {c['prefill_adapter']} with "
                                  "prefill_drafts 0 drafts nothing (set prefill_drafts > 0 or drop the adapter)")
            job = "adapter" if prefill_drafts else "state"
        elif head_reads_drafter:
            job = "state"
        returns_state = head_reads_drafter
    if job not in ("token", "adapter", "oracle"):
        prefill_drafts = 0
    if kind == "oracle":
        role = "ceiling"
    elif c.get("prefill_adapter") or head_reads_drafter:
        role = "method"
    else:
        role = "peer"
    in_worker = job is not None and bench["concurrent"]
    threads = c.get("threads") or bench["threads"] + (0 if in_worker else bench["worker_threads"])
    path = verifier_path(c)
    devices = (verifier_device,) + ((drafter_device,) if job is not None and drafter_device != verifier_device else ())
    tree = c.get("tree")
    gamma = tree["depth"] if tree else c.get("gamma", 0)
    return Plan(name, kind, role, path, job, prefill_drafts, returns_state, in_worker, threads, devices,
                gamma=gamma if kind in ("prompt_lookup", "token_sd", "speculative", "oracle") else 0,
                decode_adapter=c.get("decode_adapter"), prefill_adapter=c.get("prefill_adapter"),
                compile=bool(c.get("compile")), tree=tree)
