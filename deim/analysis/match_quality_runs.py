"""Match quality of cached experiment runs, at the epochs whose EMA weights each run kept.

Every run of the run cache keeps EMA snapshots after ``TrainConfig.snapshot_epochs``
(``<run folder>/snapshots/ema_eNNN.pth``, NNN the 0-based epoch). :class:`RunProbe` rebuilds a
run's model, its validation data (the labels the run trained with, its validation subset), its
post-processor and its criterion's Hungarian matcher; :func:`measure_runs` collects the matched
pairs and detections (:func:`deim.analysis.match_quality.collect`) of every run and snapshot, and
:func:`run_summary` reduces them to one row per run and epoch. Epochs are 0-based here as in the
training history; figures show ``epoch + 1`` (epochs trained), as ``plot_curves`` does.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from deim.analysis.calibration import expected_calibration_error
from deim.analysis.match_quality import collect, confident_poor_share, spearman
from deim.data.labels import LabelMap
from deim.engine.checkpointing import read_checkpoint, snapshot_path
from deim.engine.config import TrainConfig
from deim.engine.data_build import build_eval_data
from deim.engine.run_preset import resolve_run_preset
from deim.experiments.runs import RunCache, RunSpec
from deim.losses.build import build_criterion
from deim.models.build import build_model, build_postprocessor

IOU_THRESHOLDS: tuple[float, ...] = (0.5, 0.75)


@dataclass
class MatchRecords:
    """Everything measured, long format.

    ``pairs``: ``setting, seed, epoch, image_id, iou, score`` (one row per one-to-one match);
    ``detections``: ``setting, seed, epoch, image_id, label, score, iou`` (one row per detection
    scored at least ``min_score``).
    """

    pairs: pd.DataFrame
    detections: pd.DataFrame
    min_score: float


class RunProbe:
    """A finished run's model at any of its snapshot epochs, with what is needed to probe it."""

    def __init__(self, spec: RunSpec, cache: RunCache | None = None) -> None:
        self.spec = spec
        self.folder: Path = (cache or RunCache()).folder(spec)
        self.cfg: TrainConfig = spec.train_config(self.folder)
        last = self.folder / "last.pth"
        if not last.is_file():
            raise FileNotFoundError(f"run {spec.key()} ({spec.label()}, seed {spec.seed}) has no {last}: "
                                    f"train it first (RunCache().get(spec))")
        self.label_map = LabelMap.from_dict(read_checkpoint(last)["label_map"])  # the labels the run trained with
        self.preset = resolve_run_preset(self.cfg, self.cfg.resolved_schedule(), self.label_map.num_classes)
        _, self.loader = build_eval_data(self.cfg.data, self.label_map, seed=self.cfg.seed)
        self.postprocessor = build_postprocessor(self.preset.postprocessor)
        self.matcher = build_criterion(self.preset.criterion).matcher

    @property
    def epochs(self) -> tuple[int, ...]:
        """The run's snapshot epochs (0-based)."""
        return tuple(self.cfg.snapshot_epochs)

    def model_at(self, epoch: int, device: torch.device | str = "cpu") -> nn.Module:
        """The EMA model after ``epoch`` (0-based), in eval mode."""
        path = snapshot_path(self.folder, epoch)
        if not path.is_file():
            raise FileNotFoundError(f"no EMA snapshot of epoch {epoch} at {path}; this run keeps "
                                    f"{self.epochs or 'none'} (TrainConfig.snapshot_epochs)")
        model = build_model(self.preset.model)
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True)["ema"])
        return model.to(device).eval()

    def measure(self, epoch: int, device: torch.device | str = "cpu",
                min_score: float = 0.05) -> tuple[pd.DataFrame, pd.DataFrame]:
        """``(pairs, detections)`` of the model after ``epoch`` on the run's validation data."""
        return collect(self.model_at(epoch, device), self.postprocessor, self.matcher, self.loader, device, min_score)


