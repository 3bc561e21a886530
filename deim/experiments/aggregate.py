"""Run many settings over seeds, then summarise: mean ± spread tables, mean curves, paired verdicts.

The figures drawn from these numbers are in :mod:`deim.analysis.ablation_plots`."""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from deim.experiments.runs import RunCache, RunResult, RunSpec

METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
VERDICT_NOTE = ("'AP vs X': difference of the mean final AP to setting X and the p-value of a paired t-test over "
                "the seeds (same seed = same initialisation and data order); 'higher'/'lower' when p < 0.05.")


CACHED_ONLY_ENV = "DEIM_ONLY_CACHED_RUNS"


def run_settings(settings: dict[str, Sequence[RunSpec]], cache: RunCache | None = None,
                 progress: bool = True, cached_only: bool | None = None) -> dict[str, list[RunResult]]:
    """Get (read or train) every run; ``settings`` maps a row name to its seeds' specs.

    ``cached_only`` (default: the environment variable ``DEIM_ONLY_CACHED_RUNS`` is set to 1) reads
    the finished runs only: a missing run is left out (and said so), a setting without any is dropped,
    so a notebook renders what a partial study has (its tables give the seeds per row)."""
    import os

    cache = cache or RunCache()
    if cached_only is None:
        cached_only = os.environ.get(CACHED_ONLY_ENV, "") == "1"
    total = sum(len(v) for v in settings.values())
    done = 0
    out: dict[str, list[RunResult]] = {}
    for name, specs in settings.items():
        runs = []
        for spec in specs:
            found = cache.load(spec)
            if progress:
                state = "cached" if found is not None else ("missing, left out" if cached_only else "training")
                print(f"[{done + 1}/{total}] {name} seed {spec.seed}: {state} ({spec.key()})", flush=True)
            if found is not None or not cached_only:
                runs.append(found if found is not None else cache.get(spec))
            done += 1
        if runs:
            out[name] = runs
    return out


def run_records(results: dict[str, list[RunResult]]) -> dict[str, list[dict[str, object]]]:
    """What a figure's provenance says about the runs behind it: per setting, each run's key (its
    folder in the run cache), seed, final AP, training seconds and the git state it was trained at."""
    return {name: [{"key": r.key, "seed": r.spec.get("seed"), "AP": round(float(r.final.get("AP", float("nan"))), 5),
                    "seconds": round(r.seconds, 1), "git": r.provenance.get("git")} for r in runs]
            for name, runs in results.items()}


def final_metric(result: RunResult, metric: str = "AP") -> float:
    """The metric of the run's final evaluation, in percent."""
    return 100.0 * float(result.final[metric])


def epoch_seconds(result: RunResult, stage: str | None = None) -> float:
    """Mean training seconds per epoch (evaluation excluded), over the epochs of ``stage`` only when
    given (``warmup``, ``dense_o2o``, ``standard``, ``no_aug``: the schedule's stage of each epoch)."""
    rows = [r for r in result.history if stage is None or r.get("stage") == stage]
    if not rows:
        raise ValueError(f"run {result.key} has no epoch in stage {stage!r}")
    return float(np.mean([r["train_seconds"] for r in rows]))


def summary_table(results: dict[str, list[RunResult]], metrics: Iterable[str] = ("AP", "AP50", "AP75"),
                  paper: dict[str, str] | None = None, reference: str | Sequence[str] = ()) -> pd.DataFrame:
    """One row per setting: each metric as ``mean ± std`` over seeds (percent), seeds, and the
    paper's statement for that row when ``paper`` gives one. Each ``reference`` (a setting's name) adds
    a column with each row's AP difference to it and whether it exceeds the seeds' spread."""
    references = [reference] if isinstance(reference, str) else list(reference)
    rows = []
    for name, runs in results.items():
        row: dict[str, object] = {"setting": name, "seeds": len(runs)}
        for m in metrics:
            values = np.array([final_metric(r, m) for r in runs])
            spread = values.std(ddof=1) if len(values) > 1 else float("nan")
            row[m] = f"{values.mean():.1f} ± {spread:.1f}" if len(values) > 1 else f"{values.mean():.1f}"
            row[f"{m}_mean"] = round(float(values.mean()), 2)
        for ref in references:
            diff, p, word = difference(runs, results[ref])
            row[f"AP vs {ref}"] = "—" if name == ref else f"{diff:+.2f} ({word}, p={p:.2f})"
        if paper is not None:
            row["paper"] = paper.get(name, "")
        rows.append(row)
    return pd.DataFrame(rows)


