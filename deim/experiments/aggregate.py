"""Run many settings over seeds, then summarise: mean ± spread tables and learning curves."""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from deim.experiments.runs import RunCache, RunResult, RunSpec

METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def run_settings(settings: dict[str, Sequence[RunSpec]], cache: RunCache | None = None,
                 progress: bool = True) -> dict[str, list[RunResult]]:
    """Get (read or train) every run; ``settings`` maps a row name to its seeds' specs."""
    cache = cache or RunCache()
    total = sum(len(v) for v in settings.values())
    done = 0
    out: dict[str, list[RunResult]] = {}
    for name, specs in settings.items():
        out[name] = []
        for spec in specs:
            cached = cache.load(spec) is not None
            if progress:
                print(f"[{done + 1}/{total}] {name} seed {spec.seed}: "
                      f"{'cached' if cached else 'training'} ({spec.key()})", flush=True)
            out[name].append(cache.get(spec))
            done += 1
    return out


def final_metric(result: RunResult, metric: str = "AP") -> float:
    """The metric of the run's final evaluation, in percent."""
    return 100.0 * float(result.final[metric])


def epoch_seconds(result: RunResult) -> float:
    """Mean training seconds per epoch (evaluation excluded)."""
    return float(np.mean([r["train_seconds"] for r in result.history]))


def summary_table(results: dict[str, list[RunResult]], metrics: Iterable[str] = ("AP", "AP50", "AP75"),
                  paper: dict[str, str] | None = None) -> pd.DataFrame:
    """One row per setting: each metric as ``mean ± std`` over seeds (percent), seeds, and the
    paper's statement for that row when ``paper`` gives one."""
    rows = []
    for name, runs in results.items():
        row: dict[str, object] = {"setting": name, "seeds": len(runs)}
        for m in metrics:
            values = np.array([final_metric(r, m) for r in runs])
            spread = values.std(ddof=1) if len(values) > 1 else float("nan")
            row[m] = f"{values.mean():.1f} ± {spread:.1f}" if len(values) > 1 else f"{values.mean():.1f}"
            row[f"{m}_mean"] = round(float(values.mean()), 2)
        if paper is not None:
            row["paper"] = paper.get(name, "")
        rows.append(row)
    return pd.DataFrame(rows)


def mean_curve(runs: Sequence[RunResult], metric: str = "AP",
               x: str = "epoch") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(x, mean, std)`` of ``metric`` (percent) over seeds; ``x`` is ``epoch`` or ``hours``
    (cumulative training wall time, evaluation excluded)."""
    curves = []
    xs = None
    for run in runs:
        rows = [r for r in run.history if r.get(metric) is not None]
        values = np.array([100.0 * r[metric] for r in rows])
        if x == "epoch":
            pos = np.array([r["epoch"] + 1 for r in rows], dtype=float)
        else:
            elapsed = np.cumsum([r["train_seconds"] for r in run.history]) / 3600.0
            by_epoch = {r["epoch"]: t for r, t in zip(run.history, elapsed)}
            pos = np.array([by_epoch[r["epoch"]] for r in rows])
        curves.append(values)
        xs = pos if xs is None else (xs + pos)
    stacked = np.stack(curves)
    return xs / len(runs), stacked.mean(0), stacked.std(0, ddof=1) if len(runs) > 1 else np.zeros(stacked.shape[1])


def plot_curves(results: dict[str, list[RunResult]], metric: str = "AP", x: str = "epoch",
                ax: plt.Axes | None = None, title: str = "") -> plt.Axes:
    """Mean learning curve per setting with a ±1 std band over seeds."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    for name, runs in results.items():
        xs, mean, std = mean_curve(runs, metric, x)
        ax.plot(xs, mean, marker="o", ms=3, label=f"{name} (n={len(runs)})")
        ax.fill_between(xs, mean - std, mean + std, alpha=0.2)
    ax.set_xlabel("epoch" if x == "epoch" else "training wall time (hours)")
    ax.set_ylabel(f"{metric} (%)")
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


def time_to_reach(runs: Sequence[RunResult], target: float, metric: str = "AP") -> float | None:
    """Mean training hours (over seeds) until ``metric`` first reaches ``target`` percent;
    ``None`` when some seed never reaches it."""
    hours = []
    for run in runs:
        elapsed = np.cumsum([r["train_seconds"] for r in run.history]) / 3600.0
        reached = [t for r, t in zip(run.history, elapsed) if r.get(metric) is not None and 100 * r[metric] >= target]
        if not reached:
            return None
        hours.append(reached[0])
    return float(np.mean(hours))


def compare(a: Sequence[RunResult], b: Sequence[RunResult], metric: str = "AP") -> str:
    """Plain-words verdict on "does ``a`` reach ``b``?" from final ``metric`` over seeds."""
    va = np.array([final_metric(r, metric) for r in a])
    vb = np.array([final_metric(r, metric) for r in b])
    diff = va.mean() - vb.mean()
    head = f"{va.mean():.2f} vs {vb.mean():.2f} {metric} (difference {diff:+.2f}"
    if min(len(va), len(vb)) < 2:
        return head + "): one seed only, no verdict"
    spread = max(va.std(ddof=1), vb.std(ddof=1))
    head += f", larger seed std {spread:.2f})"
    if diff >= spread:
        return head + ": yes, above the spread"
    if diff >= -spread:
        return head + ": a tie within the seeds' spread"
    return head + ": no, below the spread"
