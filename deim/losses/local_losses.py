"""D-FINE's localisation losses on the per-edge bin distributions.

* FGL, fine-grained localisation: each edge's target offset falls between two bins
  (:func:`deim.models.box_coder.bbox2distance`); the loss is the cross entropy towards both,
  weighted by the linear interpolation weights, times the IoU of the matched box.
* DDF, decoupled distillation focal: the last decoder layer teaches the earlier ones, as a
  temperature-softened KL divergence between the corner distributions, weighted by the IoU
  for matched queries and by the teacher's top class score for the others. Matched and
  unmatched queries are averaged separately and mixed with weights ``sqrt(count * 8 / B)``.

Corner logits are ``[..., 4 * (reg_max + 1)]``: four edges (left, top, right, bottom), each a
distribution over ``reg_max + 1`` bins.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def fine_grained_localization_loss(
    pred_corners: Tensor,
    target_corners: Tensor,
    weight_right: Tensor,
    weight_left: Tensor,
    iou_weight: Tensor,
    num_boxes: float,
) -> Tensor:
    """FGL summed over edges and normalised by ``num_boxes``.

    Args:
        pred_corners: ``[E, reg_max + 1]`` logits, one row per edge (``E = 4 * matched boxes``).
        target_corners: ``[E]`` fractional left bin in ``[0, reg_max)``.
        weight_right, weight_left: ``[E]`` interpolation weights of bins ``floor`` and ``floor + 1``.
        iou_weight: ``[E]`` IoU of the matched box, repeated over its four edges.
    Returns:
        scalar tensor.
    """
    left_bin = target_corners.long()
    right_bin = left_bin + 1
    loss = (F.cross_entropy(pred_corners, left_bin, reduction="none") * weight_left.reshape(-1)
            + F.cross_entropy(pred_corners, right_bin, reduction="none") * weight_right.reshape(-1))
    loss = loss * iou_weight.float()
    return loss.sum() / num_boxes


def ddf_balance(num_matched: int, batch_size: int, num_queries: int) -> tuple[float, float]:
    """Mixing weights ``(w_pos, w_neg) = (sqrt(4 * matched * 8 / B), sqrt(4 * unmatched * 8 / B))``.

    Counts are over edges (4 per query); ``8 / B`` removes the dependence on the per-device
    batch size ``B``. Computed from the matches of the regular (non-denoising) queries and
    reused for the denoising queries, as in the official code.
    """
    batch_scale = 8 / batch_size
    num_unmatched = batch_size * num_queries - num_matched
    return math.sqrt(4 * num_matched * batch_scale), math.sqrt(4 * num_unmatched * batch_scale)


def decoupled_distillation_loss(
    pred_corners: Tensor,
    teacher_corners: Tensor,
    teacher_logits: Tensor,
    matched: tuple[Tensor, Tensor],
    matched_ious: Tensor,
    balance: tuple[float, float],
    temperature: float = 5.0,
) -> Tensor:
    """DDF loss of one decoder layer against the last layer (the teacher).

    Args:
        pred_corners, teacher_corners: ``[B, Q, 4 * (reg_max + 1)]`` corner logits; the teacher
            is detached here.
        teacher_logits: ``[B, Q, C]`` class logits of the teacher layer.
        matched: ``(batch_idx [K], query_idx [K])`` of the matched queries (distinct).
        matched_ious: ``[K]`` IoU of each matched query's box with its ground truth.
        balance: ``(w_pos, w_neg)`` from :func:`ddf_balance`.
    Returns:
        scalar tensor ``(w_pos * mean_matched + w_neg * mean_unmatched) / (w_pos + w_neg)``.
    """
    num_bins = pred_corners.shape[-1] // 4
    weight = teacher_logits.sigmoid().max(dim=-1).values  # [B, Q]
    is_matched = torch.zeros_like(weight, dtype=torch.bool)
    is_matched[matched] = True
    weight[matched] = matched_ious.to(weight.dtype)
    weight = weight.unsqueeze(-1).repeat(1, 1, 4).reshape(-1).detach()
    is_matched = is_matched.unsqueeze(-1).repeat(1, 1, 4).reshape(-1)

    log_p = F.log_softmax(pred_corners.reshape(-1, num_bins) / temperature, dim=1)
    q = F.softmax(teacher_corners.reshape(-1, num_bins).detach() / temperature, dim=1)
    per_edge = weight * (temperature ** 2) * F.kl_div(log_p, q, reduction="none").sum(-1)

    mean_matched = per_edge[is_matched].mean() if is_matched.any() else per_edge.new_zeros(())
    mean_unmatched = per_edge[~is_matched].mean() if (~is_matched).any() else per_edge.new_zeros(())
    w_pos, w_neg = balance
    return (mean_matched * w_pos + mean_unmatched * w_neg) / (w_pos + w_neg)
