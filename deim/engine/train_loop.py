"""One training epoch, one prediction pass and its COCO evaluation.

``train_one_epoch`` takes one :class:`TrainingState` and runs forward (under autocast when AMP is
on), the criterion in fp32, the backward with gradient clipping, the optimizer and EMA updates and
the per-iteration LR. A non-finite loss skips the step (no weight changes), is logged, and after
``max_consecutive_nonfinite`` skipped steps in a row stops the run with a message.
"""
from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from deim.data.labels import LabelMap
from deim.engine.distributed import all_reduce_mean, dist_info
from deim.engine.ema import ModelEMA
from deim.engine.lr_schedule import FlatCosineScheduler
from deim.models.detector import for_cpu_inference


class NonFiniteLossError(RuntimeError):
    """Raised after too many consecutive steps with a NaN/Inf loss."""


@dataclass
class NonFiniteGuard:
    """Counts skipped steps; raises after ``max_consecutive`` non-finite losses in a row."""

    max_consecutive: int = 5
    skipped: int = 0
    consecutive: int = 0
    events: list[dict] = field(default_factory=list)

    def check(self, loss: torch.Tensor, loss_dict: dict[str, torch.Tensor], epoch: int, it: int) -> bool:
        finite = bool(torch.isfinite(loss).all())
        if finite:
            self.consecutive = 0
            return True
        self.skipped += 1
        self.consecutive += 1
        bad = sorted(k for k, v in loss_dict.items() if not torch.isfinite(v).all())
        self.events.append({"epoch": epoch, "iteration": it, "terms": bad})
        print(f"[deim] non-finite loss at epoch {epoch} iteration {it} in {bad or ['total']}; step skipped")
        if self.consecutive >= self.max_consecutive:
            raise NonFiniteLossError(
                f"{self.consecutive} consecutive non-finite losses (last at epoch {epoch}, iteration {it}, terms "
                f"{bad}). Under AMP this is usually an fp16 overflow: rerun without --amp or with bf16; "
                f"otherwise check the labels (category ids out of range) and the learning rate.")
        return False


@dataclass
class EpochStats:
    losses: dict[str, float]
    seconds: float
    images_per_s: float
    lr: float
    skipped_steps: int
    iterations: int
    positives_per_image: float | None = None


def _to_device(targets: list[dict], device: torch.device) -> list[dict]:
    return [{k: (v.to(device) if torch.is_tensor(v) else v) for k, v in t.items()} for t in targets]


@dataclass
class TrainingState:
    """Everything one training epoch steps: the (DDP-wrapped) model, the criterion, the loader and
    the optimiser with what updates alongside it (per-iteration LR, EMA, AMP scaler).

    ``amp_dtype`` ``None`` trains in fp32; ``max_iters`` caps the iterations of an epoch; ``on_step``
    is called with ``(global iteration, loss values)`` after every step taken.
    """

    model: nn.Module
    criterion: nn.Module
    loader: Iterable
    optimizer: torch.optim.Optimizer
    device: torch.device
    lr_scheduler: FlatCosineScheduler | None = None
    ema: ModelEMA | None = None
    scaler: torch.amp.GradScaler | None = None
    amp_dtype: torch.dtype | None = None
    clip_max_norm: float = 0.1
    guard: NonFiniteGuard = field(default_factory=NonFiniteGuard)
    max_iters: int | None = None
    progress: bool = True
    on_step: Callable[[int, dict[str, float]], None] | None = None


