"""Judge the candidate regimes of a protocol pilot against a decision rule fixed in advance.

Each candidate is represented by its *baseline* (VFL, no Dense O2O) trained at the 2x budget with a
few seeds; nothing else is looked at while choosing. :func:`judge` checks, from the runs' logs:

* the detector works: mean final AP and AP50 at least ``min_AP`` / ``min_AP50`` (fractions);
* the curve flattens: the last quarter of the epochs adds at most ``max_last_quarter_gain`` of the
  final AP (``(AP_final - AP_at_3/4) / AP_final``, worst seed);
* seeds agree: max - min of the final AP at most ``max_seed_spread``;
* the budget: the whole reproduction, estimated from these runs' own wall time (seconds per epoch
  of budget x the epochs the study trains, ``jobs`` at a time, plus the fixed costs), fits
  ``max_reproduce_minutes``.

:func:`choose` keeps the first candidate (in the given order) that passes every check; when none
does, :func:`best_within_budget` names the one with the highest mean final AP among those whose
reproduction fits the budget.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from deim.experiments.runs import RunResult


@dataclass
class Verdict:
    """One candidate's measurements (AP values are fractions) and the checks it passed."""

    name: str
    note: str
    final_ap: list[float]
    final_ap50: list[float]
    last_quarter_gain: float
    seed_spread: float
    seconds_per_unit: float
    estimated_minutes: float
    checks: dict[str, bool] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(self.checks.values())

    def row(self) -> dict[str, object]:
        """A table row in percent and minutes."""
        ap = 100 * np.asarray(self.final_ap)
        return {"candidate": self.name, "regime": self.note,
                "AP (mean)": round(float(ap.mean()), 2), "AP per seed": ", ".join(f"{v:.1f}" for v in ap),
                "AP50 (mean)": round(100 * float(np.mean(self.final_ap50)), 2),
                "last-quarter gain (% of final AP)": round(100 * self.last_quarter_gain, 1),
                "seed spread (AP)": round(100 * self.seed_spread, 2),
                "s per 1x run": round(self.seconds_per_unit, 0),
                "estimated reproduce (min)": round(self.estimated_minutes, 0),
                **{f"ok: {k}": v for k, v in self.checks.items()}, "meets rule": self.passed}


def last_quarter_gain(result: RunResult, metric: str = "AP") -> float:
    """``(final - value after 3/4 of the epochs) / final`` of ``metric`` (1.0 when final <= 0)."""
    rows = [r for r in result.history if r.get(metric) is not None]
    if not rows:
        raise ValueError(f"run {result.key} has no {metric} in its history")
    epochs = max(r["epoch"] for r in result.history) + 1
    cut = int(round(0.75 * epochs)) - 1  # the last epoch before the last quarter starts
    before = [r for r in rows if r["epoch"] <= cut]
    final = float(rows[-1][metric])
    if final <= 0 or not before:
        return 1.0
    return (final - float(before[-1][metric])) / final


def judge(name: str, runs: Sequence[RunResult], rule: Mapping[str, float], *, study_units: float, jobs: int,
          fixed_minutes: float, budget_factor: float = 2.0, note: str = "") -> Verdict:
    """Measure candidate ``name`` from its baseline runs (each trained at ``budget_factor`` x the
    1x budget) and check ``rule``. ``study_units``: the study's total training in 1x budgets (a 2x
    run counts 2); ``fixed_minutes``: what the reproduction costs besides training (pre-training,
    data generation, notebooks)."""
    if len(runs) < 2:
        raise ValueError(f"candidate {name!r}: the rule needs at least two seeds, got {len(runs)}")
    ap = [float(r.final["AP"]) for r in runs]
    ap50 = [float(r.final["AP50"]) for r in runs]
    gain = max(last_quarter_gain(r) for r in runs)
    spread = max(ap) - min(ap)
    per_unit = float(np.mean([r.seconds for r in runs])) / budget_factor
    minutes = study_units * per_unit / jobs / 60.0 + fixed_minutes
    checks = {"AP": float(np.mean(ap)) >= rule["min_AP"], "AP50": float(np.mean(ap50)) >= rule["min_AP50"],
              "flattens": gain <= rule["max_last_quarter_gain"], "seeds agree": spread <= rule["max_seed_spread"],
              "fits budget": minutes <= rule["max_reproduce_minutes"]}
    return Verdict(name, note, ap, ap50, gain, spread, per_unit, minutes, checks)


def choose(verdicts: Sequence[Verdict]) -> Verdict | None:
    """The first candidate that meets every check, or ``None``."""
    return next((v for v in verdicts if v.passed), None)


def best_within_budget(verdicts: Sequence[Verdict]) -> Verdict | None:
    """The candidate with the highest mean final AP among those that pass the budget check, or ``None``."""
    fitting = [v for v in verdicts if v.checks.get("fits budget")]
    return max(fitting, key=lambda v: float(np.mean(v.final_ap)), default=None)
