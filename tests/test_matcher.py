"""Tests of the Hungarian matcher: optimality by brute force, hand-computed cost, edge cases."""
from __future__ import annotations

import itertools
import math

import pytest
import torch

from deim.losses.matcher import HungarianMatcher


def random_outputs(batch: int, queries: int, classes: int, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    boxes = torch.rand(batch, queries, 4, generator=g)
    boxes[..., 2:] = boxes[..., 2:] * 0.4 + 0.05
    return {"pred_logits": torch.randn(batch, queries, classes, generator=g) * 2, "pred_boxes": boxes}


def random_target(num: int, classes: int, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    boxes = torch.rand(num, 4, generator=g)
    boxes[:, 2:] = boxes[:, 2:] * 0.4 + 0.05
    return {"labels": torch.randint(0, classes, (num,), generator=g), "boxes": boxes}


def brute_force_optimum(cost: torch.Tensor) -> float:
    """Minimum total cost over all one-to-one assignments of size min(Q, n)."""
    num_queries, num_gt = cost.shape
    if num_queries >= num_gt:
        return min(sum(cost[q, j].item() for j, q in enumerate(qs))
                   for qs in itertools.permutations(range(num_queries), num_gt))
    return min(sum(cost[q, j].item() for q, j in enumerate(js))
               for js in itertools.permutations(range(num_gt), num_queries))


@pytest.mark.parametrize("seed", range(6))
def test_assignment_is_optimal_against_brute_force(seed):
    num_gt = [1, 3, 4, 6]
    outputs = random_outputs(len(num_gt), 5, 3, seed)
    targets = [random_target(n, 3, 100 * seed + i) for i, n in enumerate(num_gt)]
    matcher = HungarianMatcher()
    indices = matcher(outputs, targets)
    for (query_idx, gt_idx), cost, n in zip(indices, matcher.cost_matrix(outputs, targets), num_gt):
        assert len(query_idx) == len(gt_idx) == min(5, n)
        assert query_idx.dtype == gt_idx.dtype == torch.int64
        assert torch.all(query_idx[1:] > query_idx[:-1])
        assert len(set(gt_idx.tolist())) == len(gt_idx)
        assert cost[query_idx, gt_idx].sum().item() == pytest.approx(brute_force_optimum(cost), abs=1e-5)


def test_cost_of_one_query_and_one_box_by_hand():
    logit, alpha, gamma = 0.3, 0.25, 2.0
    pred = [0.5, 0.5, 0.2, 0.2]  # xyxy [0.4, 0.4, 0.6, 0.6], area 0.04
    gt = [0.55, 0.5, 0.2, 0.4]  # xyxy [0.45, 0.3, 0.65, 0.7], area 0.08
    outputs = {"pred_logits": torch.tensor([[[-1.0, logit]]], dtype=torch.float64),
               "pred_boxes": torch.tensor([[pred]], dtype=torch.float64)}
    targets = [{"labels": torch.tensor([1]), "boxes": torch.tensor([gt], dtype=torch.float64)}]

    p = 1 / (1 + math.exp(-logit))
    class_cost = alpha * (1 - p) ** gamma * -math.log(p + 1e-8) - (1 - alpha) * p**gamma * -math.log(1 - p + 1e-8)
    l1 = 0.05 + 0.0 + 0.0 + 0.2
    inter = 0.15 * 0.2  # x overlap [0.45, 0.6], y overlap [0.4, 0.6]
    union = 0.04 + 0.08 - inter
    enclosing = 0.25 * 0.4  # [0.4, 0.65] x [0.3, 0.7]
    giou = inter / union - (enclosing - union) / enclosing
    expected = 5.0 * l1 + 2.0 * class_cost + 2.0 * -giou

    cost = HungarianMatcher(cost_class=2.0, cost_bbox=5.0, cost_giou=2.0, alpha=alpha, gamma=gamma)
    assert cost.cost_matrix(outputs, targets)[0].item() == pytest.approx(expected, rel=1e-10)


def test_batched_cost_equals_per_image_cost():
    outputs = random_outputs(3, 6, 4, seed=7)
    targets = [random_target(n, 4, 50 + n) for n in (2, 0, 5)]
    matcher = HungarianMatcher()
    batched = matcher.cost_matrix(outputs, targets)
    for image in range(3):
        single = {key: value[image:image + 1] for key, value in outputs.items()}
        torch.testing.assert_close(batched[image], matcher.cost_matrix(single, [targets[image]])[0])


def test_images_without_targets_and_batches_without_any():
    outputs = random_outputs(2, 4, 3, seed=8)
    empty = {"labels": torch.zeros(0, dtype=torch.int64), "boxes": torch.zeros(0, 4)}
    matcher = HungarianMatcher()
    indices = matcher(outputs, [random_target(2, 3, 9), empty])
    assert len(indices[0][0]) == 2
    assert indices[1][0].shape == (0,) and indices[1][0].dtype == torch.int64
    for query_idx, gt_idx in matcher(outputs, [empty, empty]):
        assert query_idx.numel() == gt_idx.numel() == 0
        assert query_idx.dtype == gt_idx.dtype == torch.int64
    assert [c.shape for c in matcher.cost_matrix(outputs, [empty, empty])] == [(4, 0), (4, 0)]


def test_nan_logits_are_handled():
    outputs = random_outputs(1, 4, 3, seed=10)
    outputs["pred_logits"][0, 1] = float("nan")
    targets = [random_target(3, 3, 11)]
    matcher = HungarianMatcher()
    cost = matcher.cost_matrix(outputs, targets)[0]
    assert torch.isfinite(cost).all()
    assert torch.all(cost[1] == 1.0)
    query_idx, _ = matcher(outputs, targets)[0]
    assert len(query_idx) == 3


def test_more_targets_than_queries():
    outputs = random_outputs(1, 2, 3, seed=12)
    targets = [random_target(4, 3, 13)]
    matcher = HungarianMatcher()
    (query_idx, gt_idx), = matcher(outputs, targets)
    cost = matcher.cost_matrix(outputs, targets)[0]
    assert query_idx.tolist() == [0, 1]
    assert cost[query_idx, gt_idx].sum().item() == pytest.approx(brute_force_optimum(cost), abs=1e-5)


def test_obvious_match_follows_boxes_and_classes():
    boxes = torch.tensor([[[0.2, 0.2, 0.1, 0.1], [0.7, 0.7, 0.2, 0.2], [0.5, 0.2, 0.3, 0.1]]])
    logits = torch.full((1, 3, 2), -4.0)
    logits[0, 1, 0] = logits[0, 0, 1] = 4.0
    targets = [{"labels": torch.tensor([0, 1]), "boxes": torch.tensor([[0.71, 0.7, 0.2, 0.21], [0.2, 0.19, 0.1, 0.1]])}]
    (query_idx, gt_idx), = HungarianMatcher()({"pred_logits": logits, "pred_boxes": boxes}, targets)
    assert query_idx.tolist() == [0, 1] and gt_idx.tolist() == [1, 0]


def test_repr_and_bad_arguments():
    matcher = HungarianMatcher(cost_class=1.0)
    assert matcher.weight_dict == {"cost_class": 1.0, "cost_bbox": 5.0, "cost_giou": 2.0}
    assert "cost_class=1.0" in repr(matcher) and "gamma=2.0" in repr(matcher)
    with pytest.raises(ValueError, match="non-zero"):
        HungarianMatcher(0, 0, 0)
    with pytest.raises(ValueError, match="targets"):
        matcher(random_outputs(2, 3, 2, seed=0), [random_target(1, 2, 0)])


@pytest.mark.parametrize("name", ["n", "s", "r18"])
def test_parity_with_official_main_layer_match(parity_dir, name):
    fixture = parity_dir / f"{name}.pt"
    if not fixture.exists():
        pytest.skip(f"{fixture} not found")
    fx = torch.load(fixture)
    outputs = {"pred_logits": fx["train_pred_logits"], "pred_boxes": fx["train_pred_boxes"]}
    indices = HungarianMatcher()(outputs, fx["train_targets"])
    for (query_idx, gt_idx), (official_query, official_gt) in zip(indices, fx["train_main_indices"]):
        assert torch.equal(query_idx, official_query) and torch.equal(gt_idx, official_gt)
