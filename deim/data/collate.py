"""Batch collation with DEIM's batch-level augmentations: MixUp and multi-scale resizing.

``BatchCollator(schedule)`` stacks ``(image [3, S, S], target)`` samples into
``images [B, 3, S, S]`` and a list of targets, then, depending on the epoch:

* **MixUp** (probability ``schedule.mixup_probability(epoch)`` per batch, official):
  ``beta = round(uniform(0.45, 0.55), 6)``; image ``i`` becomes ``beta * x_i + (1 - beta) *
  x_{i-1}`` (``images.roll(1, 0)``: image 0 is mixed with the last one); target ``i`` gets the
  per-box fields of ``i`` followed by those of ``i-1`` and ``mixup = [beta] * n_i + [1 - beta] *
  n_{i-1}``. As officially, no loss weights boxes by ``mixup``: mixed-in objects are full
  positives. A batch of one image is never mixed (it would duplicate its own boxes).
* **Multi-scale** (while ``schedule.multiscale_enabled(epoch)``): the whole batch is resized to a
  size drawn from ``schedule.multiscale_sizes()`` with ``F.interpolate``'s default *nearest* mode,
  as official; boxes are normalised, so targets are unchanged.

The epoch comes from a ``SharedEpoch`` (share the dataset's ``epoch_counter``), so collation in
persistent workers follows ``set_epoch``. Random numbers come from a generator seeded with
``(seed, epoch, image ids of the batch)``: the same batch of the same epoch is augmented the same
way whichever worker collates it.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from deim.data.aug_schedule import AugSchedule
from deim.data.epoch import SharedEpoch
from deim.data.transforms import PER_BOX_FIELDS, Target

MIXUP_BETA_RANGE = (0.45, 0.55)


def stack_batch(items: Sequence[tuple[torch.Tensor, Target]]) -> tuple[torch.Tensor, list[Target]]:
    """``[(image [3, H, W], target), ...]`` -> ``(images [B, 3, H, W], [target, ...])``."""
    if not items:
        raise ValueError("cannot collate an empty batch")
    shapes = {tuple(img.shape) for img, _ in items}
    if len(shapes) != 1:
        raise ValueError(f"all images of a batch must have the same shape, got {sorted(shapes)}")
    return torch.stack([img for img, _ in items]), [t for _, t in items]


def mixup(images: torch.Tensor, targets: Sequence[Target], beta: float) -> tuple[torch.Tensor, list[Target]]:
    """Mix image ``i`` with image ``i-1`` (weights ``beta`` and ``1 - beta``) and merge targets.

    Args:
        images: ``[B, 3, H, W]``.
        targets: ``B`` dicts; per-box fields (``boxes``, ``labels``, ...) are concatenated.
        beta: weight of each image's own content.

    Returns:
        mixed images ``[B, 3, H, W]`` and targets with ``mixup`` ``[n_i + n_{i-1}]`` float32 weights.
    """
    mixed = images * beta + images.roll(shifts=1, dims=0) * (1.0 - beta)
    out = []
    for i, target in enumerate(targets):
        other = targets[i - 1]
        merged = dict(target)
        for key in ("boxes", *PER_BOX_FIELDS):
            if key in target and key != "mixup":
                merged[key] = torch.cat([target[key], other[key]])
        merged["mixup"] = torch.tensor([beta] * len(target["boxes"]) + [1.0 - beta] * len(other["boxes"]),
                                       dtype=torch.float32)
        out.append(merged)
    return mixed, out


class BatchCollator:
    """Collate function of the training loader (see the module docstring).

    Args:
        schedule: mixup probability and multi-scale sizes per epoch.
        epoch: the ``SharedEpoch`` to read the epoch from (share the dataset's ``epoch_counter``).
        seed: base seed of the batch-level random numbers.
    """

    def __init__(self, schedule: AugSchedule, epoch: SharedEpoch | None = None, seed: int = 0) -> None:
        self.schedule = schedule
        self.epoch_counter = epoch if epoch is not None else SharedEpoch()
        self.seed = seed

    @property
    def epoch(self) -> int:
        return self.epoch_counter.get()

    def set_epoch(self, epoch: int) -> None:
        self.epoch_counter.set(epoch)

    def generator(self, epoch: int, targets: Sequence[Target]) -> torch.Generator:
        """The batch's generator, seeded with ``(seed, epoch, image ids)``."""
        try:
            ids = [int(t["image_id"]) for t in targets]
        except KeyError:
            raise ValueError("BatchCollator needs an 'image_id' in every target to seed its random numbers") from None
        key = np.random.SeedSequence([self.seed, epoch, *(i % 2**63 for i in ids)])
        return torch.Generator().manual_seed(int(key.generate_state(1, dtype=np.uint64)[0]))

    def __call__(self, items: Sequence[tuple[torch.Tensor, Target]]) -> tuple[torch.Tensor, list[Target]]:
        images, targets = stack_batch(items)
        epoch = self.epoch
        g = self.generator(epoch, targets)
        p = self.schedule.mixup_probability(epoch)
        if len(targets) > 1 and p > 0 and torch.rand((), generator=g).item() < p:
            lo, hi = MIXUP_BETA_RANGE
            beta = round(lo + (hi - lo) * torch.rand((), generator=g, dtype=torch.float64).item(), 6)
            images, targets = mixup(images, targets, beta)
        if self.schedule.multiscale_enabled(epoch):
            sizes = self.schedule.multiscale_sizes()
            size = sizes[int(torch.randint(len(sizes), (), generator=g))]
            if size != images.shape[-1] or size != images.shape[-2]:
                images = F.interpolate(images, size=size)  # mode 'nearest', the official default
        return images, targets

    def __repr__(self) -> str:
        return f"BatchCollator(schedule={self.schedule}, seed={self.seed}, epoch={self.epoch})"
