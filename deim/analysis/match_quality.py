"""Match quality of a trained detector: does its score say how well its box is placed?

The paper's case for MAL (Sec. 3.3) is about matched pairs: VFL gives a low-IoU match almost no
loss, so a detector may learn confident scores for poorly placed boxes; MAL's ``IoU^gamma`` target
punishes that. Two views of one model on a validation set (eval mode, final decoder layer):

* **matched pairs** (:func:`matched_pairs`): the one-to-one Hungarian matches of the training
  matcher between the queries and an image's ground truths; per pair the IoU of the matched box
  with its ground truth and the score ``sigmoid(logit)`` of the ground truth's class. Summaries:
  the Spearman rank correlation of IoU and score (:func:`spearman`), and the share of matches
  placed badly (IoU < 0.5) yet scored above the median (:func:`confident_poor_share`).
* **detections** (:func:`detection_ious`): the post-processor's top-k (query, class) detections
  above a score floor; per detection its score and its IoU with the best ground truth *of the same
  class* (0 when the image has none), whose calibration :mod:`deim.analysis.calibration` measures.

Boxes: the model's ``pred_boxes`` and the targets' ``boxes`` are ``cxcywh`` normalised to the
image; detections are ``xyxy`` normalised (the post-processor called with unit image sizes).
IoU does not change when both boxes are scaled per axis, so it equals the IoU in pixels.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
import torch
from scipy import stats
from torch import nn

from deim.losses.box_ops import box_cxcywh_to_xyxy, box_iou, paired_box_iou
from deim.losses.matcher import HungarianMatcher

Target = dict[str, torch.Tensor]
PAIR_COLUMNS = ("image_id", "iou", "score")
DETECTION_COLUMNS = ("image_id", "label", "score", "iou")


def _image_id(target: Target, fallback: int) -> int:
    return int(target["image_id"]) if "image_id" in target else fallback


@torch.no_grad()
def matched_pairs(outputs: dict[str, torch.Tensor], targets: Sequence[Target],
                  matcher: HungarianMatcher) -> pd.DataFrame:
    """One row per one-to-one match of a batch: ``image_id``, ``iou``, ``score``.

    Args:
        outputs: ``pred_logits [B, Q, C]`` (raw) and ``pred_boxes [B, Q, 4]`` (cxcywh normalised).
        targets: ``B`` dicts with ``labels [n_i]`` and ``boxes [n_i, 4]`` (cxcywh normalised), and
            ``image_id`` (else the batch position is used).
        matcher: the Hungarian matcher (its costs decide the pairs).

    ``score`` is ``sigmoid(pred_logits[b, q, label_j])`` of the matched query ``q`` and ground
    truth ``j``; ``iou`` the IoU of the two boxes.
    """
    logits, boxes = outputs["pred_logits"].float().cpu(), outputs["pred_boxes"].float().cpu()
    targets = [{"labels": t["labels"].cpu().long(), "boxes": t["boxes"].float().cpu(), **(
        {"image_id": t["image_id"]} if "image_id" in t else {})} for t in targets]
    indices = matcher({"pred_logits": logits, "pred_boxes": boxes}, targets)
    rows: list[pd.DataFrame] = []
    for b, ((queries, gts), target) in enumerate(zip(indices, targets)):
        if len(queries) == 0:
            continue
        labels = target["labels"][gts]
        score = logits[b, queries, labels].sigmoid()
        iou = paired_box_iou(box_cxcywh_to_xyxy(boxes[b, queries]), box_cxcywh_to_xyxy(target["boxes"][gts]))
        rows.append(pd.DataFrame({"image_id": _image_id(target, b), "iou": iou.numpy().astype(np.float64),
                                  "score": score.numpy().astype(np.float64)}))
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=list(PAIR_COLUMNS))


def detection_ious(detections: Sequence[dict[str, torch.Tensor]], targets: Sequence[Target],
                   min_score: float = 0.0) -> pd.DataFrame:
    """One row per detection scored ``>= min_score``: ``image_id``, ``label``, ``score``, ``iou``.

    Args:
        detections: per image ``labels [K]``, ``boxes [K, 4]`` (xyxy normalised), ``scores [K]``.
        targets: per image ``labels [n]`` and ``boxes [n, 4]`` (cxcywh normalised), ``image_id``.
        min_score: detections below this score are dropped.

    ``iou`` is the highest IoU with a ground truth of the detection's class, 0 when there is none.
    """
    rows: list[pd.DataFrame] = []
    for i, (det, target) in enumerate(zip(detections, targets)):
        keep = det["scores"] >= min_score
        labels, scores = det["labels"][keep].cpu(), det["scores"][keep].float().cpu()
        boxes = det["boxes"][keep].float().cpu()
        if len(scores) == 0:
            continue
        gt_boxes, gt_labels = box_cxcywh_to_xyxy(target["boxes"].float().cpu()), target["labels"].cpu()
        if len(gt_labels):
            ious = box_iou(boxes, gt_boxes) * (labels[:, None] == gt_labels[None, :])
            best = ious.max(dim=1).values
        else:
            best = torch.zeros(len(scores))
        rows.append(pd.DataFrame({"image_id": _image_id(target, i), "label": labels.numpy().astype(np.int64),
                                  "score": scores.numpy().astype(np.float64), "iou": best.numpy().astype(np.float64)}))
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=list(DETECTION_COLUMNS))


@torch.no_grad()
def collect(model: nn.Module, postprocessor: nn.Module, matcher: HungarianMatcher, loader: Iterable,
            device: torch.device | str = "cpu", min_score: float = 0.05) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(pairs, detections)`` of ``model`` over ``loader`` (see :func:`matched_pairs` and
    :func:`detection_ious`); the model runs in eval mode.

    ``loader`` yields ``(images [B, 3, H, W], targets)`` as the validation loader does; the
    post-processor gets unit image sizes so that its boxes stay normalised.
    """
    model.eval()
    pairs, detections = [], []
    for images, targets in loader:
        outputs = model(images.to(device))
        outputs = {"pred_logits": outputs["pred_logits"].float(), "pred_boxes": outputs["pred_boxes"].float()}
        pairs.append(matched_pairs(outputs, targets, matcher))
        unit = torch.ones(len(targets), 2, device=outputs["pred_boxes"].device)
        detections.append(detection_ious(postprocessor(outputs, unit), targets, min_score))
    return (pd.concat(pairs, ignore_index=True) if pairs else pd.DataFrame(columns=list(PAIR_COLUMNS)),
            pd.concat(detections, ignore_index=True) if detections else pd.DataFrame(columns=list(DETECTION_COLUMNS)))


def spearman(iou, score) -> float:
    """Spearman rank correlation of IoU and score (ties get their mean rank); NaN with fewer than
    two pairs or when either side is constant."""
    iou, score = np.asarray(iou, dtype=np.float64), np.asarray(score, dtype=np.float64)
    if iou.size < 2 or np.ptp(iou) == 0 or np.ptp(score) == 0:
        return float("nan")
    return float(stats.spearmanr(iou, score).statistic)


def confident_poor_share(iou, score, iou_below: float = 0.5) -> float:
    """Share of all matches with ``IoU < iou_below`` whose score is above the median score of the
    matches (strictly); NaN without matches. A score that tracks IoU keeps this near 0; a score
    blind to IoU puts about half of the poor matches above the median."""
    iou, score = np.asarray(iou, dtype=np.float64), np.asarray(score, dtype=np.float64)
    if iou.size == 0:
        return float("nan")
    return float(np.mean((iou < iou_below) & (score > np.median(score))))
