"""The training and validation pipelines; the ``AugSchedule`` decides which ops run per epoch.

Training, per sample (official order; ``S`` = ``image_size``)::

    [mosaic] -> [photometric distort] -> [zoom-out] -> [IoU crop] -> sanitize -> h-flip
        -> resize S x S (stretch) -> sanitize -> float image in [0, 1], cxcywh normalised boxes

Which bracketed (policy) ops run depends on ``schedule.stage(epoch)``:

==============  =====================================================================
``warmup``      none
``dense_o2o``   with probability ``mosaic_prob``: mosaic + distort; else distort +
                zoom-out + IoU crop (mosaic and zoom-out/IoU crop never both)
``standard``    distort + zoom-out + IoU crop
``no_aug``      none
==============  =====================================================================

Distort, zoom-out and IoU crop run only when listed in ``schedule.standard_ops`` (officially all
three; the reduced protocol lists none). Batch mixup and multi-scale are batch-level, in
``deim.data.collate.BatchCollator``.

Reproducibility: every sample's random numbers come from torch's generator re-seeded with
``(seed, epoch, index)`` for the duration of its transforms (the caller's RNG state is restored
afterwards), so an augmented sample does not depend on the number of DataLoader workers or on
which worker draws it. Only the mosaic cache's *content* depends on the worker layout.

Validation: resize ``S x S`` and convert (no mean/std normalisation, as official).
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from deim.data.aug_schedule import AugSchedule
from deim.data.mosaic import Mosaic
from deim.data.transforms import (ContextTransform, SampleContext, Target, horizontal_flip, iou_crop,
                                  photometric_distort, sanitize, stretch_resize, to_model_inputs, zoom_out)


@contextmanager
def seeded_torch_rng(*key: int) -> Iterator[None]:
    """Within the block, torch's CPU generator is seeded from ``key``; restored on exit."""
    seed = int(np.random.SeedSequence([int(k) for k in key]).generate_state(1, dtype=np.uint64)[0])
    with torch.random.fork_rng(devices=[]):
        # CPU generator only: torch.manual_seed would also queue a lazy CUDA/XPU seeding call
        # (with a stack trace) per sample in processes where those devices are not initialised
        torch.default_generator.manual_seed(seed)
        yield


class TrainTransforms(ContextTransform):
    """The epoch-aware training pipeline (see the module docstring).

    Args:
        schedule: decides the stage (and the mosaic probability) of each epoch.
        image_size: square training size ``S``.
        mosaic: the mosaic op; required when ``schedule.mosaic_prob > 0``.
        seed: base seed of the per-sample random numbers.
        distort_p / iou_crop_p / flip_p: probabilities of those ops (official 0.5 / 0.8 / 0.5).
    """

    def __init__(self, schedule: AugSchedule, image_size: int, mosaic: Mosaic | None = None, seed: int = 0,
                 distort_p: float = 0.5, iou_crop_p: float = 0.8, flip_p: float = 0.5) -> None:
        if image_size <= 0 or image_size % 32:
            raise ValueError(f"image_size must be a positive multiple of 32, got {image_size}")
        e0, e1, _ = schedule.policy_epochs
        if mosaic is None and schedule.mosaic_prob > 0 and e1 > e0:
            raise ValueError(f"the schedule uses mosaic (mosaic_prob={schedule.mosaic_prob}) but no Mosaic was given")
        self.schedule = schedule
        self.image_size = image_size
        self.mosaic = mosaic
        self.seed = seed
        self._ops: dict[str, Callable[[Any, Target], tuple[Any, Target]]] = {
            "photometric_distort": photometric_distort(distort_p),
            "zoom_out": zoom_out(fill=0),
            "iou_crop": iou_crop(iou_crop_p),
            "sanitize": sanitize(min_size=1),
            "horizontal_flip": horizontal_flip(flip_p),
            "resize": stretch_resize(image_size),
        }

    def plan(self, epoch: int, with_mosaic: bool) -> tuple[str, ...]:
        """Names of the ops a sample of ``epoch`` goes through (before the final conversion)."""
        ops: list[str] = []
        if self.schedule.policy_ops_enabled(epoch):
            chosen = self.schedule.standard_ops
            if with_mosaic:
                ops += ["mosaic", *(op for op in chosen if op == "photometric_distort")]
            else:
                ops += list(chosen)
        return (*ops, "sanitize", "horizontal_flip", "resize", "sanitize")

    def __call__(self, image: Any, target: Target, context: SampleContext) -> tuple[torch.Tensor, Target]:
        with seeded_torch_rng(self.seed, context.epoch, context.index):
            p = self.schedule.mosaic_probability(context.epoch)
            with_mosaic = self.mosaic is not None and p > 0 and bool(torch.rand(()) < p)
            for name in self.plan(context.epoch, with_mosaic):
                if name == "mosaic":
                    image, target = self.mosaic(image, target, context.source)
                else:
                    image, target = self._ops[name](image, target)
            return to_model_inputs(image, target)

    def __repr__(self) -> str:
        return f"TrainTransforms(image_size={self.image_size}, schedule={self.schedule}, mosaic={self.mosaic})"


class ValTransforms:
    """Resize to ``image_size x image_size`` (stretch) and convert; deterministic."""

    def __init__(self, image_size: int) -> None:
        if image_size <= 0 or image_size % 32:
            raise ValueError(f"image_size must be a positive multiple of 32, got {image_size}")
        self.image_size = image_size
        self.resize = stretch_resize(image_size)

    def __call__(self, image: Any, target: Target) -> tuple[torch.Tensor, Target]:
        return to_model_inputs(*self.resize(image, target))

    def __repr__(self) -> str:
        return f"ValTransforms(image_size={self.image_size})"


def build_train_transforms(schedule: AugSchedule, image_size: int | None = None, *, seed: int = 0,
                           mosaic_size: int | None = None, mosaic_cache: bool = False,
                           max_cached_images: int = 50) -> TrainTransforms:
    """The official DEIM training pipeline for ``schedule``.

    ``image_size`` defaults to ``schedule.base_size``; ``mosaic_size`` (the tiles' shorter side)
    to ``image_size // 2`` (official: 320 for 640). A mosaic op is built only when the schedule
    has a Dense O2O stage with ``mosaic_prob > 0``.
    """
    size = schedule.base_size if image_size is None else image_size
    e0, e1, _ = schedule.policy_epochs
    mosaic = None
    if schedule.mosaic_prob > 0 and e1 > e0:
        mosaic = Mosaic(output_size=mosaic_size or size // 2, use_cache=mosaic_cache,
                        max_cached_images=max_cached_images)
    return TrainTransforms(schedule, size, mosaic=mosaic, seed=seed)


def build_val_transforms(image_size: int) -> ValTransforms:
    return ValTransforms(image_size)
