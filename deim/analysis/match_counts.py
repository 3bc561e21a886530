"""One-to-one vs one-to-many matching on the same predictions (the paper's Fig. 2).

For every image of a training epoch, a (partly trained) detector predicts ``[Q, C]`` logits and
``[Q, 4]`` boxes; we count the positives that Hungarian matching (O2O, the official cost) and
SimOTA (O2M, ``deim.losses.simota``) give to those same predictions.
"""
from __future__ import annotations

from collections.abc import Iterable

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from torch import nn

from deim.losses.matcher import HungarianMatcher
from deim.losses.simota import count_matches_per_image


@torch.no_grad()
def match_counts(model: nn.Module, loader: Iterable, device: torch.device | str = "cpu",
                 max_batches: int | None = None) -> pd.DataFrame:
    """Per image: ``targets``, ``o2o`` (Hungarian positives) and ``o2m`` (SimOTA positives).

    ``loader`` yields ``(images [B, 3, H, W], targets)`` with ``labels`` and ``boxes`` (cxcywh,
    normalised), as the training loader does. The model runs in eval mode (final-layer outputs).
    """
    matcher = HungarianMatcher()
    model.eval()
    rows = []
    for i, (images, targets) in enumerate(loader):
        if max_batches is not None and i >= max_batches:
            break
        outputs = model(images.to(device))
        logits, boxes = outputs["pred_logits"].float().cpu(), outputs["pred_boxes"].float().cpu()
        targets = [{"labels": t["labels"], "boxes": t["boxes"].float()} for t in targets]
        o2o = [len(src) for src, _ in matcher({"pred_logits": logits, "pred_boxes": boxes}, targets)]
        o2m = count_matches_per_image(logits, boxes, targets).tolist()
        rows += [{"targets": len(t["labels"]), "o2o": a, "o2m": b} for t, a, b in zip(targets, o2o, o2m)]
    return pd.DataFrame(rows)


def match_summary(counts: pd.DataFrame) -> pd.DataFrame:
    """Mean, median, p90 and max of O2O and O2M positives per image, and the O2M/O2O ratio."""
    with_targets = counts[counts.o2o > 0]
    ratio = with_targets.o2m / with_targets.o2o
    rows = []
    for name, values in (("O2O (Hungarian)", counts.o2o), ("O2M (SimOTA)", counts.o2m), ("O2M / O2O", ratio)):
        rows.append({"": name, "mean": round(float(values.mean()), 2), "median": float(values.median()),
                     "p90": round(float(np.percentile(values, 90)), 2), "max": round(float(values.max()), 2)})
    return pd.DataFrame(rows)


def plot_match_counts(counts: pd.DataFrame, title: str = "") -> plt.Figure:
    """(a) positives per image under O2O and O2M; (b) the per-image ratio O2M/O2O."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.8))
    top = int(max(counts.o2o.max(), counts.o2m.max()))
    bins = np.arange(0, top + 2) - 0.5
    a.hist(counts.o2o, bins=bins, alpha=0.6, label=f"O2O Hungarian (mean {counts.o2o.mean():.1f})")
    a.hist(counts.o2m, bins=bins, alpha=0.6, label=f"O2M SimOTA (mean {counts.o2m.mean():.1f})")
    a.set_xlabel("positive samples per image")
    a.set_ylabel("images")
    a.set_title("(a) positives per image")
    a.legend(fontsize=8)
    valid = counts[counts.o2o > 0]
    ratio = valid.o2m / valid.o2o
    b.hist(ratio, bins=30, color="tab:purple", alpha=0.7)
    b.axvline(ratio.mean(), color="k", ls="--", lw=1, label=f"mean {ratio.mean():.2f}")
    b.set_xlabel("O2M / O2O positives (per image)")
    b.set_title("(b) ratio per image")
    b.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
