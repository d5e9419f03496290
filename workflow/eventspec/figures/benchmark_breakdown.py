"""Median wall time per pair: verifier vision + prefill, then decoding (waiting for the drafter included);
ceilings hatched."""

from .common import configs, label, mark_ceilings

SIZE = (8, 4.5)


def plot(fig, inputs: list[dict], tau: float) -> None:
    """``inputs``: [summary.json]; ``tau`` unused."""
    summary, ax = inputs[0], fig.subplots()
    names, rows = configs(summary)
    names = [label(n, r) for n, r in zip(names, rows)]
    pre = [1e3 * (r["prefill_s_mean"] or 0) for r in rows]
    wait = [1e3 * r["wait_s_mean"] for r in rows]
    dec = [1e3 * (r["decode_s_mean"] if r["decode_s_mean"] is not None else r["wall_s_median"]) - w
           for r, w in zip(rows, wait)]
    mark_ceilings(ax.bar(names, pre, label="verifier vision + prefill"), rows)
    mark_ceilings(ax.bar(names, wait, bottom=pre, label="waiting for the drafter"), rows)
    mark_ceilings(ax.bar(names, dec, bottom=[p + w for p, w in zip(pre, wait)],
                         label="decoding (whole run for generate peers)"), rows)
    ax.set_ylabel("ms per pair (median run)")
    ax.tick_params(axis="x", rotation=45)
    ax.legend()
