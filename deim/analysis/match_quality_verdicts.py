"""Paired verdicts, by seed, on what MAL changes: score–IoU agreement, calibration, AP50 vs AP75.

The tests are those of the ablation tables (:func:`deim.experiments.aggregate.difference`: a
paired t-test over seeds, same seed = same initialisation and data order): each run's
match-quality numbers (:func:`deim.analysis.match_quality_runs.run_summary`, at one epoch) are
put beside its final COCO stats and compared as any final metric is.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import pandas as pd

from deim.experiments.aggregate import difference, final_metric
from deim.experiments.runs import RunResult

#: metric -> (description, reported in percent, which direction is better)
VERDICT_METRICS: dict[str, tuple[str, bool, str]] = {
    "spearman": ("Spearman ρ(IoU, score) of the matched pairs", False, "higher"),
    "confident_poor_share": ("matches with IoU < 0.5 scored above the median (%)", True, "lower"),
    "ece_50": ("ECE of the detections, correct = IoU ≥ 0.5 (%)", True, "lower"),
    "ece_75": ("ECE of the detections, correct = IoU ≥ 0.75 (%)", True, "lower"),
    "AP50": ("AP50 (%)", True, "higher"),
    "AP75": ("AP75 (%)", True, "higher"),
    "AP75-AP50": ("AP75 − AP50 (%), the gain at high IoU beyond AP50", True, "higher"),
}


def with_metrics(results: Sequence[RunResult], summary: pd.DataFrame, setting: str, epoch: int) -> list[RunResult]:
    """``results`` with their ``final`` stats extended by the summary's row of ``(setting, seed,
    epoch)`` and ``AP75-AP50``, scaled so that :func:`final_metric` (which multiplies by 100)
    reports percent metrics in percent and the others as they are."""
    rows = summary[(summary.setting == setting) & (summary.epoch == epoch)].set_index("seed")
    out = []
    for r in results:
        seed = r.spec.get("seed")
        if seed not in rows.index:
            raise KeyError(f"the summary has no row for {setting!r}, seed {seed}, epoch {epoch}")
        extra = {"AP75-AP50": float(r.final["AP75"]) - float(r.final["AP50"])}
        for name, (_, percent, _) in VERDICT_METRICS.items():
            if name in rows.columns:
                extra[name] = float(rows.loc[seed, name]) / (1.0 if percent else 100.0)
        out.append(dataclasses.replace(r, final={**r.final, **extra}))
    return out


def _mean_std(values: np.ndarray) -> str:
    return f"{values.mean():.3g} ± {values.std(ddof=1):.2g}" if len(values) > 1 else f"{values.mean():.3g}"


def paired_verdicts(results: dict[str, Sequence[RunResult]], summary: pd.DataFrame, baseline: str,
                    candidate: str, epoch: int | None = None, level: float = 0.05) -> pd.DataFrame:
    """One row per metric of :data:`VERDICT_METRICS`: ``baseline`` and ``candidate`` (mean ± std over
    seeds), ``difference`` (candidate − baseline), ``p`` (paired t-test by seed) and ``verdict``
    (``better`` / ``worse`` for the candidate when ``p < level``, ``no clear difference``, ``one
    seed``, or ``not measured`` when a run has no value, e.g. no detection above the threshold).
    Match-quality metrics are read at ``epoch`` (default: the last in ``summary``)."""
    epoch = int(summary.epoch.max()) if epoch is None else epoch
    base = with_metrics(results[baseline], summary, baseline, epoch)
    cand = with_metrics(results[candidate], summary, candidate, epoch)
    rows = []
    for name, (description, _, better) in VERDICT_METRICS.items():
        values_base = np.array([final_metric(r, name) for r in base])
        values_cand = np.array([final_metric(r, name) for r in cand])
        if np.isnan(values_base).any() or np.isnan(values_cand).any():  # e.g. no detection above the threshold
            diff, p, verdict = float("nan"), float("nan"), "not measured"
        else:
            diff, p, word = difference(cand, base, name, level)
            verdict = word if word in ("one seed", "no clear difference") else (
                "better" if word == better else "worse")
        rows.append({"metric": name, "description": description, "better": better,
                     baseline: _mean_std(values_base), candidate: _mean_std(values_cand),
                     "difference": round(diff, 4), "p": round(p, 4), "verdict": verdict})
    return pd.DataFrame(rows)


def verdict_line(table: pd.DataFrame) -> str:
    """The issue's question in one line, from :func:`paired_verdicts`: is the score a better
    predictor of localisation (ρ up, ECE at IoU 0.75 down), and does AP75 gain more than AP50?"""
    v = table.set_index("metric")
    if (v.verdict == "one seed").any():
        return "one seed only: no paired test, no verdict (run at scale `reduced` for three seeds)"

    def say(metric: str) -> str:
        row = v.loc[metric]
        return f"{metric} {row.difference:+.3g} (p={row.p:.2f}, {row.verdict})"

    better = [m for m in ("spearman", "ece_75") if v.loc[m, "verdict"] == "better"]
    worse = [m for m in ("spearman", "ece_75") if v.loc[m, "verdict"] == "worse"]
    missing = [m for m in ("spearman", "ece_75") if v.loc[m, "verdict"] == "not measured"]
    if missing:
        score = f"not measured ({', '.join(missing)} has no value in some run)"
    elif len(better) == 2:
        score = "yes: the MAL score predicts localisation better"
    elif better and not worse:
        score = f"partly: only {better[0]} improves significantly"
    elif worse and not better:
        score = f"no: {worse[0]} is significantly worse with MAL"
    elif better and worse:
        score = "mixed: one measure improves, the other worsens"
    else:
        score = "no clear difference at these seeds"
    gap = v.loc["AP75-AP50", "verdict"]
    ap = ("AP75 gains significantly more than AP50, as the paper's Table 6 suggests" if gap == "better" else
          "AP75 gains significantly less than AP50, against the paper's Table 6" if gap == "worse" else
          "the AP75 and AP50 gains do not differ clearly")
    return (f"Score as a predictor of IoU: {score} [{say('spearman')}; {say('ece_75')}]. "
            f"AP: {ap} [{say('AP50')}; {say('AP75')}; {say('AP75-AP50')}].")
