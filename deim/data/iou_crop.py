"""``RandomIoUCrop`` with the crop search in plain float32 arithmetic.

torchvision's ``RandomIoUCrop.make_params`` runs its rejection search (up to 40 trials per
sampled minimum IoU, repeated until an option succeeds) with a dozen tiny tensor ops per trial.
When few, small boxes make high minimum IoUs infeasible, which is the rule on zoomed-out
canvases, one sample can take hundreds of trials: on 96 px Fashion canvases this search was two
thirds of the whole data pipeline's time.

:class:`FastIoUCrop` draws the same random numbers from torch's generator in the same order and
evaluates every test in IEEE float32 as torch does (NumPy ``float32`` scalars), so for the same
generator state it returns the same crop as torchvision (``tests/test_data_transforms.py``
compares both over thousands of samples). Only the search is replaced; the crop itself and the
marking of boxes outside it are torchvision's.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torchvision.transforms.v2 as T
import torchvision.transforms.v2.functional as TF
from torchvision import tv_tensors
from torchvision.transforms.v2._utils import get_bounding_boxes, query_size

_F32 = np.float32


def _xyxy(boxes: tv_tensors.BoundingBoxes) -> np.ndarray:
    """``[N, 4]`` xyxy in the boxes' own dtype (float32 for our targets), as NumPy."""
    xyxy = TF.convert_bounding_box_format(boxes.as_subclass(torch.Tensor), boxes.format,
                                          tv_tensors.BoundingBoxFormat.XYXY)
    return xyxy.numpy()


def _best_iou(boxes: np.ndarray, crop: tuple[int, int, int, int]) -> np.floating:
    """Largest IoU between ``boxes`` ``[N, 4]`` (xyxy) and one crop box, in the boxes' dtype."""
    c = np.asarray(crop, dtype=boxes.dtype)
    wh = np.clip(np.minimum(boxes[:, 2:], c[2:]) - np.maximum(boxes[:, :2], c[:2]), 0, None)
    inter = wh[:, 0] * wh[:, 1]
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    area_crop = (c[2] - c[0]) * (c[3] - c[1])
    return (inter / (area + area_crop - inter)).max()


class FastIoUCrop(T.RandomIoUCrop):
    """Drop-in ``RandomIoUCrop`` (same arguments, same crops for the same RNG state), faster."""

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        orig_h, orig_w = query_size(flat_inputs)
        bboxes = get_bounding_boxes(flat_inputs)
        xyxy = _xyxy(bboxes)
        cx = _F32(0.5) * (xyxy[:, 0] + xyxy[:, 2]) if xyxy.dtype == _F32 else 0.5 * (xyxy[:, 0] + xyxy[:, 2])
        cy = _F32(0.5) * (xyxy[:, 1] + xyxy[:, 3]) if xyxy.dtype == _F32 else 0.5 * (xyxy[:, 1] + xyxy[:, 3])
        span, low = _F32(self.max_scale - self.min_scale), _F32(self.min_scale)
        while True:
            idx = int(torch.randint(low=0, high=len(self.options), size=(1,)))
            min_jaccard_overlap = self.options[idx]
            if min_jaccard_overlap >= 1.0:
                return dict()
            for _ in range(self.trials):
                r0, r1 = torch.rand(2).numpy()
                new_w = int(_F32(orig_w) * (low + span * r0))
                new_h = int(_F32(orig_h) * (low + span * r1))
                if new_h == 0 or not (self.min_aspect_ratio <= new_w / new_h <= self.max_aspect_ratio):
                    if new_h == 0:  # torchvision divides by zero here; keep its error
                        raise ZeroDivisionError("division by zero")
                    continue
                r0, r1 = torch.rand(2).numpy()
                left = int(_F32(orig_w - new_w) * r0)
                top = int(_F32(orig_h - new_h) * r1)
                right, bottom = left + new_w, top + new_h
                if left == right or top == bottom:
                    continue
                inside = (left < cx) & (cx < right) & (top < cy) & (cy < bottom)
                if not inside.any():
                    continue
                if _best_iou(xyxy[inside], (left, top, right, bottom)) < min_jaccard_overlap:
                    continue
                return dict(top=top, left=left, height=new_h, width=new_w,
                            is_within_crop_area=torch.from_numpy(inside))
