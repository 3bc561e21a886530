"""SimOTA one-to-many assignment (YOLOX, Ge et al. 2021) adapted to DETR query predictions.

Used for the paper's Fig. 2 study: how many positives an image gets under one-to-one
(Hungarian) matching versus a one-to-many assigner, on the same predictions.

YOLOX assigns grid anchors; here the "anchors" are the ``Q`` decoder queries. The adaptation:

* **Anchor point.** A query's point is its reference point (``ref_points [Q, 2]``, normalised
  ``xy``) if given, else the centre of its predicted box.
* **Centre prior.** Query ``q`` is in the prior of ground truth ``j`` if its point lies strictly
  inside box ``j`` *or* inside the square of half-side ``center_radius * stride`` around the
  centre of ``j`` (YOLOX's square "centre region"). YOLOX's unit is the anchor's stride in
  pixels; queries have no stride, so ``stride`` is one normalised length shared by all queries,
  by default ``1 / 80``: the finest stride of a 640-pixel input (8 px). With the default
  ``center_radius = 2.5`` a query within 2.5 / 80 = 0.031 of a centre is in that centre's prior.
  Queries outside every prior are never assigned (YOLOX's foreground mask).
* **Cost.** With ``p = sigmoid(pred_logits)`` (no objectness branch in DETR), the class cost of
  ``(q, j)`` is the BCE of ``p[q, c_j]`` against 1, i.e. ``-log p[q, c_j]``, on the GT's class
  column only; the IoU cost is ``-log(IoU + 1e-8)``; a pair outside ``j``'s prior costs 1e5
  more: ``cost = cls + iou_weight * iou_cost + 1e5 * (not in prior)``.
* **Dynamic k.** Each ground truth takes its ``k_j = max(1, int(sum of its candidate_topk
  largest IoUs over the candidates))`` cheapest candidates.
* **Conflicts.** A query taken by several ground truths keeps the one, among them, with the
  lowest cost (YOLOX takes the argmin over all ground truths; the difference is rare).

Boxes are ``cxcywh`` normalised.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from deim.losses.box_ops import box_cxcywh_to_xyxy, box_iou

OUTSIDE_PRIOR_COST = 1e5


def center_prior(points: Tensor, gt_boxes: Tensor, radius: float) -> Tensor:
    """``[Q, n]`` bool: point ``q`` (``[Q, 2]``) is inside box ``j`` (``[n, 4]`` cxcywh) or in the
    square of half-side ``radius`` around its centre."""
    gt_xyxy = box_cxcywh_to_xyxy(gt_boxes)
    x, y = points[:, 0:1], points[:, 1:2]
    in_box = (x > gt_xyxy[:, 0]) & (x < gt_xyxy[:, 2]) & (y > gt_xyxy[:, 1]) & (y < gt_xyxy[:, 3])
    in_center = ((x - gt_boxes[:, 0]).abs() < radius) & ((y - gt_boxes[:, 1]).abs() < radius)
    return in_box | in_center


def dynamic_k_matching(cost: Tensor, ious: Tensor, candidate_topk: int) -> Tensor:
    """``[K, n]`` bool matching of ``K`` candidates to ``n`` ground truths from ``[K, n]`` costs and IoUs.

    Ground truth ``j`` takes its ``max(1, int(sum of top-candidate_topk IoUs))`` cheapest
    candidates; a candidate taken several times keeps its cheapest ground truth.
    """
    num_candidates, num_gt = cost.shape
    top_ious = ious.topk(min(candidate_topk, num_candidates), dim=0).values
    dynamic_ks = top_ious.sum(0).int().clamp(min=1).tolist()
    matching = torch.zeros_like(cost, dtype=torch.bool)
    for gt, k in enumerate(dynamic_ks):
        matching[cost[:, gt].topk(k, largest=False).indices, gt] = True
    conflicted = matching.sum(1) > 1
    if conflicted.any():
        cheapest = cost.masked_fill(~matching, float("inf")).argmin(1)
        matching[conflicted] = False
        matching[conflicted, cheapest[conflicted]] = True
    return matching


def simota_assign(
    pred_logits: Tensor,
    pred_boxes: Tensor,
    gt_labels: Tensor,
    gt_boxes: Tensor,
    center_radius: float = 2.5,
    candidate_topk: int = 10,
    iou_weight: float = 3.0,
    ref_points: Tensor | None = None,
    stride: float = 1.0 / 80.0,
) -> tuple[Tensor, Tensor]:
    """SimOTA positives of one image.

    Args:
        pred_logits: ``[Q, C]`` raw class scores.
        pred_boxes: ``[Q, 4]`` cxcywh normalised.
        gt_labels: ``[n]`` int64 classes.
        gt_boxes: ``[n, 4]`` cxcywh normalised.
        center_radius: radius of the centre prior, in units of ``stride``.
        candidate_topk: how many of a ground truth's best IoUs make its dynamic k.
        iou_weight: weight of the ``-log IoU`` cost.
        ref_points: ``[Q, 2]`` normalised query points for the centre prior; default the box centres.
        stride: the normalised length ``center_radius`` is measured in (default 1/80).

    Returns:
        ``(query_idx, gt_idx)`` int64 on the device of the inputs, ordered by query: every
        positive pair, each query at most once, a ground truth possibly many times.
    """
    num_queries = pred_boxes.shape[0]
    if pred_logits.dim() != 2 or pred_logits.shape[0] != num_queries or pred_boxes.shape != (num_queries, 4):
        raise ValueError(f"expected pred_logits [Q, C] and pred_boxes [Q, 4], got {tuple(pred_logits.shape)} "
                         f"and {tuple(pred_boxes.shape)}")
    if gt_boxes.dim() != 2 or gt_boxes.shape[-1] != 4 or gt_labels.shape != gt_boxes.shape[:1]:
        raise ValueError(f"expected gt_labels [n] and gt_boxes [n, 4], got {tuple(gt_labels.shape)} "
                         f"and {tuple(gt_boxes.shape)}")
    if ref_points is not None and ref_points.shape != (num_queries, 2):
        raise ValueError(f"ref_points must have shape [Q, 2] = [{num_queries}, 2], got {tuple(ref_points.shape)}")
    empty = torch.zeros(0, dtype=torch.int64, device=pred_boxes.device)
    if num_queries == 0 or len(gt_boxes) == 0:
        return empty, empty.clone()

    with torch.no_grad():
        gt_boxes = gt_boxes.to(pred_boxes.dtype)
        points = pred_boxes[:, :2] if ref_points is None else ref_points
        in_prior = center_prior(points, gt_boxes, center_radius * stride)
        candidates = in_prior.any(1).nonzero().squeeze(1)
        if candidates.numel() == 0:
            return empty, empty.clone()
        ious = box_iou(box_cxcywh_to_xyxy(pred_boxes[candidates]), box_cxcywh_to_xyxy(gt_boxes))
        class_cost = F.softplus(-pred_logits[candidates][:, gt_labels])
        cost = (class_cost + iou_weight * -(ious + 1e-8).log()
                + OUTSIDE_PRIOR_COST * (~in_prior[candidates]).to(ious.dtype))
        candidate_idx, gt_idx = dynamic_k_matching(cost, ious, candidate_topk).nonzero(as_tuple=True)
    return candidates[candidate_idx], gt_idx


def count_matches_per_image(
    pred_logits: Tensor,
    pred_boxes: Tensor,
    targets: list[dict[str, Tensor]],
    ref_points: Tensor | None = None,
    **assign_kwargs: float,
) -> Tensor:
    """Number of SimOTA positive queries per image, ``[B]`` int64.

    Args:
        pred_logits: ``[B, Q, C]``; pred_boxes: ``[B, Q, 4]`` cxcywh normalised.
        targets: ``B`` dicts with ``labels [n_i]`` and ``boxes [n_i, 4]`` cxcywh normalised.
        ref_points: optional ``[B, Q, 2]``.
        assign_kwargs: passed to :func:`simota_assign`.
    """
    if len(targets) != pred_logits.shape[0]:
        raise ValueError(f"got {len(targets)} targets for a batch of {pred_logits.shape[0]} predictions")
    counts = []
    for image, target in enumerate(targets):
        points = None if ref_points is None else ref_points[image]
        query_idx, _ = simota_assign(pred_logits[image], pred_boxes[image], target["labels"], target["boxes"],
                                     ref_points=points, **assign_kwargs)
        counts.append(len(query_idx))
    return torch.tensor(counts, dtype=torch.int64)
