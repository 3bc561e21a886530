"""Plot a training run's per-epoch log (``log.jsonl`` rows): loss terms and COCO AP."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt

MAIN_TERMS = ("loss", "loss_mal", "loss_vfl", "loss_bbox", "loss_giou", "loss_fgl", "loss_ddf")


def plot_history(rows: Sequence[dict[str, Any]], title: str = "") -> plt.Figure:
    """Left: total loss and the main-output terms per epoch; right: AP / AP50 of the EMA model."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.8))
    epochs = [r["epoch"] + 1 for r in rows]
    for term in MAIN_TERMS:
        if term in rows[0]:
            a.plot(epochs, [r[term] for r in rows], marker="o", ms=3, label=term, lw=2 if term == "loss" else 1)
    a.set_xlabel("epoch")
    a.set_ylabel("mean loss (weighted)")
    a.set_yscale("log")
    a.legend(fontsize=7)
    a.grid(alpha=0.3)
    evaluated = [r for r in rows if "AP" in r]
    for metric in ("AP", "AP50"):
        b.plot([r["epoch"] + 1 for r in evaluated], [100 * r[metric] for r in evaluated], marker="o", label=metric)
    b.set_xlabel("epoch")
    b.set_ylabel("COCO metric (%) of the EMA model")
    b.legend(fontsize=8)
    b.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
