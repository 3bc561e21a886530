"""A training set as the Dense O2O pipeline sees it: dataset, transforms and batch collator in one.

The three must agree: the per-sample transforms (mosaic, photometric distortion, zoom-out, IoU crop,
flip, resize) and the batch collator (mixup, multi-scale) both follow the dataset's epoch through
one ``SharedEpoch`` counter, and both draw from generators seeded with the same ``seed``. The
trainer (``deim.engine.data_build``), the Dense O2O analyses (``deim.analysis.dense_o2o``) and the
data-pipeline benchmark all build their training data here.
"""
from __future__ import annotations

from pathlib import Path

from deim.data.aug_schedule import AugSchedule
from deim.data.coco import CocoDetection
from deim.data.collate import BatchCollator
from deim.data.pipeline import build_train_transforms


def dense_o2o_training_set(img_folder: str | Path, ann_file: str | Path, schedule: AugSchedule,
                           image_size: int | None = None, *, seed: int = 0, mosaic_cache: bool = False,
                           remap_mscoco: bool = False) -> tuple[CocoDetection, BatchCollator]:
    """``(dataset, collator)`` for a COCO-format training set under ``schedule`` at ``image_size``
    (default ``schedule.base_size``): the dataset returns ``(image [3, S, S] in [0, 1], target)``
    with boxes ``cxcywh`` normalised; ``collator(samples) -> (images [B, 3, S', S'], targets)``.
    ``dataset.set_epoch(e)`` (or a loader's ``set_epoch``) moves both to epoch ``e``."""
    transforms = build_train_transforms(schedule, image_size, seed=seed, mosaic_cache=mosaic_cache)
    dataset = CocoDetection(img_folder, ann_file, remap_mscoco=remap_mscoco, transforms=transforms)
    return dataset, BatchCollator(schedule, epoch=dataset.epoch_counter, seed=seed)
