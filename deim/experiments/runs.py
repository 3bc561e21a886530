"""Experiment runs keyed by a hash of their full config, and the run cache that stores them.

A :class:`RunSpec` names one setting of the paper's ablations (classification loss, γ, mosaic
and mixup probabilities, budget, seed) at a scale. :meth:`RunSpec.train_config` resolves it,
through the scale's :class:`~deim.experiments.protocol.Protocol`, into a complete
:class:`~deim.engine.config.TrainConfig`; the run's key is the SHA-1 of that config, so two notebooks
asking for the same setting share one run, and a changed protocol never reuses stale results.

The cache folder (``$DEIM_CACHE/runs`` or ``~/.cache/deim/runs``) holds one folder per key::

    <key>/config.yaml      the resolved TrainConfig
    <key>/log.jsonl        per-epoch metrics written by the trainer while it runs
    <key>/result.json      written last, atomically: spec, history, final stats, provenance
    <key>/last.pth         the final checkpoint (model, EMA, optimizer ...)

A run without ``result.json`` is unfinished: asking for it again resumes from ``last.pth``.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deim.cache import atomic_path, cache_dir, cache_entry, content_key, sha256_file
from deim.data.aug_schedule import STANDARD_OPS
from deim.engine.config import DataConfig, TrainConfig, rescale_epochs
from deim.experiments.protocol import Protocol, get_protocol, snapshot_epochs
from deim.presets.catalog import get_preset
from deim.presets.models import baseline_criterion


@dataclass(frozen=True)
class RunSpec:
    """One training run of an ablation.

    Args:
        scale: ``smoke``, ``reduced`` or ``full`` (selects the protocol).
        loss: ``mal`` (DEIM) or ``vfl`` (the baselines' loss).
        gamma: γ of the classification loss (MAL default 1.5; VFL 2.0).
        mosaic_prob / mixup_prob: Dense O2O probabilities inside the Dense O2O stage
            (0 and 0 = standard augmentation there, i.e. plain O2O).
        epoch_factor: budget in units of the protocol's epochs (the "2x" baselines use 2).
        seed: seed of the run (data order, augmentation, initialisation).
        data_root: COCO folder (``full`` scale only).
    """

    scale: str
    loss: str = "mal"
    gamma: float = 1.5
    mosaic_prob: float = 0.5
    mixup_prob: float = 0.5
    epoch_factor: int = 1
    seed: int = 0
    data_root: str | None = None

    def __post_init__(self) -> None:
        if self.loss not in ("mal", "vfl"):
            raise ValueError(f"loss must be 'mal' or 'vfl', got {self.loss!r}")
        if self.epoch_factor < 1:
            raise ValueError(f"epoch_factor must be >= 1, got {self.epoch_factor}")

    @property
    def protocol(self) -> Protocol:
        return get_protocol(self.scale)

    @property
    def dense_o2o(self) -> bool:
        return self.mosaic_prob > 0 or self.mixup_prob > 0

    def label(self) -> str:
        """A short human-readable name: ``MAL γ=1.5, mosaic 0.5, mixup 0.5, 1x``."""
        loss = f"MAL γ={self.gamma:g}" if self.loss == "mal" else "VFL"
        return f"{loss}, mosaic {self.mosaic_prob:g}, mixup {self.mixup_prob:g}, {self.epoch_factor}x"

    def criterion_overrides(self) -> dict[str, Any]:
        """``deim.build_criterion`` overrides selecting the classification loss on the same model."""
        if self.loss == "mal":
            return {"criterion.gamma": self.gamma}
        vfl = baseline_criterion(get_preset(self.protocol.preset).model)
        return {"criterion.losses": list(vfl.losses), "criterion.weight_dict": dict(vfl.weight_dict),
                "criterion.gamma": self.gamma, "criterion.alpha": vfl.alpha}

    def train_config(self, output_dir: str | Path = "") -> TrainConfig:
        """The complete training config of this run (``output_dir`` is not part of the key)."""
        p = self.protocol
        base = get_preset(p.schedule_preset).schedule
        schedule = rescale_epochs(base, p.epochs * self.epoch_factor).scaled_to_batch(p.batch_size)
        changes = {k: getattr(p, k) for k in ("lr", "backbone_lr", "warmup_iter", "ema_warmups", "ema_decay")
                   if getattr(p, k) is not None}
        aug = dataclasses.replace(schedule.aug, mosaic_prob=self.mosaic_prob, mixup_prob=self.mixup_prob,
                                  base_size=p.image_size, base_size_repeat=None)
        if p.standard_ops is not None:
            aug = dataclasses.replace(aug, standard_ops=tuple(p.standard_ops))
        schedule = dataclasses.replace(schedule, aug=aug, **changes)
        if p.dataset == "coco":
            if self.data_root is None:
                raise ValueError(f"scale {self.scale!r} trains on COCO: give the RunSpec a data_root")
            data = DataConfig(dataset="coco", root=self.data_root, image_size=p.image_size, num_workers=p.num_workers)
        else:
            data = DataConfig(dataset="fashion", fashion_scale=p.fashion_scale, image_size=p.image_size,
                              num_workers=p.num_workers, train_subset=p.train_subset, val_subset=p.val_subset,
                              fashion_canvas=dict(p.canvas), val_batch_size=p.val_batch_size)
        weights = os.environ.get(p.backbone_weights_env) if p.backbone_weights_env else None
        return TrainConfig(preset=p.preset, model=dict(p.model), criterion=self.criterion_overrides(), data=data,
                           schedule=schedule, seed=self.seed, eval_every=p.eval_every, output_dir=str(output_dir),
                           backbone_pretrain=p.backbone_pretrain, backbone_weights=weights or None,
                           snapshot_epochs=snapshot_epochs(schedule.epochs, p.snapshots))

    def key(self) -> str:
        """SHA-1 (12 hex digits) of the resolved config: equal settings share a run. A backbone
        weights file enters by its content (SHA-256), not its path."""
        d = self.train_config().to_dict()
        d.pop("output_dir", None)
        # fields added later are left out at their defaults, so the keys of earlier runs stay
        if not d["data"].get("fashion_canvas"):
            d["data"].pop("fashion_canvas", None)
        if tuple(d["schedule"]["aug"].get("standard_ops", STANDARD_OPS)) == STANDARD_OPS:
            d["schedule"]["aug"].pop("standard_ops", None)
        weights = d.pop("backbone_weights", None)
        if weights is not None:
            d["backbone_weights_sha256"] = file_sha256(weights)
        return content_key(d)


@functools.lru_cache(maxsize=8)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    return sha256_file(path)


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's content (memoised while the file is unchanged)."""
    st = Path(path).stat()
    return _sha256(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


@dataclass
class RunResult:
    """What a finished run stored: per-epoch history, final COCO stats, wall time, provenance."""

    key: str
    spec: dict[str, Any]
    history: list[dict[str, Any]]
    final: dict[str, float]
    seconds: float
    checkpoint: str
    provenance: dict[str, Any]

    def curve(self, metric: str = "AP") -> tuple[list[int], list[float]]:
        """``(epochs, values)`` of ``metric`` over the epochs where it was measured."""
        rows = [r for r in self.history if metric in r and r[metric] is not None]
        return [r["epoch"] for r in rows], [float(r[metric]) for r in rows]


class RunCache:
    """Folder of finished and unfinished runs; :meth:`get` reads a run or trains it."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else cache_dir("runs")

    def folder(self, spec: RunSpec) -> Path:
        return cache_entry("runs", spec.key(), self.root)

    def load(self, spec: RunSpec) -> RunResult | None:
        path = self.folder(spec) / "result.json"
        if not path.is_file():
            return None
        return RunResult(**json.loads(path.read_text()))

    def get(self, spec: RunSpec, *, progress: bool = False) -> RunResult:
        """The finished run of ``spec``; trains it (or resumes it) first when needed."""
        found = self.load(spec)
        return found if found is not None else self._train(spec, progress)

    def _train(self, spec: RunSpec, progress: bool) -> RunResult:
        from deim.experiments.execute import train_run  # the engine is imported only when training

        folder = self.folder(spec)
        folder.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        history, final, checkpoint, provenance = train_run(spec.train_config(folder), progress=progress)
        result = RunResult(key=spec.key(), spec=dataclasses.asdict(spec), history=history, final=final,
                           seconds=time.perf_counter() - start, checkpoint=str(checkpoint), provenance=provenance)
        with atomic_path(folder / "result.json") as tmp:
            tmp.write_text(json.dumps(dataclasses.asdict(result), indent=1, default=str))
        return result
