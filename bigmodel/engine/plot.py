"""curves.png: training/validation loss and accuracy (or perplexity) per epoch, drawn with
matplotlib's Agg canvas (no display needed) and written atomically."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any


def plot_curves(path: str | Path, records: list[dict[str, Any]], task: str, title: str | None = None) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from .._io import write_bytes

    epochs = [r["epoch"] if r.get("complete", True) else r["epoch"] - 1 + 0.5 for r in records]
    fig = Figure(figsize=(10, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot(epochs, [r["train_loss"] for r in records], "o-", label="train")
    ax1.plot(epochs, [r["val_loss"] for r in records], "s-", label="validation")
    ax1.set(xlabel="epoch", ylabel="cross-entropy loss", title="loss")
    if task == "lm":
        ax2.plot(epochs, [r.get("val_ppl", math.nan) for r in records], "s-", color="C1", label="validation")
        ax2.set(xlabel="epoch", ylabel="perplexity", title="validation perplexity")
    else:
        ax2.plot(epochs, [100 * r["train_acc"] for r in records], "o-", label="train")
        ax2.plot(epochs, [100 * r["val_acc"] for r in records], "s-", label="validation")
        ax2.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for ax in (ax1, ax2):
        ax.grid(True, alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    write_bytes(path, buf.getvalue())