def measure_runs(settings: dict[str, Sequence[RunSpec]], cache: RunCache | None = None,
                 device: torch.device | str = "cpu", min_score: float = 0.05,
                 epochs: Iterable[int] | None = None, progress: bool = True) -> MatchRecords:
    """Pairs and detections of every run of ``settings`` (row name -> one spec per seed) at each of
    its snapshot epochs (or only ``epochs``); the runs must be finished (``RunCache().get``)."""
    pairs, detections = [], []
    for name, specs in settings.items():
        for spec in specs:
            probe = RunProbe(spec, cache)
            for epoch in probe.epochs if epochs is None else tuple(epochs):
                if progress:
                    print(f"[match quality] {name} seed {spec.seed} epoch {epoch + 1}", flush=True)
                p, d = probe.measure(epoch, device, min_score)
                key = {"setting": name, "seed": spec.seed, "epoch": epoch}
                pairs.append(p.assign(**key))
                detections.append(d.assign(**key))
    order = ["setting", "seed", "epoch"]
    p, d = pd.concat(pairs, ignore_index=True), pd.concat(detections, ignore_index=True)
    return MatchRecords(p[order + [c for c in p.columns if c not in order]],
                        d[order + [c for c in d.columns if c not in order]], min_score)


def run_summary(records: MatchRecords, score_threshold: float | None = None, bins: int = 10,
                iou_thresholds: Sequence[float] = IOU_THRESHOLDS) -> pd.DataFrame:
    """One row per ``(setting, seed, epoch)``: ``matches``, ``mean_iou``, ``spearman``,
    ``confident_poor_share`` (matched pairs); ``detections`` above ``score_threshold`` (default the
    records' ``min_score``) and ``ece_50``, ``ece_75`` ... (``ece_<100 t>``: correct = IoU >= t)."""
    threshold = records.min_score if score_threshold is None else score_threshold
    if threshold < records.min_score:
        raise ValueError(f"score_threshold {threshold} is below the {records.min_score} the detections were kept at")
    keys = ["setting", "seed", "epoch"]
    dets = records.detections[records.detections.score >= threshold]
    by_run = {k: g for k, g in dets.groupby(keys, sort=False)}
    rows = []
    for key, group in records.pairs.groupby(keys, sort=False):
        row = dict(zip(keys, key), matches=len(group), mean_iou=float(group.iou.mean()),
                   spearman=spearman(group.iou, group.score),
                   confident_poor_share=confident_poor_share(group.iou, group.score))
        d = by_run.get(key, dets.iloc[:0])
        row["detections"] = len(d)
        for t in iou_thresholds:
            row[f"ece_{round(100 * t)}"] = expected_calibration_error(d.score, d.iou >= t, bins)
        rows.append(row)
    return pd.DataFrame(rows)


def epoch_names(epochs: Iterable[int]) -> dict[int, str]:
    """``early`` / ``middle`` / ``final`` (more middles when there are more) for 0-based epochs,
    with the 1-based number of epochs trained: ``{1: "early (epoch 2)", ...}``."""
    ordered = sorted(set(epochs))
    names = {}
    for i, e in enumerate(ordered):
        word = "final" if i == len(ordered) - 1 else "early" if i == 0 else "middle"
        names[e] = f"{word} (epoch {e + 1})"
    return names


def epoch_table(summary: pd.DataFrame) -> pd.DataFrame:
    """:func:`run_summary` as mean ± std over seeds per ``(setting, epoch)``; shares and ECEs in
    percent, ``epoch`` as epochs trained (1-based)."""
    percent = {"confident_poor_share": "poor & confident (%)", "ece_50": "ECE@0.5 (%)", "ece_75": "ECE@0.75 (%)"}
    plain = {"spearman": "Spearman ρ", "mean_iou": "mean IoU of matches"}
    rows = []
    for (setting, epoch), group in summary.groupby(["setting", "epoch"], sort=False):
        row: dict[str, object] = {"setting": setting, "epoch": int(epoch) + 1, "seeds": len(group),
                                  "matches": int(group.matches.sum()), "detections": int(group.detections.sum())}
        for column, label in {**plain, **percent}.items():
            if column not in group:
                continue
            v = group[column].to_numpy(dtype=float) * (100.0 if column in percent else 1.0)
            if np.isnan(v).all():
                row[label] = "n/a"
            else:
                v = v[~np.isnan(v)]
                row[label] = f"{v.mean():.3f} ± {v.std(ddof=1):.3f}" if len(v) > 1 else f"{v.mean():.3f}"
        rows.append(row)
    return pd.DataFrame(rows)
