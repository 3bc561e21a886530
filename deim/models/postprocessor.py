"""From decoder outputs to detections: top-k scores, labels and boxes in pixels.

``PostProcessor`` turns ``{"pred_logits" [B, Q, C], "pred_boxes" [B, Q, 4] cxcywh
normalised}`` and the original image sizes ``[B, 2]`` as ``(w, h)`` into ``K`` detections
per image, boxes ``xyxy`` in pixels of the original image:

* sigmoid scores (``use_focal_loss=True``, every DEIM model): the ``K`` best of all ``Q * C``
  (query, class) scores; a query may appear once per class;
* softmax scores (``use_focal_loss=False``, models with a "no object" logit as class
  ``C - 1``): each query's best real class, then the ``K`` best queries.

Differences from the official code (which we do not copy): the softmax branch takes the
softmax over classes (the official omits ``dim`` and normalises over the batch) and returns
boxes in pixels ``xyxy`` (the official returns the normalised cxcywh boxes there).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import box_convert

from deim.data.labels import LabelMap

COCO_NUM_CLASSES = 80


class PostProcessor(nn.Module):
    """Top-``num_top_queries`` detections per image.

    Args:
        num_classes: ``C``, the width of ``pred_logits`` (including the "no object" class
            for softmax scores).
        num_top_queries: ``K``, detections kept per image.
        use_focal_loss: sigmoid scores over (query, class) pairs, else softmax per query.
        remap_mscoco_category: report COCO category ids (1..90) instead of labels 0..79;
            needs ``num_classes == 80`` and is unavailable in deploy mode.
    """

    def __init__(self, num_classes: int = 80, num_top_queries: int = 300, use_focal_loss: bool = True,
                 remap_mscoco_category: bool = False) -> None:
        super().__init__()
        if num_top_queries < 1:
            raise ValueError(f"num_top_queries must be >= 1, got {num_top_queries}")
        if remap_mscoco_category and num_classes != COCO_NUM_CLASSES:
            raise ValueError(f"remap_mscoco_category=True needs num_classes={COCO_NUM_CLASSES}, got {num_classes}")
        self.num_classes = int(num_classes)
        self.num_top_queries = int(num_top_queries)
        self.use_focal_loss = use_focal_loss
        self.remap_mscoco_category = remap_mscoco_category
        self.deploy_mode = False
        if remap_mscoco_category:
            self.register_buffer("category_ids", torch.tensor(LabelMap.coco().category_ids), persistent=False)

    def extra_repr(self) -> str:
        return (f"num_classes={self.num_classes}, num_top_queries={self.num_top_queries}, "
                f"use_focal_loss={self.use_focal_loss}, remap_mscoco_category={self.remap_mscoco_category}")

    def deploy(self) -> "PostProcessor":
        """Switch to eval and deploy mode (batched tuple output, for export); returns ``self``."""
        if self.remap_mscoco_category:
            raise ValueError("deploy mode needs remap_mscoco_category=False; map labels to COCO category ids "
                             "after inference")
        self.eval()
        self.deploy_mode = True
        return self

    def forward(self, outputs: dict[str, torch.Tensor], orig_target_sizes: torch.Tensor
                ) -> list[dict[str, torch.Tensor]] | tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """
        Args:
            outputs: ``pred_logits [B, Q, C]`` and ``pred_boxes [B, Q, 4]`` (cxcywh normalised).
            orig_target_sizes: ``[B, 2]`` image sizes as ``(w, h)`` in pixels.

        Returns:
            per image ``{"labels": [K] int64, "boxes": [K, 4] xyxy pixels, "scores": [K]}``,
            sorted by decreasing score; in deploy mode the batched tuple
            ``(labels [B, K], boxes [B, K, 4], scores [B, K])``.
        """
        logits, boxes = outputs["pred_logits"], outputs["pred_boxes"]
        if logits.shape[-1] != self.num_classes:
            raise ValueError(f"pred_logits has {logits.shape[-1]} classes, expected num_classes={self.num_classes}")
        if orig_target_sizes.shape != (boxes.shape[0], 2):
            raise ValueError(f"orig_target_sizes must be [B, 2] = [{boxes.shape[0]}, 2] as (w, h), "
                             f"got {list(orig_target_sizes.shape)}")
        boxes = box_convert(boxes, in_fmt="cxcywh", out_fmt="xyxy")
        boxes = boxes * orig_target_sizes.repeat(1, 2).unsqueeze(1)

        if self.use_focal_loss:
            labels, query_index, scores = self._top_pairs(logits)
        else:
            labels, query_index, scores = self._top_queries(logits)
        boxes = boxes.gather(dim=1, index=query_index.unsqueeze(-1).repeat(1, 1, boxes.shape[-1]))

        if self.deploy_mode:
            return labels, boxes, scores
        if self.remap_mscoco_category:
            labels = self.category_ids.to(labels.device)[labels]
        return [{"labels": lab, "boxes": box, "scores": sco} for lab, box, sco in zip(labels, boxes, scores)]

    def _top_pairs(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sigmoid scores: the ``K`` best (query, class) pairs -> ``(labels, query index, scores)`` ``[B, K]``."""
        num_pairs = logits.shape[1] * logits.shape[2]
        if self.num_top_queries > num_pairs:
            raise ValueError(f"num_top_queries={self.num_top_queries} exceeds the {num_pairs} (query, class) pairs")
        scores, index = torch.topk(torch.sigmoid(logits).flatten(1), self.num_top_queries, dim=-1)
        # a - a // b * b rather than %, which older TensorRT versions cannot parse
        labels = index - index // self.num_classes * self.num_classes
        return labels, index // self.num_classes, scores

    def _top_queries(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Softmax scores (last class = no object): best class per query, then the ``K`` best queries."""
        scores, labels = F.softmax(logits, dim=-1)[..., :-1].max(dim=-1)
        k = min(self.num_top_queries, logits.shape[1])
        scores, index = torch.topk(scores, k, dim=-1)
        return labels.gather(dim=1, index=index), index, scores
