"""Tests of MAL, VFL and focal loss against formulas written independently on Python scalars."""
from __future__ import annotations

import math

import pytest
import torch

from deim.losses.classification import focal_loss, matchability_aware_loss, varifocal_loss


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def bce(x: float, target: float) -> float:
    p = sigmoid(x)
    return -(target * math.log(p) + (1.0 - target) * math.log(1.0 - p))


def mal_scalar(x: float, positive: bool, iou: float, gamma: float, alpha: float | None = None) -> float:
    if positive:
        return bce(x, iou**gamma)
    return (1.0 if alpha is None else alpha) * sigmoid(x) ** gamma * bce(x, 0.0)


def vfl_scalar(x: float, positive: bool, iou: float, alpha: float, gamma: float) -> float:
    if positive:
        return iou * bce(x, iou)
    return alpha * sigmoid(x) ** gamma * bce(x, 0.0)


def focal_scalar(x: float, positive: bool, alpha: float, gamma: float) -> float:
    p = sigmoid(x)
    if positive:
        return alpha * (1.0 - p) ** gamma * -math.log(p)
    return (1.0 - alpha) * p**gamma * -math.log(1.0 - p)


def single(x: float, positive: bool, iou: float = 0.0):
    """``[1, 1, 1]`` logits / targets and ``[1, 1]`` ious of one element, float64."""
    logits = torch.tensor([[[x]]], dtype=torch.float64)
    targets = torch.tensor([[[1.0 if positive else 0.0]]], dtype=torch.float64)
    ious = torch.tensor([[iou if positive else 0.0]], dtype=torch.float64)
    return logits, targets, ious


POINTS = [(-2.0, True, 0.3), (0.7, True, 0.8), (3.0, True, 0.05), (-1.5, False, 0.0), (2.5, False, 0.0)]


@pytest.mark.parametrize("x, positive, iou", POINTS)
@pytest.mark.parametrize("gamma, alpha", [(1.5, None), (2.0, None), (1.5, 0.6)])
def test_mal_values(x, positive, iou, gamma, alpha):
    logits, targets, ious = single(x, positive, iou)
    loss = matchability_aware_loss(logits, targets, ious, 1.0, gamma=gamma, alpha=alpha, reduction="none")
    assert loss.item() == pytest.approx(mal_scalar(x, positive, iou, gamma, alpha), rel=1e-10)


@pytest.mark.parametrize("x, positive, iou", POINTS)
def test_vfl_values(x, positive, iou):
    logits, targets, ious = single(x, positive, iou)
    loss = varifocal_loss(logits, targets, ious, 1.0, alpha=0.75, gamma=2.0, reduction="none")
    assert loss.item() == pytest.approx(vfl_scalar(x, positive, iou, 0.75, 2.0), rel=1e-10)


@pytest.mark.parametrize("x, positive, iou", POINTS)
def test_focal_values(x, positive, iou):
    logits, targets, _ = single(x, positive, iou)
    loss = focal_loss(logits, targets, 1.0, alpha=0.25, gamma=2.0, reduction="none")
    assert loss.item() == pytest.approx(focal_scalar(x, positive, 0.25, 2.0), rel=1e-10)


@pytest.mark.parametrize("prob", [0.5, 0.8, 0.95])
def test_mal_keeps_low_iou_positives_visible_where_vfl_does_not(prob):
    x = math.log(prob / (1 - prob))
    logits, targets, ious = single(x, True, 0.05)
    mal = matchability_aware_loss(logits, targets, ious, 1.0, gamma=1.5, reduction="none").item()
    vfl = varifocal_loss(logits, targets, ious, 1.0, gamma=2.0, reduction="none").item()
    assert mal > 10 * vfl


def test_mal_and_vfl_are_close_for_high_iou_positives():
    x = math.log(0.9 / 0.1)
    logits, targets, ious = single(x, True, 0.95)
    mal = matchability_aware_loss(logits, targets, ious, 1.0, gamma=1.5, reduction="none").item()
    vfl = varifocal_loss(logits, targets, ious, 1.0, gamma=2.0, reduction="none").item()
    assert 0.7 < mal / vfl < 1.5


