"""Summaries over seeds: tables, verdicts, curves and time-to-reach, on hand-made run results."""
from __future__ import annotations

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from deim.analysis.ablation_plots import annotate_figure, data_label, plot_bars, plot_curves  # noqa: E402
from deim.experiments.aggregate import (compare, difference, epoch_seconds, mean_curve, run_records, summary_table,
                                       time_to_reach)  # noqa: E402
from deim.experiments.runs import RunResult  # noqa: E402


def run(final_ap: float, curve: tuple[float, ...] = (), seconds: float = 10.0, seed: int = 0) -> RunResult:
    """A finished run whose AP per epoch is ``curve`` (fractions) ending at ``final_ap``."""
    values = (*curve, final_ap)
    history = [{"epoch": e, "train_seconds": seconds, "AP": ap, "AP50": 2 * ap, "AP75": ap / 2}
               for e, ap in enumerate(values)]
    return RunResult(key="k", spec={"seed": seed}, history=history, final={"AP": final_ap, "AP50": 2 * final_ap,
                                                                "AP75": final_ap / 2},
                     seconds=seconds * len(values), checkpoint="", provenance={})


def seeds(*aps: float) -> list[RunResult]:
    return [run(ap, seed=i) for i, ap in enumerate(aps)]


def test_summary_table_reports_mean_std_and_differences_to_references():
    results = {"a": seeds(0.10, 0.12, 0.14), "b": seeds(0.20, 0.215, 0.23), "c": seeds(0.20, 0.08, 0.14)}
    table = summary_table(results, paper={"b": "best"}, reference=("a", "b"))
    row = table.set_index("setting")
    assert row.loc["a", "AP"] == "12.0 ± 2.0" and row.loc["b", "AP_mean"] == 21.5
    assert row.loc["b", "AP vs a"].startswith("+9.50 (higher, p=0.0")
    assert row.loc["a", "AP vs b"].startswith("-9.50 (lower, p=0.0")
    assert row.loc["c", "AP vs a"].startswith("+2.00 (no clear difference") and row.loc["a", "AP vs a"] == "—"
    assert row.loc["b", "paper"] == "best" and row.loc["a", "paper"] == ""


def test_differences_are_paired_by_seed():
    # a seed effect (seed 2 is 5 points lower everywhere) hides a consistent +1 in an unpaired view
    a, b = seeds(0.21, 0.205, 0.16), seeds(0.20, 0.19, 0.15)
    diff, p, word = difference(a, b)
    assert diff == pytest.approx(1.17, abs=0.01) and p < 0.05 and word == "higher"
    shuffled = [run(r.final["AP"], seed=s) for r, s in zip(b, (5, 6, 7))]  # other seeds: Welch's test
    assert difference(a, shuffled)[2] == "no clear difference"


def test_difference_needs_two_seeds_for_a_verdict():
    diff, p, word = difference([run(0.3)], seeds(0.1, 0.2))
    assert diff == pytest.approx(15.0) and np.isnan(p) and word == "one seed"
    assert "no verdict" in compare([run(0.3)], seeds(0.1, 0.2))
    assert compare(seeds(0.30, 0.31, 0.33), seeds(0.10, 0.11, 0.12)).endswith("yes, significantly higher")
    assert compare(seeds(0.10, 0.12, 0.11), seeds(0.11, 0.11, 0.11)).endswith("no clear difference at these seeds")


def test_mean_curve_and_time_to_reach():
    runs = [run(0.3, (0.1, 0.2), seconds=60.0), run(0.5, (0.1, 0.3), seconds=120.0)]
    x, mean, std = mean_curve(runs)
    assert list(x) == [1, 2, 3] and mean == pytest.approx([10.0, 25.0, 40.0])
    assert std[0] == 0 and std[2] == pytest.approx(np.std([30.0, 50.0], ddof=1))
    hours, mean_h, _ = mean_curve(runs, x="hours")
    assert hours == pytest.approx([1.5 / 60, 3 / 60, 4.5 / 60])
    # seed 1 reaches 20 % after 2 epochs of 1 min, seed 2 after 2 epochs of 2 min
    assert time_to_reach(runs, 20.0) == pytest.approx((2 / 60 + 4 / 60) / 2)
    assert time_to_reach(runs, 45.0) is None  # seed 1 never gets there


def test_curves_of_plain_quantities_are_not_scaled():
    runs = [run(0.3, (0.1, 0.2)), run(0.5, (0.1, 0.3))]
    for r, pos in zip(runs, (4.0, 6.0)):
        for row in r.history:
            row["positives_per_image"] = pos
    _, mean, _ = mean_curve(runs, "positives_per_image", percent=False)
    assert mean == pytest.approx([5.0, 5.0, 5.0])


def test_epoch_seconds_of_one_stage():
    r = run(0.3, (0.1, 0.2))
    for row, (stage, sec) in zip(r.history, [("warmup", 10.0), ("dense_o2o", 30.0), ("standard", 20.0)]):
        row.update(stage=stage, train_seconds=sec)
    assert epoch_seconds(r) == pytest.approx(20.0) and epoch_seconds(r, "dense_o2o") == pytest.approx(30.0)
    with pytest.raises(ValueError, match="no epoch in stage"):
        epoch_seconds(r, "no_aug")


def test_run_records_name_each_run_for_the_provenance():
    r = run(0.25, seed=2)
    r.provenance = {"git": {"commit": "abc", "dirty": False}}
    records = run_records({"DEIM": [r]})
    assert records == {"DEIM": [{"key": "k", "seed": 2, "AP": 0.25, "seconds": 10.0,
                                 "git": {"commit": "abc", "dirty": False}}]}


def test_plots_draw_the_mean_curve_and_one_bar_per_setting():
    results = {"a": [run(0.3, (0.1, 0.2), seed=0), run(0.5, (0.1, 0.3), seed=1)], "b": [run(0.2, (0.1, 0.1))]}
    fig, (left, right) = plt.subplots(1, 2)
    plot_curves(results, ax=left, title="AP per epoch")
    assert [line.get_label() for line in left.get_lines()] == ["a (n=2)", "b (n=1)"]
    assert list(left.get_lines()[0].get_ydata()) == pytest.approx([10.0, 25.0, 40.0])
    plot_bars(results, ax=right)
    assert [bar.get_height() for bar in right.patches] == pytest.approx([40.0, 20.0])
    annotate_figure(fig, "Study", "smoke", "the claim")
    assert fig._suptitle.get_text() == f"Study — {data_label('smoke')}"
    assert any(t.get_text() == "paper: the claim" for t in fig.texts)
    plt.close(fig)
