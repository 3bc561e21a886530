"""Match-quality analysis (notebook 13) on hand-made predictions whose answers are known."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from deim.analysis.calibration import expected_calibration_error, reliability_bins
from deim.analysis.match_quality import confident_poor_share, detection_ious, matched_pairs, spearman
from deim.analysis.match_quality_runs import MatchRecords, epoch_names, run_summary
from deim.analysis.match_quality_verdicts import paired_verdicts, verdict_line
from deim.experiments.runs import RunResult
from deim.losses.matcher import HungarianMatcher


# ---------------------------------------------------------------- calibration
def test_ece_of_two_filled_bins():
    # bin [0.2, 0.3): 4 detections at 0.25, 1 correct -> accuracy 0.25, gap 0
    # bin [0.8, 0.9): 4 detections at 0.85, 2 correct -> accuracy 0.5, gap 0.35; ECE = 0.5 * 0.35
    scores = [0.25] * 4 + [0.85] * 4
    correct = [1, 0, 0, 0, 1, 1, 0, 0]
    assert expected_calibration_error(scores, correct) == pytest.approx(0.175)
    table = reliability_bins(scores, correct)
    filled = table[table["count"] > 0]
    assert filled["count"].tolist() == [4, 4]
    assert filled.accuracy.tolist() == pytest.approx([0.25, 0.5])
    assert filled.gap.tolist() == pytest.approx([0.0, -0.35])


def test_ece_extremes():
    assert expected_calibration_error([0.9] * 5, [False] * 5) == pytest.approx(0.9)
    assert expected_calibration_error([0.5, 0.5], [True, False]) == pytest.approx(0.0)
    assert expected_calibration_error([1.0, 1.0], [True, True]) == pytest.approx(0.0)  # 1.0 is in the last bin
    assert reliability_bins([1.0], [1], bins=4)["count"].tolist() == [0, 0, 0, 1]
    assert math.isnan(expected_calibration_error([], []))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        expected_calibration_error([1.5], [True])
    with pytest.raises(ValueError, match="length"):
        expected_calibration_error([0.5, 0.6], [True])


# ---------------------------------------------------------------- pair statistics
def test_spearman_known_values():
    iou = [0.2, 0.4, 0.6, 0.8]
    assert spearman(iou, [0.1, 0.2, 0.3, 0.4]) == pytest.approx(1.0)
    assert spearman(iou, [0.4, 0.3, 0.2, 0.1]) == pytest.approx(-1.0)
    # ranks (1, 3, 2, 4): rho = 1 - 6 * sum d^2 / (n (n^2 - 1)) = 1 - 6 * 2 / 60 = 0.8
    assert spearman(iou, [0.1, 0.3, 0.2, 0.4]) == pytest.approx(0.8)
    assert math.isnan(spearman([0.5], [0.5])) and math.isnan(spearman(iou, [0.3] * 4))


def test_confident_poor_share():
    iou = np.array([0.1, 0.2, 0.8, 0.9])
    assert confident_poor_share(iou, [0.9, 0.8, 0.1, 0.2]) == pytest.approx(0.5)  # both poor matches confident
    assert confident_poor_share(iou, [0.1, 0.2, 0.8, 0.9]) == pytest.approx(0.0)  # score tracks IoU
    assert confident_poor_share(iou, [0.1, 0.9, 0.8, 0.2]) == pytest.approx(0.25)
    assert math.isnan(confident_poor_share([], []))


# ---------------------------------------------------------------- from model outputs
def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def test_matched_pairs_iou_and_target_class_score():
    # ground truths: class 0 at (0.3, 0.3, 0.2, 0.2), class 1 at (0.7, 0.7, 0.2, 0.2) (cxcywh)
    target = {"labels": torch.tensor([0, 1]), "boxes": torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.7, 0.7, 0.2, 0.2]]),
              "image_id": torch.tensor(7)}
    boxes = torch.tensor([[[0.3, 0.3, 0.2, 0.2],      # query 0: exactly on ground truth 0
                           [0.1, 0.9, 0.05, 0.05],   # query 1: far from both
                           [0.75, 0.7, 0.2, 0.2]]])  # query 2: shifted by 0.05 from ground truth 1
    logits = torch.full((1, 3, 2), _logit(0.01))
    logits[0, 0, 0], logits[0, 2, 1], logits[0, 2, 0] = _logit(0.8), _logit(0.3), _logit(0.9)
    pairs = matched_pairs({"pred_logits": logits, "pred_boxes": boxes}, [target], HungarianMatcher())
    assert len(pairs) == 2 and set(pairs.image_id) == {7}
    pairs = pairs.sort_values("iou", ascending=False)
    # shifted box: intersection 0.15 x 0.2 = 0.03, union 0.04 + 0.04 - 0.03 = 0.05 -> IoU 0.6
    assert pairs.iou.tolist() == pytest.approx([1.0, 0.6], abs=1e-6)
    assert pairs.score.tolist() == pytest.approx([0.8, 0.3], abs=1e-6)  # the target class, not the best class


def test_detection_ious_same_class_best_ground_truth():
    targets = [{"labels": torch.tensor([0, 1]), "boxes": torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.7, 0.7, 0.2, 0.2]]),
                "image_id": torch.tensor(1)},
               {"labels": torch.zeros(0, dtype=torch.int64), "boxes": torch.zeros(0, 4), "image_id": torch.tensor(2)}]
    detections = [{"labels": torch.tensor([0, 1, 1, 0]),
                   "boxes": torch.tensor([[0.2, 0.2, 0.4, 0.4],      # on ground truth 0, right class: IoU 1
                                          [0.2, 0.2, 0.4, 0.4],      # on ground truth 0, wrong class: 0
                                          [0.65, 0.6, 0.85, 0.8],    # shifted from ground truth 1: 0.6
                                          [0.0, 0.0, 0.1, 0.1]]),    # below min_score: dropped
                   "scores": torch.tensor([0.9, 0.7, 0.5, 0.01])},
                  {"labels": torch.tensor([0]), "boxes": torch.tensor([[0.2, 0.2, 0.4, 0.4]]),
                   "scores": torch.tensor([0.6])}]
    dets = detection_ious(detections, targets, min_score=0.05)
    assert dets.image_id.tolist() == [1, 1, 1, 2]
    assert dets.iou.tolist() == pytest.approx([1.0, 0.0, 0.6, 0.0], abs=1e-6)
    assert dets.score.tolist() == pytest.approx([0.9, 0.7, 0.5, 0.6])


# ---------------------------------------------------------------- summaries and verdicts
def _records(seeds=(0, 1, 2)) -> tuple[MatchRecords, dict[str, list[RunResult]]]:
    """VFL: score unrelated to IoU (rho = -1 on 4 pairs), over-confident detections;
    MAL: score ordered as IoU (rho = 1), calibrated detections; MAL gains at AP75, not at AP50."""
    iou = [0.2, 0.4, 0.6, 0.8]
    pairs, dets, results = [], [], {}
    for setting, scores, det_scores in (("VFL", [0.4, 0.3, 0.2, 0.1], [0.9] * 4),
                                        ("MAL", [0.1, 0.2, 0.3, 0.4], [0.25] * 4)):
        results[setting] = []
        for seed in seeds:
            for epoch in (1, 3):
                pairs.append(pd.DataFrame({"setting": setting, "seed": seed, "epoch": epoch, "image_id": 0,
                                           "iou": iou, "score": scores}))
                # one of four detections at IoU >= 0.75: ECE(0.75) = |0.25 - score|
                dets.append(pd.DataFrame({"setting": setting, "seed": seed, "epoch": epoch, "image_id": 0, "label": 0,
                                          "score": det_scores, "iou": [0.8, 0.6, 0.1, 0.0]}))
            ap50 = 0.50 + 0.01 * seed
            ap75 = 0.20 + 0.01 * seed + (0.05 + 0.01 * seed if setting == "MAL" else 0.0)
            results[setting].append(RunResult(key=f"{setting}{seed}", spec={"seed": seed}, history=[],
                                              final={"AP": 0.3, "AP50": ap50, "AP75": ap75}, seconds=1.0,
                                              checkpoint="", provenance={}))
    return MatchRecords(pd.concat(pairs, ignore_index=True), pd.concat(dets, ignore_index=True), 0.05), results


def test_run_summary_known_values():
    records, _ = _records()
    summary = run_summary(records, score_threshold=0.1)
    assert len(summary) == 2 * 3 * 2
    vfl = summary[summary.setting == "VFL"]
    mal = summary[summary.setting == "MAL"]
    assert vfl.spearman.tolist() == pytest.approx([-1.0] * 6) and mal.spearman.tolist() == pytest.approx([1.0] * 6)
    assert vfl.confident_poor_share.tolist() == pytest.approx([0.5] * 6)  # IoU 0.2 and 0.4 scored above 0.25
    assert mal.confident_poor_share.tolist() == pytest.approx([0.0] * 6)
    assert vfl.ece_75.tolist() == pytest.approx([0.65] * 6) and mal.ece_75.tolist() == pytest.approx([0.0] * 6)
    assert vfl.ece_50.tolist() == pytest.approx([0.4] * 6) and mal.ece_50.tolist() == pytest.approx([0.25] * 6)
    assert (summary.detections == 4).all() and (summary.matches == 4).all()
    high = run_summary(records, score_threshold=0.5)  # MAL's detections (score 0.25) drop out
    assert high[high.setting == "MAL"].ece_75.isna().all() and (high[high.setting == "MAL"].detections == 0).all()
    with pytest.raises(ValueError, match="below"):
        run_summary(records, score_threshold=0.01)


def test_paired_verdicts_and_line():
    records, results = _records()
    summary = run_summary(records, score_threshold=0.1)
    table = paired_verdicts(results, summary, baseline="VFL", candidate="MAL").set_index("metric")
    assert table.loc["spearman", "difference"] == pytest.approx(2.0)
    assert table.loc["ece_75", "difference"] == pytest.approx(-65.0)  # percent points
    assert table.loc[["spearman", "ece_75", "confident_poor_share", "ece_50"], "verdict"].tolist() == ["better"] * 4
    assert table.loc["AP50", "verdict"] == "no clear difference"
    assert table.loc["AP75", "verdict"] == "better" and table.loc["AP75-AP50", "verdict"] == "better"
    assert table.loc["AP75", "difference"] == pytest.approx(6.0)
    line = verdict_line(table.reset_index())
    assert line.startswith("Score as a predictor of IoU: yes") and "AP75 gains significantly more" in line


def test_verdicts_with_one_seed_or_missing_values():
    records, results = _records(seeds=(0,))
    table = paired_verdicts(results, run_summary(records, score_threshold=0.1), "VFL", "MAL")
    assert set(table.verdict) == {"one seed"}
    assert verdict_line(table).startswith("one seed only")
    records, results = _records()
    table = paired_verdicts(results, run_summary(records, score_threshold=0.5), "VFL", "MAL").set_index("metric")
    assert table.loc["ece_75", "verdict"] == "not measured" and table.loc["spearman", "verdict"] == "better"
    assert "not measured" in verdict_line(table.reset_index())


def test_figures_draw(tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    from deim.analysis.match_quality_plots import plot_epoch_curves, plot_pair_histograms, plot_reliability
    from deim.analysis.match_quality_runs import epoch_table

    records, _ = _records()
    summary = run_summary(records, score_threshold=0.1)
    plot_pair_histograms(records.pairs, summary, ["VFL", "MAL"]).savefig(tmp_path / "pairs.png")
    plot_reliability(records.detections, summary, ["VFL", "MAL"], 3, 0.1).savefig(tmp_path / "rel.png")
    ax = plot_epoch_curves(summary, "spearman")
    assert [line.get_ydata().tolist() for line in ax.get_lines()] == [[-1.0, -1.0], [1.0, 1.0]]
    table = epoch_table(summary)
    assert table.epoch.tolist() == [2, 4, 2, 4] and table["ECE@0.75 (%)"].tolist()[0] == "65.000 ± 0.000"


def test_epoch_names():
    assert epoch_names([5, 1, 3]) == {1: "early (epoch 2)", 3: "middle (epoch 4)", 5: "final (epoch 6)"}
    assert epoch_names([0, 1]) == {0: "early (epoch 1)", 1: "final (epoch 2)"}


# ---------------------------------------------------------------- a run folder, without training
def test_run_probe_reads_snapshots(tmp_path):
    from deim import build_model
    from deim.analysis.match_quality_runs import RunProbe, measure_runs
    from deim.engine.data_build import build_eval_data
    from deim.engine.checkpointing import snapshot_path
    from deim.experiments.runs import RunCache, RunSpec

    spec = RunSpec(scale="smoke", loss="mal", mosaic_prob=0.0, mixup_prob=0.0)
    cache = RunCache(tmp_path)
    cfg = spec.train_config()
    val, _ = build_eval_data(cfg.data, seed=cfg.seed)
    folder = cache.folder(spec)
    snapshot_path(folder, 0).parent.mkdir(parents=True)
    torch.save({"label_map": val.label_map.to_dict()}, folder / "last.pth")
    torch.manual_seed(0)
    model = build_model(cfg.preset, **cfg.model, num_classes=val.label_map.num_classes)
    torch.save({"epoch": 0, "ema": model.state_dict()}, snapshot_path(folder, 0))

    probe = RunProbe(spec, cache)
    assert probe.epochs == tuple(cfg.snapshot_epochs) and 0 in probe.epochs
    records = measure_runs({"MAL": [spec]}, cache, min_score=0.0, epochs=[0], progress=False)
    boxes = sum(len(t["labels"]) for _, targets in probe.loader for t in targets)
    assert len(records.pairs) == boxes and records.pairs.iou.between(0, 1).all()
    assert records.pairs.score.between(0, 1).all() and set(records.pairs.setting) == {"MAL"}
    assert len(records.detections) == len(probe.loader.dataset) * probe.postprocessor.num_top_queries
    with pytest.raises(FileNotFoundError, match="snapshot of epoch 1"):
        probe.model_at(1)