def mean_curve(runs: Sequence[RunResult], metric: str = "AP", x: str = "epoch",
               percent: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(x, mean, std)`` of ``metric`` over seeds (in percent when ``percent``, for the COCO stats);
    ``x`` is ``epoch`` or ``hours`` (cumulative training wall time, evaluation excluded)."""
    curves = []
    xs = None
    for run in runs:
        rows = [r for r in run.history if r.get(metric) is not None]
        values = np.array([(100.0 if percent else 1.0) * r[metric] for r in rows])
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


def difference(a: Sequence[RunResult], b: Sequence[RunResult], metric: str = "AP",
               level: float = 0.05) -> tuple[float, float, str]:
    """``(mean(a) - mean(b), p-value, word)`` of the final ``metric`` (percent).

    Runs with the same seed share their initialisation, data order and augmentation draws, so
    when ``a`` and ``b`` hold the same seeds the test is a paired t-test over seeds (the seed's
    own effect cancels); otherwise Welch's t-test. ``word`` is ``higher`` / ``lower`` when
    ``p < level``, else ``no clear difference``; ``one seed`` (and p = NaN) when either side has
    a single run. With three seeds only large, consistent differences reach ``p < 0.05``.
    """
    from scipy import stats

    by_seed_a = {r.spec.get("seed"): final_metric(r, metric) for r in a}
    by_seed_b = {r.spec.get("seed"): final_metric(r, metric) for r in b}
    va, vb = np.array(list(by_seed_a.values())), np.array(list(by_seed_b.values()))
    diff = float(va.mean() - vb.mean())
    if min(len(va), len(vb)) < 2:
        return diff, float("nan"), "one seed"
    if set(by_seed_a) == set(by_seed_b) and len(by_seed_a) == len(a) == len(b):
        seeds = sorted(by_seed_a)
        p = float(stats.ttest_rel([by_seed_a[k] for k in seeds], [by_seed_b[k] for k in seeds]).pvalue)
    else:
        p = float(stats.ttest_ind(va, vb, equal_var=False).pvalue)
    if np.isnan(p):  # identical constant differences: no spread to test against
        p = 0.0 if diff != 0 else 1.0
    return diff, p, ("higher" if diff > 0 else "lower") if p < level else "no clear difference"


def compare(a: Sequence[RunResult], b: Sequence[RunResult], metric: str = "AP") -> str:
    """Plain-words verdict on "does ``a`` reach ``b``?" from final ``metric`` over seeds."""
    diff, p, word = difference(a, b, metric)
    ma = np.mean([final_metric(r, metric) for r in a])
    mb = np.mean([final_metric(r, metric) for r in b])
    head = f"{ma:.2f} vs {mb:.2f} {metric} (difference {diff:+.2f}"
    if word == "one seed":
        return head + "): one seed only, no verdict"
    head += f", p = {p:.3f})"
    return head + {"higher": ": yes, significantly higher", "no clear difference":
                   ": no clear difference at these seeds", "lower": ": no, significantly lower"}[word]


def crossings(results: dict[str, list[RunResult]], target: float, metric: str = "AP") -> pd.DataFrame:
    """Per run: the first epoch (1-based) and cumulative training hours at which ``metric`` reaches
    ``target`` percent (``None`` when it never does), and its final value."""
    rows = []
    for name, runs in results.items():
        for run in runs:
            elapsed = np.cumsum([r["train_seconds"] for r in run.history]) / 3600.0
            reached = [(r["epoch"] + 1, t) for r, t in zip(run.history, elapsed)
                       if r.get(metric) is not None and 100 * r[metric] >= target]
            epoch, hours = reached[0] if reached else (None, None)
            rows.append({"setting": name, "seed": run.spec.get("seed"), "epochs trained": len(run.history),
                         f"first epoch with {metric} >= {target:.1f}": epoch,
                         "training hours then": None if hours is None else round(float(hours), 3),
                         f"final {metric}": round(final_metric(run, metric), 2)})
    return pd.DataFrame(rows)
