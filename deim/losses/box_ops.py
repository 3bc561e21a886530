"""Box format conversions and (generalised) IoU, pairwise and element-wise.

Formats: ``cxcywh`` is ``(centre x, centre y, width, height)``, ``xyxy`` is
``(left, top, right, bottom)``; both may be normalised or in pixels, the functions do not care.

Two flavours of IoU:

* pairwise (``box_iou``, ``generalized_box_iou``): ``[N, 4] x [M, 4] -> [N, M]``, for the
  matching cost matrices;
* paired (``paired_box_iou``, ``paired_generalized_box_iou``): ``[..., 4] x [..., 4] -> [...]``,
  box ``i`` against box ``i`` only, for the losses of matched pairs. The official criterion
  builds the full ``N x N`` matrix and keeps its diagonal; these are O(N) and give the same
  numbers (same order of floating-point operations).

Degenerate boxes: where the union (or, for GIoU, the enclosing box) has zero area, IoU is 0 and
the GIoU penalty term is 0, so no NaN appears in values or gradients.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _check_last_dim(boxes: Tensor, name: str) -> None:
    if boxes.shape[-1] != 4:
        raise ValueError(f"{name} must have 4 coordinates in its last dimension, got shape {tuple(boxes.shape)}")


def box_cxcywh_to_xyxy(boxes: Tensor) -> Tensor:
    """``[..., 4]`` cxcywh -> ``[..., 4]`` xyxy.

    Negative widths/heights are clamped to 0 (as the official code does), so a box predicted
    "inside out" becomes a degenerate box at its centre rather than an inverted one.
    """
    _check_last_dim(boxes, "boxes")
    cx, cy, w, h = boxes.unbind(-1)
    half_w, half_h = 0.5 * w.clamp(min=0.0), 0.5 * h.clamp(min=0.0)
    return torch.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], dim=-1)


def box_xyxy_to_cxcywh(boxes: Tensor) -> Tensor:
    """``[..., 4]`` xyxy -> ``[..., 4]`` cxcywh."""
    _check_last_dim(boxes, "boxes")
    x0, y0, x1, y1 = boxes.unbind(-1)
    return torch.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], dim=-1)


def box_area(boxes: Tensor) -> Tensor:
    """``[..., 4]`` xyxy -> ``[...]`` areas."""
    _check_last_dim(boxes, "boxes")
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def _safe_divide(numerator: Tensor, denominator: Tensor) -> Tensor:
    """``numerator / denominator``, 0 where ``denominator`` is 0 (there ``numerator`` is 0 too).

    The denominator is replaced by 1 before dividing (not the quotient afterwards), so the
    backward pass never sees ``0 / 0`` either.
    """
    return numerator / torch.where(denominator > 0, denominator, torch.ones_like(denominator))


def _inter_union(boxes1: Tensor, boxes2: Tensor) -> tuple[Tensor, Tensor]:
    """Intersection and union areas of broadcast-compatible xyxy boxes ``[..., 4]``."""
    top_left = torch.max(boxes1[..., :2], boxes2[..., :2])
    bottom_right = torch.min(boxes1[..., 2:], boxes2[..., 2:])
    wh = (bottom_right - top_left).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = box_area(boxes1) + box_area(boxes2) - inter
    return inter, union


def _enclosing_area(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Area of the smallest box enclosing both, for broadcast-compatible xyxy boxes ``[..., 4]``."""
    top_left = torch.min(boxes1[..., :2], boxes2[..., :2])
    bottom_right = torch.max(boxes1[..., 2:], boxes2[..., 2:])
    wh = (bottom_right - top_left).clamp(min=0)
    return wh[..., 0] * wh[..., 1]


def _giou_from_parts(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    inter, union = _inter_union(boxes1, boxes2)
    iou = _safe_divide(inter, union)
    enclosing = _enclosing_area(boxes1, boxes2)
    return iou - _safe_divide(enclosing - union, enclosing)


def _check_pairwise(boxes1: Tensor, boxes2: Tensor) -> None:
    for name, boxes in (("boxes1", boxes1), ("boxes2", boxes2)):
        if boxes.dim() != 2 or boxes.shape[-1] != 4:
            raise ValueError(f"{name} must have shape [N, 4], got {tuple(boxes.shape)}")


def _check_paired(boxes1: Tensor, boxes2: Tensor) -> None:
    _check_last_dim(boxes1, "boxes1")
    _check_last_dim(boxes2, "boxes2")
    if boxes1.shape != boxes2.shape:
        raise ValueError(f"paired boxes must have the same shape, got {tuple(boxes1.shape)} and {tuple(boxes2.shape)}")


def box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Pairwise IoU of xyxy boxes: ``[N, 4] x [M, 4] -> [N, M]``."""
    _check_pairwise(boxes1, boxes2)
    inter, union = _inter_union(boxes1[:, None, :], boxes2[None, :, :])
    return _safe_divide(inter, union)


def generalized_box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Pairwise generalised IoU (Rezatofighi et al. 2019) of xyxy boxes: ``[N, 4] x [M, 4] -> [N, M]``.

    ``GIoU = IoU - (enclosing - union) / enclosing``, in ``[-1, 1]``.
    """
    _check_pairwise(boxes1, boxes2)
    return _giou_from_parts(boxes1[:, None, :], boxes2[None, :, :])


def paired_box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Element-wise IoU of matched xyxy boxes: ``[..., 4] x [..., 4] -> [...]``.

    Equals ``box_iou(boxes1, boxes2).diagonal()`` for ``[N, 4]`` inputs, in O(N).
    """
    _check_paired(boxes1, boxes2)
    inter, union = _inter_union(boxes1, boxes2)
    return _safe_divide(inter, union)


def paired_generalized_box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Element-wise generalised IoU of matched xyxy boxes: ``[..., 4] x [..., 4] -> [...]``.

    Equals ``generalized_box_iou(boxes1, boxes2).diagonal()`` for ``[N, 4]`` inputs, in O(N).
    """
    _check_paired(boxes1, boxes2)
    return _giou_from_parts(boxes1, boxes2)
