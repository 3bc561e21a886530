"""From a :class:`~deim.engine.config.DataConfig` to datasets and loaders: one code path for COCO,
any COCO-format folder, and the built-in Fashion-MNIST detection data."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Subset

from deim.data.aug_schedule import AugSchedule
from deim.data.coco import CocoDetection
from deim.data.image_check import check_image_files
from deim.data.labels import LabelMap
from deim.data.loaders import DetectionLoader, build_train_loader, build_val_loader
from deim.data.pipeline import build_val_transforms
from deim.data.training_set import dense_o2o_training_set
from deim.engine.config import DataConfig


@dataclass
class DataPaths:
    """Image folders and annotation files; the training pair is ``None`` when evaluation needs none."""

    train_images: Path | None
    train_ann: Path | None
    val_images: Path
    val_ann: Path
    remap_mscoco: bool


def data_paths(cfg: DataConfig, need_train: bool = True) -> DataPaths:
    """Where the images and annotations of ``cfg`` are; generates the built-in data when asked.

    With ``need_train=False`` (evaluation) a custom dataset needs only its two ``val_*`` paths.
    """
    if cfg.dataset == "fashion":
        from deim.data.fashion import fashion_splits

        splits = fashion_splits(cfg.fashion_scale, **cfg.fashion_canvas)
        return DataPaths(*splits["train"], *splits["val"], remap_mscoco=False)
    if cfg.dataset == "coco":
        if not cfg.root:
            raise ValueError("data.dataset=coco needs data.root (the folder with train2017/, val2017/, annotations/)")
        root = Path(cfg.root)
        return DataPaths(root / "train2017", root / "annotations" / "instances_train2017.json",
                         root / "val2017", root / "annotations" / "instances_val2017.json", remap_mscoco=True)
    keys = ("train_images", "train_ann", "val_images", "val_ann") if need_train else ("val_images", "val_ann")
    missing = [k for k in keys if not getattr(cfg, k)]
    if missing:
        raise ValueError(f"data.dataset=custom needs {', '.join('data.' + k for k in missing)}")
    return DataPaths(*(Path(p) if p else None for p in (cfg.train_images, cfg.train_ann)),
                     Path(cfg.val_images), Path(cfg.val_ann), remap_mscoco=False)


@dataclass
class TrainingData:
    """Datasets and loaders of a run; ``label_map`` maps contiguous labels to category ids/names."""

    train: CocoDetection
    val: CocoDetection
    train_loader: DetectionLoader
    val_loader: DetectionLoader
    label_map: LabelMap


def checked(dataset: CocoDetection) -> CocoDetection:
    """``dataset`` after the pre-flight check of its image files (all exist, headers decode,
    sizes match the JSON); raises in one line otherwise."""
    check_image_files(dataset.img_folder, dataset.ann_file, dataset.file_names,
                      [(int(w), int(h)) for w, h in dataset.sizes])
    return dataset


def _subset(dataset: CocoDetection, n: int | None, seed: int) -> CocoDetection | Subset:
    if n is None or n >= len(dataset):
        return dataset
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:n]
    return Subset(dataset, sorted(order.tolist()))


def build_training_data(cfg: DataConfig, aug: AugSchedule, *, batch_size: int, seed: int,
                        val_batch_size: int | None = None) -> TrainingData:
    """Datasets (train with the Dense O2O pipeline of ``aug``, val resized) and their loaders.

    ``batch_size`` is per process. The validation set uses the training set's label map, so a
    category missing from one split still keeps its label.
    """
    paths = data_paths(cfg)
    train, collator = dense_o2o_training_set(paths.train_images, paths.train_ann, aug, cfg.image_size, seed=seed,
                                             mosaic_cache=cfg.mosaic_cache, remap_mscoco=paths.remap_mscoco)
    train = checked(train)
    val, val_loader = build_eval_data(cfg, train.label_map, seed=seed, batch_size=val_batch_size)
    train_part = _subset(train, cfg.train_subset, seed)
    train_loader = build_train_loader(train_part, collator, batch_size, num_workers=cfg.num_workers, seed=seed,
                                      persistent_workers=cfg.num_workers > 0)
    if isinstance(train_part, Subset):  # set_epoch must reach the dataset behind the subset
        train_part.set_epoch = train.set_epoch  # type: ignore[attr-defined]
    return TrainingData(train, val, train_loader, val_loader, train.label_map)


def build_eval_data(cfg: DataConfig, label_map: LabelMap | None = None, *, seed: int = 0,
                    batch_size: int | None = None) -> tuple[CocoDetection, DetectionLoader]:
    """The validation set of ``cfg`` (resized to ``cfg.image_size``) and its loader; no training
    images are needed; the image files are checked first and an empty set is refused.
    ``label_map`` (e.g. from a checkpoint) fixes the labels; without it COCO
    uses the standard 80-class map and other data the categories of the validation file."""
    paths = data_paths(cfg, need_train=False)
    remap = paths.remap_mscoco and label_map is None
    val = checked(CocoDetection(paths.val_images, paths.val_ann, label_map=label_map, remap_mscoco=remap,
                                transforms=build_val_transforms(cfg.image_size)))
    part = _subset(val, cfg.val_subset, seed)
    if len(part) == 0:
        raise ValueError(f"the validation set is empty: {paths.val_ann} lists no images" if len(val) == 0 else
                         f"data.val_subset={cfg.val_subset} leaves no validation images")
    loader = build_val_loader(part, batch_size or cfg.val_batch_size, num_workers=cfg.num_workers)
    return val, loader
