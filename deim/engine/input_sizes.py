"""The input sizes a run trains at: the training size, and the multi-scale sizes while multi-scale
training is on (``0.75×`` to ``1.25×`` the training size in steps of 32)."""
from __future__ import annotations

import dataclasses

from deim.presets.training import TrainSchedule


def training_sizes(schedule: TrainSchedule, image_size: int) -> list[int]:
    """Every square size a batch may have when ``schedule`` trains at ``image_size`` (sorted)."""
    aug = dataclasses.replace(schedule.aug, base_size=image_size)
    sizes = {image_size}
    if any(aug.multiscale_enabled(epoch) for epoch in range(schedule.epochs)):
        sizes.update(aug.multiscale_sizes())
    return sorted(sizes)