def test_mal_negatives_equal_vfl_over_alpha():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 3, generator=g, dtype=torch.float64) * 3
    zeros = torch.zeros_like(logits)
    ious = torch.zeros(2, 5, dtype=torch.float64)
    mal = matchability_aware_loss(logits, zeros, ious, 1.0, gamma=2.0, reduction="none")
    vfl = varifocal_loss(logits, zeros, ious, 1.0, alpha=0.75, gamma=2.0, reduction="none")
    torch.testing.assert_close(mal, vfl / 0.75)


def test_mal_gradient_uses_detached_weight_and_quality():
    x, iou, gamma = 0.4, 0.6, 1.5
    logits, targets, ious = single(x, True, iou)
    logits.requires_grad_()
    ious.requires_grad_()
    matchability_aware_loss(logits, targets, ious, 1.0, gamma=gamma).backward()
    assert logits.grad.item() == pytest.approx(sigmoid(x) - iou**gamma, rel=1e-10)
    assert ious.grad is None
    negative, zeros, no_iou = single(x, False)
    negative.requires_grad_()
    matchability_aware_loss(negative, zeros, no_iou, 1.0, gamma=gamma).backward()
    # weight p**gamma is a constant: d/dx [-w log(1 - p)] = w * p
    assert negative.grad.item() == pytest.approx(sigmoid(x) ** gamma * sigmoid(x), rel=1e-10)


def random_problem(dtype=torch.float32):
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 6, 4, generator=g, dtype=dtype)
    targets = torch.zeros(2, 6, 4, dtype=dtype)
    ious = torch.zeros(2, 6, dtype=dtype)
    for b, q, c, iou in [(0, 1, 2, 0.7), (0, 4, 0, 0.2), (1, 3, 3, 0.9)]:
        targets[b, q, c] = 1.0
        ious[b, q] = iou
    return logits, targets, ious


LOSSES = {
    "mal": lambda l, t, i, n, **kw: matchability_aware_loss(l, t, i, n, **kw),
    "vfl": lambda l, t, i, n, **kw: varifocal_loss(l, t, i, n, **kw),
    "focal": lambda l, t, i, n, **kw: focal_loss(l, t, n, **kw),
}


@pytest.mark.parametrize("name", list(LOSSES))
def test_reductions_and_num_boxes_normalisation(name):
    loss_fn = LOSSES[name]
    logits, targets, ious = random_problem(torch.float64)
    elementwise = loss_fn(logits, targets, ious, 3.0, reduction="none")
    assert elementwise.shape == logits.shape
    total = loss_fn(logits, targets, ious, 3.0, reduction="sum")
    torch.testing.assert_close(total, elementwise.sum())
    normalized = loss_fn(logits, targets, ious, 3.0)
    torch.testing.assert_close(normalized, elementwise.sum() / 3.0)
    torch.testing.assert_close(loss_fn(logits, targets, ious, 6.0), normalized / 2)


@pytest.mark.parametrize("name", list(LOSSES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_is_kept(name, dtype):
    logits, targets, ious = random_problem(dtype)
    assert LOSSES[name](logits, targets, ious, 3.0).dtype == dtype


@pytest.mark.parametrize("name", list(LOSSES))
def test_gradients_finite_at_saturated_logits(name):
    logits, targets, ious = random_problem()
    logits = torch.where(torch.rand(logits.shape, generator=torch.Generator().manual_seed(2)) > 0.5, 30.0, -30.0)
    logits.requires_grad_()
    loss = LOSSES[name](logits, targets, ious, 3.0)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("name", list(LOSSES))
def test_bad_inputs_raise(name):
    logits, targets, ious = random_problem()
    with pytest.raises(ValueError, match="reduction"):
        LOSSES[name](logits, targets, ious, 1.0, reduction="mean")
    with pytest.raises(ValueError, match="targets"):
        LOSSES[name](logits, targets[:, :5], ious, 1.0)


def test_bad_iou_shape_raises():
    logits, targets, ious = random_problem()
    with pytest.raises(ValueError, match="ious"):
        matchability_aware_loss(logits, targets, ious[:, :, None], 1.0)
    with pytest.raises(ValueError, match="ious"):
        varifocal_loss(logits, targets, ious[:1], 1.0)
