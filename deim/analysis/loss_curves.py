"""MAL vs VFL as functions of the predicted confidence (the paper's Fig. 1 bottom and Fig. 3).

For one query and one class, with predicted confidence ``p`` and matched IoU ``q``:

* positive (matched class):  VFL = -q (q log p + (1-q) log(1-p)),
  MAL = -(q^γ log p + (1-q^γ) log(1-p))
* negative (any other class): VFL = -α p^γ log(1-p), MAL = -p^γ log(1-p)

The values come from :mod:`deim.losses.classification` (the functions the criterion trains
with), evaluated element-wise; gradients are taken by autograd with respect to the logit.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from deim.losses.classification import matchability_aware_loss, varifocal_loss


@dataclass(frozen=True)
class LossSettings:
    """γ/α of the two losses as in the official configs: MAL γ=1.5; VFL α=0.75, γ=2."""

    mal_gamma: float = 1.5
    mal_alpha: float | None = None
    vfl_gamma: float = 2.0
    vfl_alpha: float = 0.75


def _elementwise(name: str, confidence: np.ndarray, iou: float, positive: bool,
                 settings: LossSettings) -> tuple[np.ndarray, np.ndarray]:
    p = torch.as_tensor(confidence, dtype=torch.float64).clamp(1e-6, 1 - 1e-6)
    logits = torch.logit(p).view(1, -1, 1).requires_grad_(True)
    targets = torch.full_like(logits, 1.0 if positive else 0.0).detach()
    ious = torch.full(logits.shape[:2], iou if positive else 0.0, dtype=torch.float64)
    if name == "MAL":
        loss = matchability_aware_loss(logits, targets, ious, num_boxes=1.0, gamma=settings.mal_gamma,
                                       alpha=settings.mal_alpha, reduction="none")
    elif name == "VFL":
        loss = varifocal_loss(logits, targets, ious, num_boxes=1.0, alpha=settings.vfl_alpha,
                              gamma=settings.vfl_gamma, reduction="none")
    else:
        raise ValueError(f"unknown loss {name!r}; use 'MAL' or 'VFL'")
    (grad,) = torch.autograd.grad(loss.sum(), logits)
    return loss.detach().flatten().numpy(), grad.flatten().numpy()


def loss_curves(ious: tuple[float, ...] = (0.05, 0.95), confidences: np.ndarray | None = None,
                settings: LossSettings = LossSettings()) -> pd.DataFrame:
    """Long table: one row per (sample kind, IoU, loss, confidence) with loss and d loss / d logit.

    Negative rows (an unmatched class) have ``iou = NaN``: they do not depend on it.
    """
    p = np.linspace(0.01, 0.99, 99) if confidences is None else np.asarray(confidences, dtype=float)
    rows = []
    for name in ("VFL", "MAL"):
        for iou in ious:
            loss, grad = _elementwise(name, p, iou, True, settings)
            rows.append(pd.DataFrame({"sample": "positive", "iou": iou, "loss_name": name,
                                      "confidence": p, "loss": loss, "grad_logit": grad}))
        loss, grad = _elementwise(name, p, 0.0, False, settings)
        rows.append(pd.DataFrame({"sample": "negative", "iou": np.nan, "loss_name": name,
                                  "confidence": p, "loss": loss, "grad_logit": grad}))
    return pd.concat(rows, ignore_index=True)


def plot_loss_curves(df: pd.DataFrame, value: str = "loss", title: str | None = None):
    """One panel per positive IoU plus one for negatives; VFL dashed, MAL solid."""
    import matplotlib.pyplot as plt

    ious = sorted(df.loc[df["sample"] == "positive", "iou"].unique())
    fig, axes = plt.subplots(1, len(ious) + 1, figsize=(4.2 * (len(ious) + 1), 3.6), sharex=True)
    panels = [("positive", q) for q in ious] + [("negative", None)]
    for ax, (kind, q) in zip(axes, panels):
        sel = df[df["sample"] == kind] if q is None else df[(df["sample"] == kind) & (df["iou"] == q)]
        for name, style in (("VFL", "--"), ("MAL", "-")):
            part = sel[sel["loss_name"] == name]
            ax.plot(part["confidence"], part[value], style, lw=2, label=name)
        ax.set_title(f"matched query, IoU = {q:g}" if q is not None else "unmatched (negative) class")
        ax.set_xlabel("predicted confidence p")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel({"loss": "loss", "grad_logit": "d loss / d logit"}.get(value, value))
    axes[0].legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def summary_table(df: pd.DataFrame, at: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7, 0.9)) -> pd.DataFrame:
    """Loss values of VFL and MAL at a few confidences, per sample kind and IoU, with the ratio."""
    rows = []
    for (kind, iou), part in df.groupby(["sample", "iou"], dropna=False):
        for p in at:
            vals = {}
            for name in ("VFL", "MAL"):
                sub = part[part["loss_name"] == name]
                vals[name] = float(np.interp(p, sub["confidence"], sub["loss"]))
            rows.append({"sample": kind, "iou": iou, "confidence": p, "VFL": vals["VFL"], "MAL": vals["MAL"],
                         "MAL/VFL": vals["MAL"] / vals["VFL"] if vals["VFL"] > 0 else float("inf")})
    return pd.DataFrame(rows)
