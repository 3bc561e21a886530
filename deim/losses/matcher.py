"""One-to-one Hungarian matching of DETR queries to ground-truth boxes.

The cost of assigning query ``q`` to ground truth ``j`` (class ``c_j``, box ``b_j``) is

    C[q, j] = cost_bbox * |b_q - b_j|_1 + cost_class * focal(p[q, c_j]) + cost_giou * (-GIoU(b_q, b_j))

with ``p = sigmoid(logits)`` and the focal class cost
``alpha (1 - p)^gamma (-log(p + 1e-8)) - (1 - alpha) p^gamma (-log(1 - p + 1e-8))``
(the focal loss of ``p`` as a positive minus its focal loss as a negative). Boxes are ``cxcywh``
normalised; the L1 term is on ``cxcywh``, the GIoU on ``xyxy``. NaN costs are replaced by 1.
Each image is then solved exactly with ``scipy.optimize.linear_sum_assignment``.

The cost is computed for the whole batch at once (``[B*Q, sum n_i]``) in the same order of
operations as the official DEIM matcher, so both give identical assignments.
"""

from __future__ import annotations

import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn

from deim.losses.box_ops import box_cxcywh_to_xyxy, generalized_box_iou


def _focal_class_cost(prob: Tensor, alpha: float, gamma: float) -> Tensor:
    """Focal cost of calling ``prob`` a positive, relative to calling it a negative."""
    negative = (1 - alpha) * (prob**gamma) * (-(1 - prob + 1e-8).log())
    positive = alpha * ((1 - prob) ** gamma) * (-(prob + 1e-8).log())
    return positive - negative


class HungarianMatcher(nn.Module):
    """Optimal one-to-one assignment of queries to ground truths, per image.

    Args:
        cost_class: weight of the focal class cost.
        cost_bbox: weight of the L1 distance of ``cxcywh`` boxes.
        cost_giou: weight of the negative generalised IoU.
        alpha, gamma: parameters of the focal class cost.
    """

    def __init__(
        self,
        cost_class: float = 2.0,
        cost_bbox: float = 5.0,
        cost_giou: float = 2.0,
        alpha: float = 0.25,
        gamma: float = 2.0,
    ) -> None:
        super().__init__()
        if cost_class == 0 and cost_bbox == 0 and cost_giou == 0:
            raise ValueError("at least one of cost_class, cost_bbox, cost_giou must be non-zero, got all 0")
        self.cost_class = cost_class
        self.cost_bbox = cost_bbox
        self.cost_giou = cost_giou
        self.alpha = alpha
        self.gamma = gamma

    @property
    def weight_dict(self) -> dict[str, float]:
        """The cost weights, under the official configuration's names."""
        return {"cost_class": self.cost_class, "cost_bbox": self.cost_bbox, "cost_giou": self.cost_giou}

    def extra_repr(self) -> str:
        weights = ", ".join(f"{name}={value}" for name, value in self.weight_dict.items())
        return f"{weights}, alpha={self.alpha}, gamma={self.gamma}"

    @torch.no_grad()
    def cost_matrix(self, outputs: dict[str, Tensor], targets: list[dict[str, Tensor]]) -> list[Tensor]:
        """Per image the ``[Q, n_i]`` cost matrix (on the CPU, NaN replaced by 1).

        Args:
            outputs: ``pred_logits [B, Q, C]`` raw scores and ``pred_boxes [B, Q, 4]`` cxcywh normalised.
            targets: ``B`` dicts with ``labels [n_i]`` int64 and ``boxes [n_i, 4]`` cxcywh normalised.
        """
        logits, boxes = outputs["pred_logits"], outputs["pred_boxes"]
        batch_size, num_queries = logits.shape[:2]
        if len(targets) != batch_size:
            raise ValueError(f"got {len(targets)} targets for a batch of {batch_size} predictions")
        if boxes.shape[:2] != logits.shape[:2] or boxes.shape[-1] != 4:
            raise ValueError(f"pred_boxes must have shape [B, Q, 4] = [{batch_size}, {num_queries}, 4], "
                             f"got {tuple(boxes.shape)}")

        prob = logits.flatten(0, 1).sigmoid()
        pred_boxes = boxes.flatten(0, 1)
        gt_labels = torch.cat([t["labels"] for t in targets]).to(device=logits.device, dtype=torch.int64)
        gt_boxes = torch.cat([t["boxes"] for t in targets]).to(device=boxes.device, dtype=boxes.dtype)

        class_cost = _focal_class_cost(prob[:, gt_labels], self.alpha, self.gamma)
        bbox_cost = torch.cdist(pred_boxes, gt_boxes, p=1)
        giou_cost = -generalized_box_iou(box_cxcywh_to_xyxy(pred_boxes), box_cxcywh_to_xyxy(gt_boxes))

        cost = self.cost_bbox * bbox_cost + self.cost_class * class_cost + self.cost_giou * giou_cost
        cost = torch.nan_to_num(cost.view(batch_size, num_queries, -1).cpu(), nan=1.0)
        sizes = [len(t["boxes"]) for t in targets]
        return [block[image] for image, block in enumerate(cost.split(sizes, dim=-1))]

    @torch.no_grad()
    def forward(self, outputs: dict[str, Tensor], targets: list[dict[str, Tensor]]) -> list[tuple[Tensor, Tensor]]:
        """Match each image's queries to its ground truths.

        Returns:
            Per image ``(query_idx, target_idx)``, int64 CPU tensors of length ``min(Q, n_i)``,
            ``query_idx`` ascending (as ``linear_sum_assignment`` returns them).
        """
        indices = []
        for cost in self.cost_matrix(outputs, targets):
            query_idx, target_idx = linear_sum_assignment(cost.numpy())
            indices.append((torch.as_tensor(query_idx, dtype=torch.int64),
                            torch.as_tensor(target_idx, dtype=torch.int64)))
        return indices
