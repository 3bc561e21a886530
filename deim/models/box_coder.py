"""D-FINE box coder: the non-uniform bin function W(n) and the box <-> edge-distance maps.

D-FINE predicts, for each of the four edges of a box, a distribution over ``reg_max + 1``
bins. Bin ``n`` stands for the offset ``W(n)`` (:func:`weighting_function`), in units of
``reference size / reg_scale``, measured from the edge of a box of half the reference size
(the ``0.5 * reg_scale`` term below). The bins are dense near 0 and sparse at the ends:

    W(0) = -2 * up * reg_scale,   W(reg_max) = +2 * up * reg_scale,   W(reg_max / 2) = 0,
    W(reg_max/2 + k) = step**k - 1 = -W(reg_max/2 - k)  for 0 < k < reg_max / 2,
    step = (up * reg_scale + 1) ** (2 / (reg_max - 2)).

Boxes are ``cxcywh`` normalised unless a name says ``xyxy``. ``up`` and ``reg_scale`` are
one-element tensors, as the decoder stores them (``reg_scale`` may be an integer tensor).
The float operations follow the official D-FINE code in the same order, so the values
agree bit for bit.
"""

from __future__ import annotations

import torch
from torch import Tensor


def weighting_function(reg_max: int, up: Tensor, reg_scale: Tensor) -> Tensor:
    """The bin values ``W(0..reg_max)`` as a ``[reg_max + 1]`` tensor (dtype of ``up``).

    ``reg_max`` must be even and at least 4; ``up`` and ``reg_scale`` are ``[1]`` tensors.
    Differentiable with respect to ``up`` and ``reg_scale`` when they are float tensors.
    """
    if reg_max < 4 or reg_max % 2:
        raise ValueError(f"reg_max must be an even integer >= 4, got {reg_max}")
    half_range = abs(up[0]) * abs(reg_scale)
    full_range = abs(up[0]) * abs(reg_scale) * 2
    step = (half_range + 1) ** (2 / (reg_max - 2))
    powers = [step ** k for k in range(1, reg_max // 2)]
    left = [-p + 1 for p in reversed(powers)]
    right = [p - 1 for p in powers]
    centre = torch.zeros_like(up[0][None])
    return torch.cat([-full_range, *left, centre, *right, full_range], 0)


def translate_gt(gt: Tensor, reg_max: int, reg_scale: Tensor, up: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Spread continuous edge offsets over their two neighbouring bins.

    Args:
        gt: edge offsets in bin units (any shape, flattened to ``[N]``).
    Returns:
        ``(indices, weight_right, weight_left)``, each ``[N]`` float32 (float64 for float64
        ``gt``). ``indices`` is the bin
        with ``W(i) <= gt < W(i + 1)``; the weights interpolate linearly between ``W(i)`` and
        ``W(i + 1)`` (``weight_left + weight_right = 1``). Offsets below ``W(0)`` map to
        ``(0, 0, 1)``; offsets at or above ``W(reg_max)`` to ``(reg_max - 0.1, 1, 0)``.
    """
    gt = gt.reshape(-1)
    bins = weighting_function(reg_max, up, reg_scale)
    # number of bins at or below each value, minus one: the left neighbour (-1 if none)
    left_index = (bins.unsqueeze(0) - gt.unsqueeze(1) <= 0).sum(dim=1) - 1
    indices = left_index.to(torch.promote_types(gt.dtype, torch.float32))  # float32, or float64 for float64 input
    weight_right = torch.zeros_like(indices)
    weight_left = torch.zeros_like(indices)

    inside = (indices >= 0) & (indices < reg_max)
    left_bin = indices[inside].long()
    gt_inside = gt[inside]
    dist_left = torch.abs(gt_inside - bins[left_bin])
    dist_right = torch.abs(bins[left_bin + 1] - gt_inside)
    weight_right[inside] = dist_left / (dist_left + dist_right)
    weight_left[inside] = 1.0 - weight_right[inside]

    below = indices < 0
    weight_right[below] = 0.0
    weight_left[below] = 1.0
    indices[below] = 0.0

    above = indices >= reg_max
    weight_right[above] = 1.0
    weight_left[above] = 0.0
    indices[above] = reg_max - 0.1
    return indices, weight_right, weight_left


def distance2bbox(points: Tensor, distance: Tensor, reg_scale: Tensor) -> Tensor:
    """Decode edge offsets into boxes.

    Args:
        points: reference boxes ``[..., 4]`` cxcywh.
        distance: offsets ``[..., 4]`` of the (left, top, right, bottom) edges in bin units.
        reg_scale: ``[1]`` tensor (or number).
    Returns:
        boxes ``[..., 4]`` cxcywh; edge ``e`` lies ``(0.5 * reg_scale + distance_e) * size / reg_scale``
        from the reference centre.
    """
    reg_scale = abs(reg_scale)
    x1 = points[..., 0] - (0.5 * reg_scale + distance[..., 0]) * (points[..., 2] / reg_scale)
    y1 = points[..., 1] - (0.5 * reg_scale + distance[..., 1]) * (points[..., 3] / reg_scale)
    x2 = points[..., 0] + (0.5 * reg_scale + distance[..., 2]) * (points[..., 2] / reg_scale)
    y2 = points[..., 1] + (0.5 * reg_scale + distance[..., 3]) * (points[..., 3] / reg_scale)
    return torch.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], dim=-1)


def bbox2distance(
    points: Tensor,
    bbox_xyxy: Tensor,
    reg_max: int,
    reg_scale: Tensor,
    up: Tensor,
    eps: float = 0.1,
) -> tuple[Tensor, Tensor, Tensor]:
    """Encode target boxes as per-edge bin targets relative to reference boxes (inverse of
    :func:`distance2bbox`), for the fine-grained localisation loss.

    Args:
        points: reference boxes ``[..., 4]`` cxcywh.
        bbox_xyxy: target boxes ``[..., 4]`` xyxy, same leading shape.
    Returns:
        ``(target_corners, weight_right, weight_left)``, each ``[N * 4]`` (edges in the order
        left, top, right, bottom per box), detached. ``target_corners`` is the fractional
        left bin, clamped to ``[0, reg_max - eps]``.
    """
    if points.shape != bbox_xyxy.shape or points.shape[-1] != 4:
        raise ValueError(f"points and bbox_xyxy must both be [..., 4], got {tuple(points.shape)} "
                         f"and {tuple(bbox_xyxy.shape)}")
    reg_scale = abs(reg_scale)
    unit_w = points[..., 2] / reg_scale + 1e-16
    unit_h = points[..., 3] / reg_scale + 1e-16
    left = (points[..., 0] - bbox_xyxy[..., 0]) / unit_w - 0.5 * reg_scale
    top = (points[..., 1] - bbox_xyxy[..., 1]) / unit_h - 0.5 * reg_scale
    right = (bbox_xyxy[..., 2] - points[..., 0]) / unit_w - 0.5 * reg_scale
    bottom = (bbox_xyxy[..., 3] - points[..., 1]) / unit_h - 0.5 * reg_scale
    offsets = torch.stack([left, top, right, bottom], dim=-1)
    corners, weight_right, weight_left = translate_gt(offsets, reg_max, reg_scale, up)
    corners = corners.clamp(min=0, max=reg_max - eps)
    return corners.detach(), weight_right.detach(), weight_left.detach()