def train_one_epoch(state: TrainingState, epoch: int, start_iter: int) -> EpochStats:
    """Train ``state`` for one epoch. ``start_iter`` is the global iteration of the epoch's first batch.

    The LR of iteration ``it`` is set *before* its optimizer step, so a resumed run sees the
    same LRs as an uninterrupted one.
    """
    model, criterion, optimizer, device, amp_dtype = (state.model, state.criterion, state.optimizer, state.device,
                                                      state.amp_dtype)
    model.train()
    criterion.train()
    sums: dict[str, float] = defaultdict(float)
    n_images, n_iters, n_positives, t0 = 0, 0, 0, time.perf_counter()
    total = len(state.loader) if hasattr(state.loader, "__len__") else None
    if state.max_iters is not None:
        total = min(total or state.max_iters, state.max_iters)
    bar = _progress(state.loader, total, f"epoch {epoch}", state.progress and dist_info().is_main)
    autocast = (torch.autocast(device_type=device.type, dtype=amp_dtype) if amp_dtype is not None else nullcontext())
    for i, (images, targets) in enumerate(bar):
        if state.max_iters is not None and i >= state.max_iters:
            break
        it = start_iter + i
        if state.lr_scheduler is not None:
            state.lr_scheduler.step(it)
        images = images.to(device, non_blocking=True)
        targets = _to_device(targets, device)
        with autocast:
            outputs = model(images, targets)
        with torch.autocast(device_type=device.type, enabled=False):
            loss_dict = criterion(_float32(outputs) if amp_dtype is not None else outputs, targets)
        loss = sum(loss_dict.values())
        optimizer.zero_grad(set_to_none=True)
        if not state.guard.check(loss, loss_dict, epoch, it):
            continue
        _step(state, loss)
        values = {k: float(v.detach()) for k, v in loss_dict.items()}
        values["loss"] = float(loss.detach())
        for k, v in values.items():
            sums[k] += v
        n_iters += 1
        n_images += images.shape[0]
        n_positives += getattr(criterion, "last_positives", 0)
        if state.on_step is not None:
            state.on_step(it, values)
        if hasattr(bar, "set_postfix"):
            rate = n_images / max(time.perf_counter() - t0, 1e-9)
            bar.set_postfix(loss=f"{values['loss']:.3f}", lr=f"{optimizer.param_groups[-1]['lr']:.2e}",
                            img_s=f"{rate:.1f}")
    seconds = time.perf_counter() - t0
    means = all_reduce_mean({k: v / max(n_iters, 1) for k, v in sums.items()}, device)
    positives = all_reduce_mean({"p": n_positives / max(n_images, 1)}, device)["p"]
    return EpochStats(losses=means, seconds=seconds, images_per_s=n_images / max(seconds, 1e-9),
                      lr=optimizer.param_groups[-1]["lr"], skipped_steps=state.guard.skipped, iterations=n_iters,
                      positives_per_image=positives if hasattr(criterion, "last_positives") else None)


def _step(state: TrainingState, loss: torch.Tensor) -> None:
    """Backward (scaled under fp16), gradient clipping, the optimizer step and the EMA update."""
    if state.scaler is not None:
        state.scaler.scale(loss).backward()
        state.scaler.unscale_(state.optimizer)
    else:
        loss.backward()
    if state.clip_max_norm > 0:
        torch.nn.utils.clip_grad_norm_(state.model.parameters(), state.clip_max_norm)
    if state.scaler is not None:
        state.scaler.step(state.optimizer)
        state.scaler.update()
    else:
        state.optimizer.step()
    if state.ema is not None:
        state.ema.update(state.model)


def _float32(outputs):
    """Cast floating tensors of a (nested) output structure to fp32 for the criterion."""
    if torch.is_tensor(outputs):
        return outputs.float() if outputs.is_floating_point() else outputs
    if isinstance(outputs, dict):
        return {k: _float32(v) for k, v in outputs.items()}
    if isinstance(outputs, (list, tuple)):
        return type(outputs)(_float32(v) for v in outputs)
    return outputs


def _progress(iterable: Iterable, total: int | None, desc: str, enabled: bool):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True, mininterval=1.0)


@torch.no_grad()
def predict_loader(model: nn.Module, postprocessor: nn.Module, loader: Iterable, device: torch.device,
                   progress: bool = True) -> dict[int, dict[str, torch.Tensor]]:
    """Run the model in eval mode over a loader; ``{image_id: {labels, boxes (xyxy pixels), scores}}``.

    Targets must carry ``image_id`` and ``orig_size`` (w, h) — the sizes the boxes are scaled to.
    On the CPU a :class:`~deim.models.detector.DEIM` runs as a channels-last copy (faster; outputs
    equal to float rounding).
    """
    model = for_cpu_inference(model.eval())
    results: dict[int, dict[str, torch.Tensor]] = {}
    for images, targets in _progress(loader, len(loader) if hasattr(loader, "__len__") else None, "eval",
                                     progress and dist_info().is_main):
        outputs = model(images.to(device))
        sizes = torch.stack([torch.as_tensor(t["orig_size"]) for t in targets]).to(device)
        for t, r in zip(targets, postprocessor(outputs, sizes)):
            results[int(t["image_id"])] = {k: v.detach().cpu() for k, v in r.items()}
    return results


def evaluate_coco(model: nn.Module, postprocessor: nn.Module, loader: Iterable, ann_file: str | Path,
                  label_map: LabelMap, device: torch.device, progress: bool = True) -> dict[str, float]:
    """The 12 COCO stats (fractions: ``AP``, ``AP50`` ... ``ARl``) of ``model`` on ``loader``.

    Under DDP every process predicts its share and the results are gathered before scoring.
    Torch's RNG is forked, so evaluating (how often, or not at all) never changes training.
    """
    from deim.data.evaluator import CocoEvaluator

    with torch.random.fork_rng(devices=[]):
        results = predict_loader(model, postprocessor, loader, device, progress=progress)
    if dist_info().enabled:
        gathered: list[dict] = [{} for _ in range(dist_info().world_size)]
        torch.distributed.all_gather_object(gathered, results)
        results = {k: v for part in gathered for k, v in part.items()}
    evaluator = CocoEvaluator(ann_file, label_map)
    evaluator.update(results)
    return dict(evaluator.summarize())
