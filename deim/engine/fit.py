"""The training run: model, data, optimiser, schedules, EMA, evaluation, checkpoints, resume.

``Trainer(cfg).fit()`` trains the preset of ``cfg`` with its paper schedule (rescaled when
asked) on one CPU/GPU or, under ``torchrun``, on several processes with DDP, and returns the
per-epoch history. Every epoch writes ``last.pth`` atomically (and ``best.pth`` on a new best
AP) into ``cfg.output_dir``, plus one line of ``log.jsonl`` / ``log.csv`` with every loss term,
the LR, images/s, wall time and, when evaluated, the 12 COCO stats of the EMA model.

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
import torch.distributed as dist
from torch import nn

from deim.engine.config import TrainConfig
from deim.data.labels import LabelMap
from deim.engine.backbone_pretrain import pretrained_backbone
from deim.engine.checkpoint_repair import prepare_run_folder
from deim.engine.checkpointing import FORMAT, atomic_save, load_training_state
from deim.engine.console import epoch_line
from deim.engine.data_build import build_training_data
from deim.engine.distributed import DistInfo, barrier, init_distributed
from deim.engine.ema import ModelEMA, unwrap
from deim.engine.inference import capped_top_k
from deim.engine.input_sizes import training_sizes
from deim.engine.lr_schedule import FlatCosineScheduler
from deim.engine.param_groups import OptimizerConfig, build_optimizer
from deim.engine.resume_check import check_resume_matches
from deim.engine.run_history import RunLog
from deim.engine.schedules import TrainSchedule
from deim.engine.seeding import rng_state, seed_everything, set_rng_state
from deim.engine.train_loop import NonFiniteGuard, TrainingState, evaluate_coco, train_one_epoch
from deim.models.backbone_blocks import freeze_batch_norm
from deim.losses.build import build_criterion
from deim.models.build import build_model, build_postprocessor
from deim.models.checkpoint import load_backbone_weights, load_checkpoint
from deim.models.query_budget import check_query_budget
from deim.weights import resolve_weights


def resolve_device(name: str, info: DistInfo) -> torch.device:
    """``auto`` -> the process's CUDA device if there is one, else CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("--device cuda was asked for but torch sees no CUDA device")
        return torch.device("cuda", info.local_rank)
    return torch.device(name)


def _at_image_size(schedule: TrainSchedule, image_size: int) -> TrainSchedule:
    """The schedule with its multi-scale sizes centred on the training size."""
    if schedule.aug.base_size == image_size:
        return schedule
    return dataclasses.replace(schedule, aug=dataclasses.replace(schedule.aug, base_size=image_size))


def snapshot_path(output_dir: str | Path, epoch: int) -> Path:
    """Where a run keeps the EMA weights after ``epoch`` (``TrainConfig.snapshot_epochs``)."""
    return Path(output_dir) / "snapshots" / f"ema_e{epoch:03d}.pth"


