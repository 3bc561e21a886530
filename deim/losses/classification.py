"""Classification losses of DETR-style detectors with sigmoid scores: MAL, VFL and focal loss.

All three take raw ``logits [B, Q, C]`` and one-hot float ``targets [B, Q, C]`` (1 at the
matched class of a matched query, 0 elsewhere; unmatched queries are all zeros). MAL and VFL
also take ``ious [B, Q]``: the IoU of each matched query's box with its ground truth (0 for
unmatched queries), used as a detached quality target.

With ``p = sigmoid(logits)`` (detached where it is a weight), ``q`` the IoU, ``t`` the one-hot:

* **MAL** (DEIM, Huang et al. 2025): ``BCE(logits, (q t)^gamma)`` weighted by
  ``p^gamma (1 - t) + t`` (``alpha p^gamma (1 - t) + t`` if ``alpha`` is given). Positives get
  weight 1 whatever their IoU, so a low-IoU match is still pushed towards its (small) target.
* **VFL** (VarifocalNet, Zhang et al. 2021): ``BCE(logits, q t)`` weighted by
  ``alpha p^gamma (1 - t) + q t``: positives are weighted by their IoU.
* **Focal** (Lin et al. 2017): ``torchvision.ops.sigmoid_focal_loss``.

Reductions: ``"normalized"`` is the official DETR one, ``loss.mean(1).sum() * Q / num_boxes``
(the sum over all ``B*Q*C`` elements divided by the number of ground-truth boxes);
``"sum"`` the plain sum; ``"none"`` the element-wise ``[B, Q, C]`` tensor.
"""

from __future__ import annotations

import torch.nn.functional as F
import torchvision
from torch import Tensor

REDUCTIONS = ("normalized", "sum", "none")


def _check_inputs(logits: Tensor, targets: Tensor, ious: Tensor | None, reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if logits.dim() != 3:
        raise ValueError(f"logits must have shape [B, Q, C], got {tuple(logits.shape)}")
    if targets.shape != logits.shape:
        raise ValueError(f"targets must have the shape of logits {tuple(logits.shape)}, got {tuple(targets.shape)}")
    if ious is not None and ious.shape != logits.shape[:2]:
        raise ValueError(f"ious must have shape [B, Q] = {tuple(logits.shape[:2])}, got {tuple(ious.shape)}")


def _reduce(loss: Tensor, num_boxes: float, reduction: str) -> Tensor:
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    return loss.mean(1).sum() * loss.shape[1] / num_boxes


def matchability_aware_loss(
    logits: Tensor,
    targets: Tensor,
    ious: Tensor,
    num_boxes: float,
    gamma: float = 1.5,
    alpha: float | None = None,
    reduction: str = "normalized",
) -> Tensor:
    """DEIM's Matchability-Aware Loss.

    Args:
        logits: ``[B, Q, C]`` raw class scores.
        targets: ``[B, Q, C]`` one-hot float targets (all zeros for unmatched queries).
        ious: ``[B, Q]`` IoU of each matched query with its ground truth, 0 elsewhere (detached here).
        num_boxes: normaliser of the ``"normalized"`` reduction (ground-truth boxes in the batch).
        gamma: exponent of the IoU target and focusing exponent on negatives (1.5 in DEIM's configs).
        alpha: optional weight of the negatives (``None`` in every official config).
        reduction: ``"normalized"``, ``"sum"`` or ``"none"``.
    """
    _check_inputs(logits, targets, ious, reduction)
    targets = targets.to(logits.dtype)
    quality = ious.detach().to(logits.dtype)[..., None]
    target_score = (quality * targets).pow(gamma)
    prob = logits.detach().sigmoid()
    focusing = prob.pow(gamma) if alpha is None else alpha * prob.pow(gamma)
    weight = focusing * (1 - targets) + targets
    loss = F.binary_cross_entropy_with_logits(logits, target_score, weight=weight, reduction="none")
    return _reduce(loss, num_boxes, reduction)


def varifocal_loss(
    logits: Tensor,
    targets: Tensor,
    ious: Tensor,
    num_boxes: float,
    alpha: float = 0.75,
    gamma: float = 2.0,
    reduction: str = "normalized",
) -> Tensor:
    """Varifocal loss, as used by RT-DETR and D-FINE.

    Args:
        logits: ``[B, Q, C]`` raw class scores.
        targets: ``[B, Q, C]`` one-hot float targets (all zeros for unmatched queries).
        ious: ``[B, Q]`` IoU of each matched query with its ground truth, 0 elsewhere (detached here).
        num_boxes: normaliser of the ``"normalized"`` reduction.
        alpha: weight of the negatives.
        gamma: focusing exponent on negatives.
        reduction: ``"normalized"``, ``"sum"`` or ``"none"``.
    """
    _check_inputs(logits, targets, ious, reduction)
    targets = targets.to(logits.dtype)
    target_score = ious.detach().to(logits.dtype)[..., None] * targets
    prob = logits.detach().sigmoid()
    weight = alpha * prob.pow(gamma) * (1 - targets) + target_score
    loss = F.binary_cross_entropy_with_logits(logits, target_score, weight=weight, reduction="none")
    return _reduce(loss, num_boxes, reduction)


def focal_loss(
    logits: Tensor,
    targets: Tensor,
    num_boxes: float,
    alpha: float = 0.25,
    gamma: float = 2.0,
    reduction: str = "normalized",
) -> Tensor:
    """Sigmoid focal loss on ``[B, Q, C]`` logits and one-hot float targets."""
    _check_inputs(logits, targets, None, reduction)
    loss = torchvision.ops.sigmoid_focal_loss(logits, targets.to(logits.dtype), alpha, gamma, reduction="none")
    return _reduce(loss, num_boxes, reduction)
