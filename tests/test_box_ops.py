"""Tests of deim.losses.box_ops against hand-computed values and the pairwise/paired identity."""
from __future__ import annotations

import pytest
import torch
import torchvision

from deim.losses.box_ops import (
    box_area,
    box_cxcywh_to_xyxy,
    box_iou,
    box_xyxy_to_cxcywh,
    generalized_box_iou,
    paired_box_iou,
    paired_generalized_box_iou,
)


def random_xyxy(n: int, generator: torch.Generator, dtype=torch.float32) -> torch.Tensor:
    cxcywh = torch.rand(n, 4, generator=generator, dtype=dtype)
    cxcywh[:, 2:] = cxcywh[:, 2:] * 0.5 + 0.01
    return box_cxcywh_to_xyxy(cxcywh)


# (box1, box2, IoU, GIoU), all computed by hand.
HAND_CASES = [
    # identical
    ([0, 0, 2, 2], [0, 0, 2, 2], 1.0, 1.0),
    # disjoint: inter 0, union 2, enclosing [0,0,3,1] = 3 -> GIoU = 0 - 1/3
    ([0, 0, 1, 1], [2, 0, 3, 1], 0.0, -1.0 / 3.0),
    # nested: inter 1, union 4, enclosing 4
    ([0, 0, 2, 2], [0.5, 0.5, 1.5, 1.5], 0.25, 0.25),
    # touching along an edge: inter 0, union 2, enclosing 2
    ([0, 0, 1, 1], [1, 0, 2, 1], 0.0, 0.0),
    # partial overlap: inter 1, union 4 + 4 - 1 = 7, enclosing 3 x 3 = 9
    ([0, 0, 2, 2], [1, 1, 3, 3], 1.0 / 7.0, 1.0 / 7.0 - 2.0 / 9.0),
]


@pytest.mark.parametrize("box1, box2, iou, giou", HAND_CASES)
def test_iou_and_giou_hand_values(box1, box2, iou, giou):
    b1 = torch.tensor([box1], dtype=torch.float64)
    b2 = torch.tensor([box2], dtype=torch.float64)
    assert box_iou(b1, b2).item() == pytest.approx(iou, abs=1e-12)
    assert generalized_box_iou(b1, b2).item() == pytest.approx(giou, abs=1e-12)
    assert paired_box_iou(b1, b2).item() == pytest.approx(iou, abs=1e-12)
    assert paired_generalized_box_iou(b1, b2).item() == pytest.approx(giou, abs=1e-12)


def test_pairwise_shapes_and_torchvision_agreement():
    g = torch.Generator().manual_seed(0)
    b1, b2 = random_xyxy(7, g), random_xyxy(5, g)
    assert box_iou(b1, b2).shape == (7, 5)
    torch.testing.assert_close(box_iou(b1, b2), torchvision.ops.box_iou(b1, b2))
    torch.testing.assert_close(generalized_box_iou(b1, b2), torchvision.ops.generalized_box_iou(b1, b2))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_paired_equals_diagonal_of_pairwise(dtype):
    g = torch.Generator().manual_seed(1)
    b1, b2 = random_xyxy(300, g, dtype), random_xyxy(300, g, dtype)
    torch.testing.assert_close(paired_box_iou(b1, b2), box_iou(b1, b2).diagonal(), rtol=0, atol=1e-6)
    torch.testing.assert_close(paired_generalized_box_iou(b1, b2), generalized_box_iou(b1, b2).diagonal(),
                               rtol=0, atol=1e-6)
    assert paired_box_iou(b1, b2).dtype == dtype


def test_paired_accepts_batched_shapes():
    g = torch.Generator().manual_seed(2)
    b1, b2 = random_xyxy(12, g).view(3, 4, 4), random_xyxy(12, g).view(3, 4, 4)
    assert paired_box_iou(b1, b2).shape == (3, 4)
    torch.testing.assert_close(paired_generalized_box_iou(b1, b2).flatten(),
                               paired_generalized_box_iou(b1.view(-1, 4), b2.view(-1, 4)))


def test_conversion_round_trip_and_values():
    g = torch.Generator().manual_seed(3)
    cxcywh = torch.rand(20, 4, generator=g, dtype=torch.float64)
    torch.testing.assert_close(box_xyxy_to_cxcywh(box_cxcywh_to_xyxy(cxcywh)), cxcywh)
    xyxy = box_cxcywh_to_xyxy(torch.tensor([0.5, 0.4, 0.2, 0.6]))
    torch.testing.assert_close(xyxy, torch.tensor([0.4, 0.1, 0.6, 0.7]))
    torch.testing.assert_close(box_area(xyxy), torch.tensor(0.2 * 0.6))


def test_negative_size_is_clamped_to_a_point():
    xyxy = box_cxcywh_to_xyxy(torch.tensor([0.5, 0.5, -0.2, 0.4]))
    torch.testing.assert_close(xyxy, torch.tensor([0.5, 0.3, 0.5, 0.7]))


def test_degenerate_boxes_give_no_nan_and_finite_gradients():
    point = torch.tensor([[0.3, 0.3, 0.3, 0.3]], dtype=torch.float64)
    line = torch.tensor([[0.3, 0.1, 0.3, 0.9]], dtype=torch.float64)
    normal = torch.tensor([[0.0, 0.0, 1.0, 1.0]], dtype=torch.float64)
    for b1, b2 in [(point, point), (point, line), (line, line), (point, normal)]:
        b1, b2 = b1.clone().requires_grad_(), b2.clone().requires_grad_()
        values = [box_iou(b1, b2), generalized_box_iou(b1, b2), paired_box_iou(b1, b2),
                  paired_generalized_box_iou(b1, b2)]
        for value in values:
            assert torch.isfinite(value).all()
        sum(v.sum() for v in values).backward()
        assert torch.isfinite(b1.grad).all() and torch.isfinite(b2.grad).all()
    # point inside a unit box: IoU 0, enclosing = union -> GIoU 0
    assert paired_box_iou(point, normal).item() == 0.0
    assert paired_generalized_box_iou(point, normal).item() == 0.0
    # two identical points: union and enclosing are 0 -> defined as 0
    assert paired_generalized_box_iou(point, point).item() == 0.0


def test_gradients_are_finite_and_correct_on_random_boxes():
    g = torch.Generator().manual_seed(4)
    b1 = random_xyxy(6, g, torch.float64).requires_grad_()
    b2 = random_xyxy(6, g, torch.float64)
    assert torch.autograd.gradcheck(lambda x: paired_generalized_box_iou(x, b2), (b1,))


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="shape"):
        box_iou(torch.zeros(3, 4), torch.zeros(2, 3, 4))
    with pytest.raises(ValueError, match="same shape"):
        paired_box_iou(torch.zeros(3, 4), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="4 coordinates"):
        box_cxcywh_to_xyxy(torch.zeros(3, 5))
