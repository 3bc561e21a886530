"""Tests for the D-FINE box coder (deim/models/box_coder.py)."""

from __future__ import annotations

import math

import pytest
import torch

from deim.models.box_coder import bbox2distance, distance2bbox, translate_gt, weighting_function

UP = torch.tensor([0.5])
REG_SCALE = torch.tensor([4])  # int64, as the official decoder stores it


def _xyxy(b: torch.Tensor) -> torch.Tensor:
    cx, cy, w, h = b.unbind(-1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)


def test_weighting_function_hand_values():
    w = weighting_function(32, UP, REG_SCALE)
    assert w.shape == (33,) and w.dtype == torch.float32
    step = 3.0 ** (2 / 30)  # (up * reg_scale + 1) ** (2 / (reg_max - 2))
    left = [1 - step ** k for k in range(15, 0, -1)]
    expected = [-4.0, *left, 0.0, *[-v for v in reversed(left)], 4.0]
    torch.testing.assert_close(w, torch.tensor(expected), rtol=1e-6, atol=1e-6)
    assert w[1].item() == pytest.approx(-2.0) and w[31].item() == pytest.approx(2.0)
    assert torch.all(w[1:] > w[:-1])
    torch.testing.assert_close(w, -w.flip(0))


def test_weighting_function_small_and_bad_reg_max():
    w = weighting_function(4, torch.tensor([1.0]), torch.tensor([2.0]))
    # step = 3 ** 1, bins: -4, -2, 0, 2, 4
    torch.testing.assert_close(w, torch.tensor([-4.0, -2.0, 0.0, 2.0, 4.0]))
    with pytest.raises(ValueError, match="reg_max"):
        weighting_function(31, UP, REG_SCALE)
    with pytest.raises(ValueError, match="reg_max"):
        weighting_function(2, UP, REG_SCALE)


def test_translate_gt_hand_cases():
    w = weighting_function(32, UP, REG_SCALE)
    gt = torch.tensor([0.0, 1.0, 3.0, -5.0, 4.0, 10.0, -4.0])
    idx, wr, wl = translate_gt(gt, 32, REG_SCALE, UP)
    frac = (1.0 - w[25].item()) / (w[26].item() - w[25].item())
    torch.testing.assert_close(idx, torch.tensor([16.0, 25.0, 31.0, 0.0, 31.9, 31.9, 0.0]))
    torch.testing.assert_close(wr, torch.tensor([0.0, frac, 0.5, 0.0, 1.0, 1.0, 0.0]))
    torch.testing.assert_close(wl, 1 - wr)


def test_distance2bbox_zero_distance_is_reference_box():
    ref = torch.tensor([[[0.5, 0.4, 0.2, 0.3], [0.1, 0.9, 0.05, 0.1]]])
    out = distance2bbox(ref, torch.zeros_like(ref), REG_SCALE)
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref)


def test_distance2bbox_hand_case():
    ref = torch.tensor([[0.5, 0.5, 0.4, 0.2]])
    # left edge moved out by one unit (w / reg_scale = 0.1), bottom edge in by 2 units (h / 4 = 0.05)
    out = distance2bbox(ref, torch.tensor([[1.0, 0.0, 0.0, -2.0]]), REG_SCALE)
    x1, y1, x2, y2 = 0.5 - 0.2 - 0.1, 0.5 - 0.1, 0.5 + 0.2, 0.5 + 0.1 - 0.1
    torch.testing.assert_close(out, torch.tensor([[(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1]]))


def test_round_trip_within_range():
    g = torch.Generator().manual_seed(0)
    ref = torch.cat([0.3 + 0.4 * torch.rand(64, 2, generator=g), 0.1 + 0.3 * torch.rand(64, 2, generator=g)], 1)
    # target edges within +-1.5 units of the reference edges (inside [W(0), W(reg_max)])
    jitter = (torch.rand(64, 4, generator=g) - 0.5) * 3.0
    target = distance2bbox(ref, jitter, REG_SCALE)
    corners, wr, wl = bbox2distance(ref, _xyxy(target), 32, REG_SCALE, UP)
    assert corners.shape == wr.shape == wl.shape == (256,)
    w = weighting_function(32, UP, REG_SCALE)
    left = corners.long()
    decoded = (w[left] * wl + w[left + 1] * wr).reshape(64, 4)
    torch.testing.assert_close(decoded, jitter, rtol=0, atol=1e-4)
    torch.testing.assert_close(distance2bbox(ref, decoded, REG_SCALE), target, rtol=0, atol=1e-5)


def test_bbox2distance_clamps_outside_range():
    ref = torch.tensor([[0.5, 0.5, 0.1, 0.1]])
    # left edge far outside (offset > W(32)), right edge deep inside the centre (offset < W(0))
    box = torch.tensor([[0.0, 0.45, 0.4, 0.55]])
    corners, wr, wl = bbox2distance(ref, box, 32, REG_SCALE, UP)
    assert corners[0].item() == pytest.approx(31.9) and wr[0].item() == 1.0 and wl[0].item() == 0.0
    assert corners[2].item() == 0.0 and wr[2].item() == 0.0 and wl[2].item() == 1.0
    assert corners[1].item() == 16.0 and math.isclose(wl[1].item(), 1.0, abs_tol=1e-5)
    assert not corners.requires_grad


def test_bbox2distance_shape_error():
    with pytest.raises(ValueError, match="points and bbox_xyxy"):
        bbox2distance(torch.zeros(3, 4), torch.zeros(2, 4), 32, REG_SCALE, UP)


def test_translate_gt_float64():
    gt = torch.tensor([1.0, -5.0], dtype=torch.float64)
    idx, wr, wl = translate_gt(gt, 32, REG_SCALE, UP)
    assert idx.dtype == wr.dtype == wl.dtype == torch.float64
    ref_idx, ref_wr, _ = translate_gt(gt.float(), 32, REG_SCALE, UP)
    torch.testing.assert_close(idx.float(), ref_idx)
    torch.testing.assert_close(wr.float(), ref_wr)
