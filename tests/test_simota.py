"""Tests of the SimOTA one-to-many assigner on hand-made cases and against a scalar reference."""
from __future__ import annotations

import math

import pytest
import torch

from deim.losses.simota import count_matches_per_image, simota_assign

GT = torch.tensor([[0.5, 0.5, 0.4, 0.4]])


def logits_for(num_queries: int, num_classes: int = 3, score: float = 2.0) -> torch.Tensor:
    """All queries equally confident (``score``) in class 0, ``-score`` elsewhere."""
    logits = torch.full((num_queries, num_classes), -score)
    logits[:, 0] = score
    return logits


def iou_cxcywh(a, b) -> float:
    ax0, ay0, ax1, ay1 = a[0] - a[2] / 2, a[1] - a[3] / 2, a[0] + a[2] / 2, a[1] + a[3] / 2
    bx0, by0, bx1, by1 = b[0] - b[2] / 2, b[1] - b[3] / 2, b[0] + b[2] / 2, b[1] + b[3] / 2
    inter = max(0.0, min(ax1, bx1) - max(ax0, bx0)) * max(0.0, min(ay1, by1) - max(ay0, by0))
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def test_one_gt_gets_dynamic_k_best_queries():
    # widths shrink from 0.4: IoU with the GT = w / 0.4 = 0.95, 0.9, 0.85, 0.8, 0.3 (all centred)
    widths = [0.38, 0.36, 0.34, 0.32, 0.12]
    boxes = torch.tensor([[0.5, 0.5, w, 0.4] for w in widths])
    expected_k = int(sum(w / 0.4 for w in widths))  # 3.8 -> 3
    assert expected_k == 3
    query_idx, gt_idx = simota_assign(logits_for(5), boxes, torch.tensor([0]), GT)
    assert query_idx.tolist() == [0, 1, 2]
    assert gt_idx.tolist() == [0, 0, 0]


def test_candidate_topk_caps_dynamic_k():
    boxes = torch.tensor([[0.5, 0.5, 0.4, 0.4]] * 6)  # six perfect queries, IoU 1 each
    query_idx, _ = simota_assign(logits_for(6), boxes, torch.tensor([0]), GT, candidate_topk=4)
    assert len(query_idx) == 4
    query_idx, _ = simota_assign(logits_for(6), boxes, torch.tensor([0]), GT)
    assert len(query_idx) == 6


def test_dynamic_k_is_at_least_one():
    boxes = torch.tensor([[0.5, 0.5, 0.02, 0.02], [0.45, 0.5, 0.01, 0.01]])  # tiny IoUs, sum < 1
    query_idx, _ = simota_assign(logits_for(2), boxes, torch.tensor([0]), GT)
    assert query_idx.tolist() == [0]


def test_query_outside_every_prior_is_never_assigned():
    boxes = torch.tensor([[0.5, 0.5, 0.4, 0.4], [0.5, 0.5, 0.2, 0.2]])
    # query 0 has the perfect box, but its reference point lies far from the GT
    ref_points = torch.tensor([[0.95, 0.05], [0.5, 0.5]])
    query_idx, _ = simota_assign(logits_for(2), boxes, torch.tensor([0]), GT, ref_points=ref_points)
    assert query_idx.tolist() == [1]
    # without ref_points the box centre is used, and query 0 wins
    query_idx, _ = simota_assign(logits_for(2), boxes, torch.tensor([0]), GT)
    assert query_idx.tolist() == [0]


@pytest.mark.parametrize("offset, inside", [(0.02, True), (0.04, False)])
def test_centre_region_radius(offset, inside):
    small_gt = torch.tensor([[0.5, 0.5, 0.02, 0.02]])  # box half-size 0.01 < radius 2.5 / 80 = 0.03125
    boxes = torch.tensor([[0.5 + offset, 0.5, 0.02, 0.02]])
    query_idx, _ = simota_assign(logits_for(1), boxes, torch.tensor([0]), small_gt)
    assert (len(query_idx) == 1) == inside


def test_conflict_keeps_the_cheapest_gt():
    gts = torch.tensor([[0.45, 0.5, 0.3, 0.3], [0.55, 0.5, 0.3, 0.3]])
    labels = torch.tensor([0, 1])
    boxes = torch.tensor([[0.5, 0.5, 0.3, 0.3]])  # same IoU with both; a single candidate for both
    logits = torch.tensor([[-3.0, 3.0, -3.0]])
    query_idx, gt_idx = simota_assign(logits, boxes, labels, gts)
    assert query_idx.tolist() == [0] and gt_idx.tolist() == [1]
    query_idx, gt_idx = simota_assign(logits[:, [1, 0, 2]], boxes, labels, gts)
    assert query_idx.tolist() == [0] and gt_idx.tolist() == [0]


