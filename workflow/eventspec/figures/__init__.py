"""The figure registry: every figure the pipeline draws, by name. ``eventspec figure NAME`` draws one.

A figure is a module ``eventspec.figures.<name>`` with one contract:

- ``SIZE``: the figure's (width, height) in inches;
- ``plot(fig, inputs, tau)``: draw into the empty matplotlib ``Figure`` ``fig``. ``inputs`` are the parsed
  JSON files the command was given, in its order (``FIGURES[name].reads``); ``tau`` is the cosine
  threshold whose proxy acceptance is drawn beside token-exact (figures with ``tau=False`` ignore it).

``render.render`` reads the inputs, calls ``plot`` and writes the PNG. This module is pure data, imported
by the CLI (argparse ``choices``) and by the Snakefile (one rule per figure): no figure module imports it,
so registering a figure changes no other figure's code digest.
"""

from __future__ import annotations

from typing import NamedTuple


class Figure(NamedTuple):
    reads: str
    """The JSON files ``plot`` reads, in order (``--inputs``)."""
    tau: bool = False
    """Draws the cosine proxy at ``--tau``: its rule passes ``evaluate.tau`` (only its jobs rerun when that changes)."""


FIGURES = {
    "training_curves": Figure("an adapter's history.json"),
    "metrics_summary": Figure("acceptance_metrics.json position_stats.json (one adapter)", tau=True),
    "stage_timeline": Figure("acceptance_metrics.json (one adapter or two-phase pair)", tau=True),
    "token_metrics": Figure("acceptance_metrics.json position_stats.json (one adapter)", tau=True),
    "adapter_comparison": Figure("acceptance_metrics.json of every adapter (pairs are skipped)", tau=True),
    "benchmark_speedup": Figure("the benchmark's summary.json"),
    "benchmark_breakdown": Figure("the benchmark's summary.json"),
    "benchmark_acceptance": Figure("the benchmark's summary.json"),
    "benchmark_histogram": Figure("the benchmark's summary.json"),
    "benchmark_timeline": Figure("the benchmark's summary.json"),
    "benchmark_frames": Figure("the frames sweep's frames_summary.json"),
}