class Trainer:
    """One training run of ``cfg`` (see the module docstring)."""

    def __init__(self, cfg: TrainConfig, progress: bool = True) -> None:
        self.cfg = cfg
        self.progress = progress
        self.info = init_distributed(cfg.device)
        self.device = resolve_device(cfg.device, self.info)
        self.schedule = _at_image_size(cfg.resolved_schedule(), cfg.data.image_size)
        if self.schedule.total_batch_size % self.info.world_size:
            raise ValueError(f"total batch size {self.schedule.total_batch_size} is not divisible by the "
                             f"{self.info.world_size} processes")
        check_query_budget(cfg.preset, cfg.model, training_sizes(self.schedule, cfg.data.image_size))  # before any work
        seed_everything(cfg.seed, self.info.rank)
        self.data = build_training_data(cfg.data, self.schedule.aug, seed=cfg.seed,
                                        batch_size=self.schedule.total_batch_size // self.info.world_size)
        self.label_map: LabelMap = self.data.label_map
        overrides = dict(cfg.model, num_classes=self.label_map.num_classes)
        torch.manual_seed(cfg.seed)  # the same initial weights in every process
        model = build_model(cfg.preset, **overrides)
        if cfg.backbone_pretrain is not None:
            path = pretrained_backbone(cfg.preset, cfg.model, cfg.backbone_pretrain, progress=progress)
            model.backbone.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        if cfg.backbone_weights:
            n = load_backbone_weights(model.backbone, cfg.backbone_weights)
            if self.info.is_main:
                print(f"[deim] backbone: {n} tensors from {cfg.backbone_weights}")
        if cfg.finetune:
            report = load_checkpoint(model, resolve_weights(cfg.finetune, progress=self.info.is_main),  # NAME|PATH|URL
                                     num_classes_changed_ok=True)
            if self.info.is_main:
                print(f"[deim] fine-tuning from {cfg.finetune}: {report}")
        if cfg.freeze_bn:  # fixed statistics: per-sample outputs no longer depend on the batch
            model = freeze_batch_norm(model)
        elif cfg.sync_bn and self.info.enabled:
            if cfg.device == "cpu" or not torch.cuda.is_available():
                raise ValueError("sync_bn needs CUDA (torch's SyncBatchNorm has no CPU kernel); use freeze_bn on CPU")
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.model = model.to(self.device)
        self.criterion = build_criterion(cfg.preset, **{**overrides, **cfg.criterion}).to(self.device)
        self.postprocessor = build_postprocessor(cfg.preset, **capped_top_k(cfg.preset, overrides))
        self.ddp = (nn.parallel.DistributedDataParallel(self.model, device_ids=None if self.device.type == "cpu"
                                                        else [self.device.index], find_unused_parameters=True)
                    if self.info.enabled else self.model)
        s = self.schedule
        no_decay_bias = cfg.preset in ("deim_dfine_n", "dfine_n")  # the official N config exempts biases
        self.optimizer = build_optimizer(self.model, OptimizerConfig(s.lr, s.backbone_lr, s.weight_decay,
                                                                     no_decay_bias=no_decay_bias))
        self.iters_per_epoch = len(self.data.train_loader)
        if self.iters_per_epoch == 0:
            raise ValueError(f"the training set ({len(self.data.train_loader.dataset)} images) is smaller than "
                             f"one batch ({s.total_batch_size}); lower --batch-size")
        self.lr_scheduler = FlatCosineScheduler(self.optimizer, s.lr_schedule(self.iters_per_epoch))
        self.ema = ModelEMA(self.model, s.ema_decay, s.ema_warmups)
        self.amp_dtype, self.scaler = self._amp()
        self.output_dir = Path(cfg.output_dir)
        self.start_epoch, self.iteration = 0, 0
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, float] = {}
        if self.info.is_main:  # temporaries of a killed run removed, best.pth restored (checkpoint_repair)
            for note in prepare_run_folder(self.output_dir, cfg.resume):
                print(f"[deim] {note}")
        if cfg.resume:
            self._resume(cfg.resume)

    def _amp(self) -> tuple[torch.dtype | None, torch.amp.GradScaler | None]:
        if not self.cfg.amp or self.device.type != "cuda":
            if self.cfg.amp and self.info.is_main:
                print("[deim] --amp ignored on CPU: training in fp32")
            return None, None
        if torch.cuda.is_bf16_supported():
            return torch.bfloat16, None
        return torch.float16, torch.amp.GradScaler("cuda")

    # ------------------------------------------------------------------ checkpoints
    def rng_states(self) -> list[dict[str, Any]]:
        """Every process's RNG states (Python, NumPy, torch, CUDA, the train loader's generator),
        indexed by rank. A collective under DDP: every process must call it."""
        rng = rng_state()
        rng["loader"] = self.data.train_loader.generator.get_state()
        if not self.info.enabled:
            return [rng]
        gathered: list[Any] = [None] * self.info.world_size
        dist.all_gather_object(gathered, rng)
        return gathered

    def state(self, epoch: int, rngs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """The checkpoint after ``epoch`` (``rngs``: from :meth:`rng_states`, default this process's)."""
        rngs = rngs if rngs is not None else self.rng_states()
        return {"model": unwrap(self.model).state_dict(), "ema": self.ema.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler is not None else None,
                "last_epoch": epoch, "epoch": epoch, "iteration": self.iteration,
                "rng": rngs[0], "rng_per_rank": rngs,
                "config": self.cfg.to_dict(), "label_map": self.label_map.to_dict(), "best": dict(self.best),
                "history": list(self.history), "format": FORMAT}

    def _resume(self, path: str) -> None:
        state = load_training_state(path, map_location=self.device)
        check_resume_matches(state.get("config"), self.cfg.preset, self.cfg.model, path)
        saved = LabelMap.from_dict(state["label_map"])
        if saved != self.label_map:
            raise ValueError(f"{path} was trained with other categories ({saved.num_classes} classes) than this "
                             f"dataset ({self.label_map.num_classes}); use --finetune to start from its weights")
        unwrap(self.model).load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.start_epoch, self.iteration = int(state["epoch"]) + 1, int(state["iteration"])
        self.history, self.best = list(state.get("history", [])), dict(state.get("best", {}))
        per_rank = state.get("rng_per_rank") or [state["rng"]]
        if len(per_rank) != self.info.world_size and self.info.is_main:
            print(f"[deim] note: {path} was written by {len(per_rank)} process(es), this run has "
                  f"{self.info.world_size}: training continues, but not bit for bit")
        rng = dict(per_rank[self.info.rank % len(per_rank)])
        self.data.train_loader.generator.set_state(rng.pop("loader").cpu())
        set_rng_state({k: (v.cpu() if torch.is_tensor(v) else v) for k, v in rng.items()})
        if self.info.is_main:
            print(f"[deim] resumed from {path}: continuing at epoch {self.start_epoch}, iteration {self.iteration}")

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
        train = TrainingState(self.ddp, self.criterion, self.data.train_loader, self.optimizer, self.device,
                              lr_scheduler=self.lr_scheduler, ema=self.ema, scaler=self.scaler,
                              amp_dtype=self.amp_dtype, clip_max_norm=self.schedule.clip_max_norm,
                              guard=NonFiniteGuard(self.cfg.max_nonfinite), progress=self.progress)
        for epoch in range(self.start_epoch, epochs):
            self.data.train_loader.set_epoch(epoch)
            stats = train_one_epoch(train, epoch, self.iteration)
            self.iteration += self.iters_per_epoch
            row: dict[str, Any] = {"epoch": epoch, "stage": self.schedule.aug.stage(epoch), "lr": stats.lr,
                                   "train_seconds": round(stats.seconds, 3),
                                   "images_per_s": round(stats.images_per_s, 2),
                                   "skipped_steps": stats.skipped_steps,
                                   "positives_per_image": stats.positives_per_image, **stats.losses}
            if (epoch + 1) % self.cfg.eval_every == 0 or epoch == epochs - 1:
                t0 = time.perf_counter()
                row.update(self.evaluate())
                row["eval_seconds"] = round(time.perf_counter() - t0, 3)
            self.history.append(row)
            improved = "AP" in row and row["AP"] > self.best.get("AP", -1.0)
            if improved:
                self.best = {"epoch": epoch, "AP": row["AP"]}
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
                atomic_save({"epoch": epoch, "ema": self.ema.module.state_dict()}, snapshot_path(self.output_dir, epoch))
            barrier()
        log.close()
        return self.history