def test_empty_inputs():
    boxes = torch.tensor([[0.5, 0.5, 0.4, 0.4]])
    query_idx, gt_idx = simota_assign(logits_for(1), boxes, torch.zeros(0, dtype=torch.int64), torch.zeros(0, 4))
    assert query_idx.shape == gt_idx.shape == (0,) and query_idx.dtype == torch.int64
    far = torch.tensor([[0.05, 0.05, 0.05, 0.05]])
    query_idx, _ = simota_assign(logits_for(1), far, torch.tensor([0]), GT)
    assert query_idx.numel() == 0


def reference_simota(logits, boxes, labels, gts, radius=2.5 / 80, topk=10, iou_weight=3.0):
    """Straightforward scalar re-statement of the documented algorithm."""
    num_q, num_gt = len(boxes), len(gts)

    def in_prior(q, j):
        (x, y), (cx, cy, w, h) = boxes[q][:2], gts[j]
        in_box = cx - w / 2 < x < cx + w / 2 and cy - h / 2 < y < cy + h / 2
        return in_box or (abs(x - cx) < radius and abs(y - cy) < radius)

    candidates = [q for q in range(num_q) if any(in_prior(q, j) for j in range(num_gt))]
    cost, iou = {}, {}
    for q in candidates:
        for j in range(num_gt):
            iou[q, j] = iou_cxcywh(boxes[q], gts[j])
            p = 1 / (1 + math.exp(-logits[q][labels[j]]))
            cost[q, j] = -math.log(p) - iou_weight * math.log(iou[q, j] + 1e-8) + (0 if in_prior(q, j) else 1e5)
    chosen = {}
    for j in range(num_gt):
        k = max(1, int(sum(sorted((iou[q, j] for q in candidates), reverse=True)[:topk])))
        for q in sorted(candidates, key=lambda q: cost[q, j])[:k]:
            chosen.setdefault(q, []).append(j)
    return {q: min(js, key=lambda j: cost[q, j]) for q, js in chosen.items()}


@pytest.mark.parametrize("seed", range(4))
def test_matches_scalar_reference_on_random_problems(seed):
    g = torch.Generator().manual_seed(seed)
    num_q, num_gt, num_classes = 40, 4, 3
    gts = torch.rand(num_gt, 4, generator=g, dtype=torch.float64) * 0.5 + 0.25
    gts[:, 2:] = gts[:, 2:] * 0.5
    boxes = gts[torch.randint(0, num_gt, (num_q,), generator=g)]
    boxes = boxes + torch.randn(num_q, 4, generator=g, dtype=torch.float64) * 0.05
    boxes[:, 2:] = boxes[:, 2:].abs() + 0.01
    logits = torch.randn(num_q, num_classes, generator=g, dtype=torch.float64) * 2
    labels = torch.randint(0, num_classes, (num_gt,), generator=g)

    query_idx, gt_idx = simota_assign(logits, boxes, labels, gts)
    expected = reference_simota(logits.tolist(), boxes.tolist(), labels.tolist(), gts.tolist())
    assert dict(zip(query_idx.tolist(), gt_idx.tolist())) == expected
    assert query_idx.tolist() == sorted(set(query_idx.tolist()))
    assert len(query_idx) > num_gt  # one-to-many: more positives than ground truths


def test_count_matches_per_image():
    boxes = torch.tensor([[[0.5, 0.5, 0.4, 0.4]] * 3, [[0.5, 0.5, 0.38, 0.4]] * 3])
    logits = torch.stack([logits_for(3), logits_for(3)])
    targets = [{"labels": torch.tensor([0]), "boxes": GT},
               {"labels": torch.zeros(0, dtype=torch.int64), "boxes": torch.zeros(0, 4)}]
    assert count_matches_per_image(logits, boxes, targets).tolist() == [3, 0]
    assert count_matches_per_image(logits, boxes, targets[::-1]).tolist() == [0, 2]  # 3 * 0.95 -> k = 2
    assert count_matches_per_image(logits, boxes, targets, candidate_topk=1).tolist() == [1, 0]


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="pred_boxes"):
        simota_assign(logits_for(2), torch.zeros(3, 4), torch.tensor([0]), GT)
    with pytest.raises(ValueError, match="gt_labels"):
        simota_assign(logits_for(2), torch.zeros(2, 4), torch.tensor([0, 1]), GT)
    with pytest.raises(ValueError, match="ref_points"):
        simota_assign(logits_for(2), torch.zeros(2, 4), torch.tensor([0]), GT, ref_points=torch.zeros(2, 3))
