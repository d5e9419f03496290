"""``training_curves.png``: loss, cosine and acceptance per epoch, from an adapter's ``history.json``."""

from __future__ import annotations

from matplotlib.ticker import MaxNLocator

SIZE = (13, 3.8)
THRESHOLDS = (80, 85, 90, 95)


def plot(fig, inputs: list[dict], tau: float) -> None:
    """``inputs``: [history.json]; ``tau`` unused (every threshold is drawn)."""
    history = inputs[0]
    epochs = [r["epoch"] for r in history["epochs"]]
    loss, cos, accept = fig.subplots(1, 3)
    loss.plot(epochs, [r["train_loss"] for r in history["epochs"]], marker="o", label="train")
    loss.plot(epochs, [r["val_loss"] for r in history["epochs"]], marker="o", label="held-out")
    loss.set(title="loss", xlabel="epoch")
    loss.legend()
    cos.plot(epochs, [r["val_cos"] for r in history["epochs"]], marker="o", color="C2")
    cos.set(title="held-out cosine similarity", xlabel="epoch")
    for t in THRESHOLDS:
        accept.plot(epochs, [r[f"val_accept_{t}"] for r in history["epochs"]], marker="o", label=f"cos >= 0.{t}")
    accept.plot(epochs, [r["val_token_top1"] for r in history["epochs"]], marker="s", ls="--", color="k",
                label="token top-1")
    accept.set(title="held-out acceptance", xlabel="epoch", ylim=(0, 1))
    accept.legend(fontsize=8)
    for ax in (loss, cos, accept):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if history.get("best_epoch"):
            ax.axvline(history["best_epoch"], color="grey", ls=":", lw=1)
    fig.suptitle(f"{history['adapter']} ({history['level']})")
