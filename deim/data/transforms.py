"""Box-aware transform ops on ``(image, target)`` pairs (torchvision ``transforms.v2``).

A *target* is a dict with

* per-box fields (``PER_BOX_FIELDS`` that are present): ``boxes`` (``tv_tensors.BoundingBoxes``,
  ``xyxy`` pixels of the current canvas, ``[N, 4]``), ``labels`` (``[N]`` int64 contiguous),
  ``area`` (``[N]`` float32: the annotation's area in the *original* image, used by COCO
  evaluation only and, as in torchvision, not rescaled by transforms), ``iscrowd`` (``[N]`` int64);
* per-image fields: ``image_id`` (0-d int64), ``orig_size`` (``[2]`` int64, ``(w, h)`` of the
  original image).

The ops keep every per-box field consistent: ``sanitize`` drops the same rows from all of them.
``to_model_inputs`` is the last step of every pipeline: image -> ``[3, H, W]`` float32 in
``[0, 1]`` (no mean/std normalisation, as official), boxes -> plain ``[N, 4]`` float32
``cxcywh`` normalised by the canvas size (what the model and the criterion take).

torchvision defaults (v0.29) that the official configs rely on: ``RandomPhotometricDistort``
brightness (0.875, 1.125), contrast/saturation (0.5, 1.5), hue (-0.05, 0.05); ``RandomZoomOut``
side range (1, 4), p 0.5; ``RandomIoUCrop`` scale (0.3, 1), aspect (0.5, 2), 40 trials.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import PIL.Image
import torch
import torchvision.transforms.v2 as T
import torchvision.transforms.v2.functional as TF
from torchvision import tv_tensors
from torchvision.ops import box_convert

from deim.data.iou_crop import FastIoUCrop

PER_BOX_FIELDS = ("labels", "area", "iscrowd", "mixup")
Target = dict[str, Any]


class ItemSource(Protocol):
    """What mosaic needs from a dataset: its length and raw (untransformed) samples."""

    def __len__(self) -> int: ...

    def load_item(self, idx: int) -> tuple[PIL.Image.Image, Target]: ...


@dataclass(frozen=True)
class SampleContext:
    """What an epoch-aware transform is told about the sample it transforms."""

    epoch: int
    index: int
    source: ItemSource


class ContextTransform:
    """Base of transforms called as ``transform(image, target, context)`` (the dataset passes the
    context); plain torchvision-style transforms are called as ``transform(image, target)``."""

    def __call__(self, image: Any, target: Target, context: SampleContext) -> tuple[Any, Target]:
        raise NotImplementedError


def bounding_boxes(xyxy: torch.Tensor, height: int, width: int) -> tv_tensors.BoundingBoxes:
    """Wrap ``[N, 4]`` xyxy pixels as ``BoundingBoxes`` on an ``height x width`` canvas."""
    return tv_tensors.BoundingBoxes(xyxy.reshape(-1, 4).float(), format="XYXY", canvas_size=(height, width))


def image_size(image: Any) -> tuple[int, int]:
    """``(height, width)`` of a PIL image or an image tensor."""
    h, w = TF.get_size(image)
    return int(h), int(w)


def num_boxes(target: Target) -> int:
    return int(target["boxes"].shape[0])


def _per_box_tensors(inputs: Any) -> tuple[torch.Tensor, ...]:
    target = inputs[1]
    return tuple(target[k] for k in PER_BOX_FIELDS if k in target)


def sanitize(min_size: float = 1.0) -> T.Transform:
    """Drop boxes smaller than ``min_size`` pixels (or outside the canvas) from every per-box field."""
    return T.SanitizeBoundingBoxes(min_size=min_size, labels_getter=_per_box_tensors)


def photometric_distort(p: float = 0.5) -> T.Transform:
    return T.RandomPhotometricDistort(p=p)


def zoom_out(fill: int = 0) -> T.Transform:
    return T.RandomZoomOut(fill=fill)


def iou_crop(p: float = 0.8) -> T.Transform:
    """``RandomIoUCrop`` applied with probability ``p`` (the official wrapper's ``p``); the crop
    search runs in :class:`~deim.data.iou_crop.FastIoUCrop` (same crops, several times faster)."""
    return T.RandomApply([FastIoUCrop()], p=p)


def horizontal_flip(p: float = 0.5) -> T.Transform:
    return T.RandomHorizontalFlip(p=p)


def stretch_resize(size: int) -> T.Transform:
    """Resize to ``size x size`` without keeping the aspect ratio (as official)."""
    return T.Resize([size, size])


def to_model_inputs(image: Any, target: Target) -> tuple[torch.Tensor, Target]:
    """Image -> ``[3, H, W]`` float32 in ``[0, 1]``; boxes -> ``[N, 4]`` cxcywh normalised."""
    tensor = TF.to_dtype(TF.to_image(image), torch.float32, scale=True).as_subclass(torch.Tensor)
    height, width = tensor.shape[-2:]
    xyxy = TF.convert_bounding_box_format(target["boxes"], new_format=tv_tensors.BoundingBoxFormat.XYXY)
    boxes = xyxy.as_subclass(torch.Tensor).float()
    boxes = box_convert(boxes, "xyxy", "cxcywh") / torch.tensor([width, height, width, height], dtype=torch.float32)
    out = dict(target)
    out["boxes"] = boxes
    return tensor, out
