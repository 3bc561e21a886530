"""Figures of notebook 13: IoU–score histograms of matched pairs, their rank correlation over
epochs, and reliability diagrams of the detections (inputs from :mod:`deim.analysis.match_quality_runs`)."""
from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import LogNorm
from matplotlib.ticker import MaxNLocator

from deim.analysis.calibration import reliability_bins
from deim.analysis.match_quality_runs import epoch_names


def _band(values: pd.Series, unit: str = "") -> str:
    """``mean ± std`` of the non-NaN values (``mean`` alone for one, ``n/a`` for none)."""
    v = values.dropna().to_numpy()
    if len(v) == 0:
        return "n/a"
    return (f"{v.mean():.2f} ± {v.std(ddof=1):.2f}" if len(v) > 1 else f"{v.mean():.2f}") + unit


def plot_pair_histograms(pairs: pd.DataFrame, summary: pd.DataFrame, settings: Sequence[str],
                         epochs: Sequence[int] | None = None, bins: int = 20) -> plt.Figure:
    """2-D histograms of matched pairs, IoU (x) against the target class's score (y), all seeds
    pooled; one row per setting, one column per epoch (0-based; default all in ``pairs``). Colour:
    share of the panel's matches (log scale); the score axis ends at the highest score, rounded up
    to a tenth. Titles: Spearman ρ (mean ± std over seeds) and the share of matches with IoU < 0.5
    scored above the median."""
    epochs = sorted(pairs.epoch.unique()) if epochs is None else list(epochs)
    names = epoch_names(epochs)
    fig, axes = plt.subplots(len(settings), len(epochs), figsize=(3.9 * len(epochs) + 1.2, 3.6 * len(settings)),
                             squeeze=False, sharex=True, sharey=True)
    shown = pairs[pairs.setting.isin(list(settings)) & pairs.epoch.isin(epochs)]
    top = min(1.0, max(0.1, float(np.ceil(10 * shown.score.max()) / 10))) if len(shown) else 1.0
    iou_edges, score_edges = np.linspace(0.0, 1.0, bins + 1), np.linspace(0.0, top, bins + 1)
    image = None
    for i, setting in enumerate(settings):
        for j, epoch in enumerate(epochs):
            ax = axes[i, j]
            sel = pairs[(pairs.setting == setting) & (pairs.epoch == epoch)]
            rows = summary[(summary.setting == setting) & (summary.epoch == epoch)]
            counts, _, _ = np.histogram2d(sel.iou.clip(0, 1), sel.score.clip(0, top), bins=[iou_edges, score_edges])
            share = counts.T / max(len(sel), 1)
            image = ax.imshow(np.where(share > 0, share, np.nan), origin="lower", extent=(0, 1, 0, top), aspect="auto",
                              cmap="viridis", norm=LogNorm(vmin=1e-3, vmax=1.0))
            ax.axvline(0.5, color="w", lw=0.8, ls="--")
            ax.set_title(f"{setting}, {names[epoch]}\nSpearman ρ = {_band(rows.spearman)}\n"
                         f"IoU < 0.5 & score > median: {_band(100 * rows.confident_poor_share, '%')}", fontsize=8)
            if i == len(settings) - 1:
                ax.set_xlabel("IoU with the ground truth")
            if j == 0:
                ax.set_ylabel("score of the target class")
    fig.subplots_adjust(hspace=0.45)
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.8, label="share of the matches")
    return fig


def plot_epoch_curves(summary: pd.DataFrame, metric: str, ax: plt.Axes | None = None, title: str = "",
                      ylabel: str = "", scale: float = 1.0) -> plt.Axes:
    """``metric`` of :func:`run_summary` against epochs trained (``epoch + 1``): mean per setting
    with a ±1 std band over seeds; values multiplied by ``scale`` (100 for percent)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.8))
    for setting, group in summary.groupby("setting", sort=False):
        stats = group.groupby("epoch")[metric].agg(["mean", "std", "count"]).sort_index()
        x = stats.index.to_numpy() + 1
        mean, std = scale * stats["mean"].to_numpy(), scale * stats["std"].fillna(0).to_numpy()
        ax.plot(x, mean, marker="o", ms=4, label=f"{setting} (n={int(stats['count'].max())})")
        ax.fill_between(x, mean - std, mean + std, alpha=0.2)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(ylabel or metric)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return ax


def plot_reliability(detections: pd.DataFrame, summary: pd.DataFrame, settings: Sequence[str], epoch: int,
                     score_threshold: float, iou_thresholds: Sequence[float] = (0.5, 0.75),
                     bins: int = 10) -> plt.Figure:
    """Reliability diagrams of the detections scored ``>= score_threshold`` after ``epoch``, seeds
    pooled: per score bin the share of detections at IoU >= t with a ground truth of their class
    (y) against the bin's mean score (x); marker area ~ detections in the bin. One panel per
    ``t``; the legend gives each setting's ECE (percent, mean ± std over seeds)."""
    fig, axes = plt.subplots(1, len(iou_thresholds), figsize=(5.2 * len(iou_thresholds), 4.4), squeeze=False)
    dets = detections[(detections.epoch == epoch) & (detections.score >= score_threshold)]
    for ax, t in zip(axes[0], iou_thresholds):
        ax.plot([0, 1], [0, 1], color="grey", lw=1, ls="--", label="calibrated")
        for setting in settings:
            sel = dets[dets.setting == setting]
            table = reliability_bins(sel.score, sel.iou >= t, bins)
            table = table[table["count"] > 0]
            ece = summary[(summary.setting == setting) & (summary.epoch == epoch)][f"ece_{round(100 * t)}"]
            line, = ax.plot(table.confidence, table.accuracy, marker="", lw=1.5,
                            label=f"{setting}: ECE {_band(100 * ece, '%')} ({len(sel)} det.)")
            size = 300 * table["count"] / max(len(sel), 1)
            ax.scatter(table.confidence, table.accuracy, s=size + 8, color=line.get_color(), alpha=0.7, zorder=3)
        ax.axvspan(0, score_threshold, color="0.9", zorder=0)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("score (mean in bin)")
        ax.set_ylabel(f"share with IoU ≥ {t:g}")
        ax.set_title(f"correct = IoU ≥ {t:g} with a ground truth of the class", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle(f"Reliability of the detections scored ≥ {score_threshold:g}, after {epoch + 1} epochs", fontsize=10)
    fig.tight_layout()
    return fig
