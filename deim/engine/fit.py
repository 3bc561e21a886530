"""The training run: ``Trainer(cfg).fit()``.

``Trainer(cfg).fit()`` trains the preset of ``cfg`` with its paper schedule (rescaled when
asked) on one CPU/GPU or, under ``torchrun``, on several processes with DDP, and returns the
per-epoch history. The set-up is :func:`deim.engine.run_setup.build_run`; one epoch is
:func:`deim.engine.train_loop.train_one_epoch` on the run's :class:`TrainingState`; checkpoints
(writing, crash repair, resume, start weights) are :mod:`deim.engine.checkpointing`. Every epoch
writes ``last.pth`` atomically (and ``best.pth`` on a new best AP) into ``cfg.output_dir``, plus
one line of ``log.jsonl`` / ``log.csv`` with every loss term, the LR, images/s, wall time and,
when evaluated, the 12 COCO stats of the EMA model.

Determinism: ``cfg.seed`` seeds Python, NumPy and torch (``seed + rank``), the sampler order
(``(seed, epoch)``), every sample's augmentation (``(seed, epoch, index)``), the batch-level
mixup / multi-scale draws and the DataLoader workers. The RNG states are stored in each
checkpoint (every process's, under DDP), so resuming from ``last.pth`` continues exactly: on CPU,
E epochs straight and k epochs + resume for E − k give identical weights (``tests/test_resume.py``).
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deim.data.labels import LabelMap
from deim.engine.checkpointing import (RunProgress, gather_rng_states, resume_training, snapshot_path,
                                       training_checkpoint)
from deim.engine.config import TrainConfig
from deim.engine.console import epoch_line
from deim.engine.data_build import TrainingData
from deim.engine.distributed import DistInfo, barrier
from deim.engine.ema import ModelEMA
from deim.engine.run_folder import atomic_save, prepare_run_folder
from deim.engine.run_history import RunLog
from deim.engine.run_setup import RunParts, build_run
from deim.engine.train_loop import NonFiniteGuard, evaluate_coco, train_one_epoch
from deim.presets.training import TrainSchedule


class Trainer:
    """One training run of ``cfg`` (see the module docstring): its parts (:attr:`parts`, from
    :func:`build_run`) and its progress (:attr:`run`: next epoch, iteration, history, best AP)."""

    def __init__(self, cfg: TrainConfig, progress: bool = True) -> None:
        self.cfg = cfg
        self.progress = progress
        self.parts: RunParts = build_run(cfg, progress)
        self.output_dir = Path(cfg.output_dir)
        if self.info.is_main:  # temporaries of a killed run removed, best.pth restored
            for note in prepare_run_folder(self.output_dir, cfg.resume):
                print(f"[deim] {note}")
        self.run = (resume_training(cfg.resume, self.parts.train, cfg, self.label_map, self.info)
                    if cfg.resume else RunProgress())

    # ------------------------------------------------------------------ the run's parts, its progress
    @property
    def info(self) -> DistInfo:
        return self.parts.info

    @property
    def schedule(self) -> TrainSchedule:
        return self.parts.schedule

    @property
    def data(self) -> TrainingData:
        return self.parts.data

    @property
    def label_map(self) -> LabelMap:
        return self.parts.label_map

    @property
    def model(self) -> nn.Module:
        return self.parts.model

    @property
    def postprocessor(self) -> nn.Module:
        return self.parts.postprocessor

    @property
    def iters_per_epoch(self) -> int:
        return self.parts.iters_per_epoch

    @property
    def device(self) -> torch.device:
        return self.parts.train.device

    @property
    def criterion(self) -> nn.Module:
        return self.parts.train.criterion

    @property
    def ema(self) -> ModelEMA:
        return self.parts.train.ema

    @property
    def start_epoch(self) -> int:
        return self.run.start_epoch

    @property
    def iteration(self) -> int:
        return self.run.iteration

    @property
    def history(self) -> list[dict[str, Any]]:
        return self.run.history

    @property
    def best(self) -> dict[str, float]:
        return self.run.best

    # ------------------------------------------------------------------ checkpoints
    def rng_states(self) -> list[dict[str, Any]]:
        """Every process's RNG states, indexed by rank (a collective under DDP)."""
        return gather_rng_states(self.parts.train, self.info)

    def state(self, epoch: int, rngs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """The checkpoint after ``epoch`` (``rngs``: from :meth:`rng_states`, default this process's)."""
        rngs = rngs if rngs is not None else self.rng_states()
        return training_checkpoint(self.parts.train, self.run, epoch, rngs, self.cfg.to_dict(), self.label_map)

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def evaluate(self, model: nn.Module | None = None) -> dict[str, float]:
        """COCO stats (fractions) of ``model`` (default: the EMA model) on the validation set."""
        model = model if model is not None else self.ema.module
        return evaluate_coco(model, self.postprocessor, self.data.val_loader, self.data.val.ann_file,
                             self.label_map, self.device, progress=self.progress)

    # ------------------------------------------------------------------ training
    def fit(self, max_epochs: int | None = None) -> list[dict[str, Any]]:
        """Train from ``start_epoch`` to the schedule's end (or ``max_epochs`` epochs in total)."""
        epochs = self.schedule.epochs if max_epochs is None else min(max_epochs, self.schedule.epochs)
        log = RunLog(self.output_dir, enabled=self.info.is_main)
        train = dataclasses.replace(self.parts.train, guard=NonFiniteGuard(self.cfg.max_nonfinite))
        for epoch in range(self.run.start_epoch, epochs):
            self.data.train_loader.set_epoch(epoch)
            stats = train_one_epoch(train, epoch, self.run.iteration)
            self.run.iteration += self.iters_per_epoch
            row: dict[str, Any] = {"epoch": epoch, "stage": self.schedule.aug.stage(epoch), "lr": stats.lr,
                                   "train_seconds": round(stats.seconds, 3),
                                   "images_per_s": round(stats.images_per_s, 2),
                                   "skipped_steps": stats.skipped_steps,
                                   "positives_per_image": stats.positives_per_image, **stats.losses}
            if (epoch + 1) % self.cfg.eval_every == 0 or epoch == epochs - 1:
                t0 = time.perf_counter()
                row.update(self.evaluate())
                row["eval_seconds"] = round(time.perf_counter() - t0, 3)
            self.run.history.append(row)
            improved = "AP" in row and row["AP"] > self.run.best.get("AP", -1.0)
            if improved:
                self.run.best = {"epoch": epoch, "AP": row["AP"]}
            log.write(row)
            if self.info.is_main:
                print(epoch_line(row, self.schedule.epochs), flush=True)  # stays on screen; the bars do not
            if (epoch + 1) % self.cfg.checkpoint_every == 0 or epoch == epochs - 1:
                rngs = self.rng_states()  # every process takes part, the main one writes
                if self.info.is_main:
                    state = self.state(epoch, rngs)
                    atomic_save(state, self.output_dir / "last.pth")
                    if improved:
                        atomic_save(state, self.output_dir / "best.pth")
            if epoch in self.cfg.snapshot_epochs and self.info.is_main:
                atomic_save({"epoch": epoch, "ema": self.ema.module.state_dict()},
                            snapshot_path(self.output_dir, epoch))
            barrier()
        log.close()
        return self.history
