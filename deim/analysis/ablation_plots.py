"""Figures of an ablation over seeds: mean learning curves with a spread band, final-metric bars,
and the figure's title and paper box. The numbers come from :mod:`deim.experiments.aggregate`."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from deim.experiments.aggregate import final_metric, mean_curve
from deim.experiments.protocol import get_protocol
from deim.experiments.runs import RunResult


def plot_curves(results: dict[str, list[RunResult]], metric: str = "AP", x: str = "epoch",
                ax: plt.Axes | None = None, title: str = "", percent: bool = True) -> plt.Axes:
    """Mean curve of ``metric`` per setting with a ±1 std band over seeds (``percent``: see
    :func:`deim.experiments.aggregate.mean_curve`)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    for name, runs in results.items():
        xs, mean, std = mean_curve(runs, metric, x, percent)
        ax.plot(xs, mean, marker="o", ms=3, label=f"{name} (n={len(runs)})")
        ax.fill_between(xs, mean - std, mean + std, alpha=0.2)
    ax.set_xlabel("epoch" if x == "epoch" else "training wall time (hours)")
    ax.set_ylabel(f"{metric} (%)" if percent else metric.replace("_", " "))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return ax


def plot_bars(results: dict[str, list[RunResult]], metric: str = "AP", ax: plt.Axes | None = None,
              title: str = "") -> plt.Axes:
    """Final ``metric`` per setting: mean bar, ±1 std error bar, and every seed as a dot."""
    if ax is None:
        _, ax = plt.subplots(figsize=(max(4.0, 1.3 * len(results)), 3.8))
    for i, (name, runs) in enumerate(results.items()):
        values = np.array([final_metric(r, metric) for r in runs])
        ax.bar(i, values.mean(), color="tab:blue", alpha=0.5)
        if len(values) > 1:
            ax.errorbar(i, values.mean(), yerr=values.std(ddof=1), color="k", capsize=4)
        ax.scatter(np.full(len(values), i), values, color="k", s=10, zorder=3)
    ax.set_xticks(range(len(results)), list(results), rotation=20, ha="right", fontsize=8)
    ax.set_ylabel(f"final {metric} (%)")
    ax.grid(alpha=0.3, axis="y")
    if title:
        ax.set_title(title)
    return ax


def data_label(scale: str) -> str:
    """What a figure's subtitle says about the data: ``built-in Fashion-MNIST canvases, reduced``."""
    dataset = get_protocol(scale).dataset
    return f"{'built-in Fashion-MNIST canvases' if dataset == 'fashion' else 'COCO val2017'}, {scale}"


def annotate_figure(fig: plt.Figure, title: str, scale: str, paper: str) -> None:
    """Give ``fig`` a title naming the data and scale, and the paper's claim in a text box below."""
    fig.suptitle(f"{title} — {data_label(scale)}", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    fig.text(0.5, -0.02, f"paper: {paper}", ha="center", va="top", fontsize=9, wrap=True,
             bbox={"boxstyle": "round", "facecolor": "lightyellow", "edgecolor": "0.6"})
