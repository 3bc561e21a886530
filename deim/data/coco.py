"""A COCO-format detection dataset (COCO 2017, any custom COCO JSON, the built-in Fashion data).

``CocoDetection(img_folder, ann_file, transforms)`` returns ``(image, target)``; without
transforms the image is a PIL RGB image and the target holds ``boxes`` (``BoundingBoxes``,
``xyxy`` pixels), ``labels`` (``[N]`` int64, contiguous through the ``LabelMap``), ``area``,
``iscrowd`` (crowd boxes are not training targets, so all zeros), ``image_id`` (0-d int64) and
``orig_size`` (``[2]`` int64, ``(w, h)``). See ``deim.data.transforms`` for the target fields.

The per-image boxes are kept in packed NumPy arrays rather than Python objects, so DataLoader
workers forked from the main process do not copy them page by page (reference counting of
Python objects touches their memory); the full JSON is not kept (the evaluator reads the file).

The epoch lives in a ``SharedEpoch`` (see ``deim.data.epoch``), so ``set_epoch`` reaches
persistent DataLoader workers; ``epoch_counter`` can be handed to the batch collator.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import PIL.Image
import torch
from torch.utils.data import Dataset

from deim.data.annotations import AnnotationError, load_coco_annotations
from deim.data.epoch import SharedEpoch
from deim.data.labels import LabelMap
from deim.data.transforms import ContextTransform, SampleContext, Target, bounding_boxes

TransformFn = Callable[..., tuple[Any, Target]]


class CocoDetection(Dataset):
    """A COCO-format detection dataset.

    Args:
        img_folder: folder the images' ``file_name`` entries are relative to.
        ann_file: the COCO JSON file.
        transforms: a ``ContextTransform`` (called with ``(image, target, SampleContext)``, e.g.
            the training pipeline) or any ``(image, target) -> (image, target)`` callable.
        label_map: contiguous labels <-> category ids; default: built from the file's
            ``categories`` sorted by id.
        remap_mscoco: use the standard 80-class COCO map (``LabelMap.coco()``).
        strict: raise on degenerate or outside boxes instead of dropping/clipping them.
        epoch: a ``SharedEpoch`` to share with other objects (a new one by default).
    """

    def __init__(self, img_folder: str | Path, ann_file: str | Path, transforms: TransformFn | None = None,
                 label_map: LabelMap | None = None, remap_mscoco: bool = False, strict: bool = False,
                 epoch: SharedEpoch | None = None) -> None:
        self.img_folder = Path(img_folder)
        self.ann_file = Path(ann_file)
        if not self.img_folder.is_dir():
            raise FileNotFoundError(f"image folder not found: {self.img_folder}")
        if remap_mscoco:
            if label_map is not None and label_map != LabelMap.coco():
                raise ValueError("remap_mscoco=True uses the standard COCO label map; do not pass another label_map")
            label_map = LabelMap.coco()
        known = set(label_map.category_ids) if label_map is not None else None
        ann = load_coco_annotations(self.ann_file, strict=strict, known_category_ids=known)
        self.label_map = label_map if label_map is not None else LabelMap.from_categories(ann.categories)
        self.transforms = transforms
        self.epoch_counter = epoch if epoch is not None else SharedEpoch()

        self.ids = np.array([im["id"] for im in ann.images], dtype=np.int64)
        self.file_names = [str(im["file_name"]) for im in ann.images]
        self.sizes = np.array([(im["width"], im["height"]) for im in ann.images], dtype=np.int64)
        per_image = [ann.boxes[int(i)] for i in self.ids]
        counts = np.array([len(b) for b in per_image], dtype=np.int64)
        self._offsets = np.concatenate([[0], np.cumsum(counts)])
        flat = [b for boxes in per_image for b in boxes]
        self._boxes = np.array([b.xyxy for b in flat], dtype=np.float32).reshape(-1, 4)
        self._labels = np.array([self.label_map.label(b.category_id) for b in flat], dtype=np.int64)
        self._areas = np.array([b.area for b in flat], dtype=np.float32)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def epoch(self) -> int:
        return self.epoch_counter.get()

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch seen by the transforms (in this process and in every worker)."""
        self.epoch_counter.set(epoch)

    @property
    def num_classes(self) -> int:
        return self.label_map.num_classes

    def num_boxes(self, idx: int) -> int:
        return int(self._offsets[idx + 1] - self._offsets[idx])

    def image_path(self, idx: int) -> Path:
        return self.img_folder / self.file_names[idx]

    def load_image(self, idx: int) -> PIL.Image.Image:
        """The image as RGB; ``OSError`` naming the file when it cannot be read."""
        path = self.image_path(idx)
        try:
            with PIL.Image.open(path) as im:
                image = im.convert("RGB")
        except (OSError, ValueError, PIL.Image.DecompressionBombError) as e:
            raise OSError(f"cannot read image {path} (image id {self.ids[idx]}): {e}") from e
        width, height = (int(v) for v in self.sizes[idx])
        if image.size != (width, height):
            raise AnnotationError(f"{self.ann_file}: image id {self.ids[idx]} is {width} x {height} in the JSON "
                                  f"but the file {path} is {image.size[0]} x {image.size[1]}")
        return image

    def load_target(self, idx: int) -> Target:
        start, end = int(self._offsets[idx]), int(self._offsets[idx + 1])
        width, height = (int(v) for v in self.sizes[idx])
        return {
            "boxes": bounding_boxes(torch.from_numpy(self._boxes[start:end].copy()), height, width),
            "labels": torch.from_numpy(self._labels[start:end].copy()),
            "area": torch.from_numpy(self._areas[start:end].copy()),
            "iscrowd": torch.zeros(end - start, dtype=torch.int64),
            "image_id": torch.tensor(int(self.ids[idx]), dtype=torch.int64),
            "orig_size": torch.tensor([width, height], dtype=torch.int64),
        }

    def load_item(self, idx: int) -> tuple[PIL.Image.Image, Target]:
        """The raw sample: PIL RGB image and target in its pixels (used by mosaic)."""
        if not 0 <= idx < len(self):
            raise IndexError(f"index {idx} out of range for a dataset of {len(self)} images")
        return self.load_image(idx), self.load_target(idx)

    def __getitem__(self, idx: int) -> tuple[Any, Target]:
        image, target = self.load_item(idx)
        if self.transforms is None:
            return image, target
        if isinstance(self.transforms, ContextTransform):
            return self.transforms(image, target, SampleContext(epoch=self.epoch, index=idx, source=self))
        return self.transforms(image, target)

    def __repr__(self) -> str:
        return (f"CocoDetection(images={len(self)}, boxes={len(self._labels)}, classes={self.num_classes}, "
                f"img_folder={str(self.img_folder)!r}, ann_file={str(self.ann_file)!r}, epoch={self.epoch})")
