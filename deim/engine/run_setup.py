"""The set-up of a training run: :func:`build_run` turns a ``TrainConfig`` into the run's parts.

In this order, which fixes the initial weights and every RNG stream (changing it changes every
run): processes (DDP under ``torchrun``) and device, the schedule at the training image size, the
preset resolved once (:func:`deim.presets.resolve.resolve_preset`) and its query budget checked
(before any work), seeds, data, the run's preset (:func:`deim.engine.run_preset.resolve_run_preset`:
the number of classes, the criterion overrides), the model (``torch.manual_seed(cfg.seed)``, so
every process starts alike) and its start weights, BatchNorm (frozen or synchronised), criterion,
post-processor, the DDP wrapper, optimiser, LR schedule, EMA and AMP.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from deim.data.labels import LabelMap
from deim.engine.checkpointing import load_start_weights
from deim.engine.config import TrainConfig
from deim.engine.data_build import TrainingData, build_training_data
from deim.engine.distributed import DistInfo, init_distributed
from deim.engine.ema import ModelEMA
from deim.engine.input_sizes import training_sizes
from deim.engine.lr_schedule import FlatCosine, FlatCosineScheduler
from deim.engine.param_groups import build_optimizer
from deim.engine.run_preset import RunPreset, resolve_run_preset
from deim.engine.seeding import seed_everything
from deim.engine.train_loop import NonFiniteGuard, TrainingState
from deim.losses.build import build_criterion
from deim.models.backbone_blocks import freeze_batch_norm
from deim.models.build import build_model, build_postprocessor
from deim.models.query_budget import check_query_budget
from deim.presets.resolve import resolve_preset
from deim.presets.training import TrainSchedule


@dataclass
class RunParts:
    """What :func:`build_run` returns: the run's config, processes, resolved preset (with the
    schedule at the training size) and data, the bare model (``train.model`` is its DDP wrapper
    under DDP), the post-processor and the training state the loop steps."""

    cfg: TrainConfig
    info: DistInfo
    preset: RunPreset
    data: TrainingData
    model: nn.Module
    postprocessor: nn.Module
    train: TrainingState
    iters_per_epoch: int

    @property
    def schedule(self) -> TrainSchedule:
        return self.preset.schedule

    @property
    def label_map(self) -> LabelMap:
        return self.data.label_map


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


def build_run(cfg: TrainConfig, progress: bool = True) -> RunParts:
    """Every part of the run of ``cfg``, built in the order of the module docstring."""
    info = init_distributed(cfg.device)
    device = resolve_device(cfg.device, info)
    schedule = _at_image_size(cfg.resolved_schedule(), cfg.data.image_size)
    if schedule.total_batch_size % info.world_size:
        raise ValueError(f"total batch size {schedule.total_batch_size} is not divisible by the "
                         f"{info.world_size} processes")
    resolved = resolve_preset(cfg.preset, **cfg.model)  # the one resolution of the run's preset
    check_query_budget(resolved.model, training_sizes(schedule, cfg.data.image_size))  # before any work
    seed_everything(cfg.seed, info.rank)
    data = build_training_data(cfg.data, schedule.aug, seed=cfg.seed,
                               batch_size=schedule.total_batch_size // info.world_size)
    preset = resolve_run_preset(cfg, schedule, data.label_map.num_classes, resolved)
    torch.manual_seed(cfg.seed)  # the same initial weights in every process
    model = build_model(preset.model)
    load_start_weights(model, cfg, info, progress=progress)
    model = _batch_norm(model, cfg, info).to(device)
    criterion = build_criterion(preset.criterion).to(device)
    postprocessor = build_postprocessor(preset.postprocessor)
    ddp = (nn.parallel.DistributedDataParallel(model, device_ids=None if device.type == "cpu" else [device.index],
                                               find_unused_parameters=True) if info.enabled else model)
    optimizer = build_optimizer(model, preset.optimizer_config())
    iters_per_epoch = len(data.train_loader)
    if iters_per_epoch == 0:
        raise ValueError(f"the training set ({len(data.train_loader.dataset)} images) is smaller than "
                         f"one batch ({schedule.total_batch_size}); lower --batch-size")
    lr_scheduler = FlatCosineScheduler(optimizer, FlatCosine.of(schedule, iters_per_epoch))
    ema = ModelEMA(model, schedule.ema_decay, schedule.ema_warmups)
    amp_dtype, scaler = _amp(cfg.amp, device, info)
    train = TrainingState(ddp, criterion, data.train_loader, optimizer, device, lr_scheduler=lr_scheduler, ema=ema,
                          scaler=scaler, amp_dtype=amp_dtype, clip_max_norm=schedule.clip_max_norm,
                          guard=NonFiniteGuard(cfg.max_nonfinite), progress=progress)
    return RunParts(cfg, info, preset, data, model, postprocessor, train, iters_per_epoch)


def _batch_norm(model: nn.Module, cfg: TrainConfig, info: DistInfo) -> nn.Module:
    """``model`` with frozen BatchNorm (fixed statistics: per-sample outputs no longer depend on the
    batch) or, under DDP with ``sync_bn``, synchronised BatchNorm; else unchanged."""
    if cfg.freeze_bn:
        return freeze_batch_norm(model)
    if cfg.sync_bn and info.enabled:
        if cfg.device == "cpu" or not torch.cuda.is_available():
            raise ValueError("sync_bn needs CUDA (torch's SyncBatchNorm has no CPU kernel); use freeze_bn on CPU")
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model


def _amp(enabled: bool, device: torch.device, info: DistInfo) -> tuple[torch.dtype | None, torch.amp.GradScaler | None]:
    """bf16 where the GPU has it, else fp16 with a loss scaler; fp32 on CPU (with a note) or when off."""
    if not enabled or device.type != "cuda":
        if enabled and info.is_main:
            print("[deim] --amp ignored on CPU: training in fp32")
        return None, None
    if torch.cuda.is_bf16_supported():
        return torch.bfloat16, None
    return torch.float16, torch.amp.GradScaler("cuda")
