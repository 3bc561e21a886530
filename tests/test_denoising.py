"""Contrastive denoising: group layout, attention mask, label and box noise, the None cases, and
the noise of a seeded run against values recorded from the official implementation."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.ops import box_convert

from deim.models.denoising import build_denoising_queries, denoising_attention_mask


def label_embed(num_classes: int) -> nn.Embedding:
    """Embedding whose single feature is the label itself, so the content reveals the labels."""
    embed = nn.Embedding(num_classes + 1, 1, padding_idx=num_classes)
    with torch.no_grad():
        embed.weight.copy_(torch.arange(num_classes + 1.0).unsqueeze(1))
    return embed


def labels_of(dn) -> list[list[int]]:
    return dn.query_content.squeeze(-1).long().tolist()


TARGETS = [
    {"labels": torch.tensor([3, 7]), "boxes": torch.tensor([[.3, .4, .2, .3], [.7, .6, .4, .2]])},
    {"labels": torch.tensor([12]), "boxes": torch.tensor([[.5, .5, .9, .9]])},
]


def test_nothing_to_denoise_gives_none():
    embed = label_embed(80)
    empty = {"labels": torch.zeros(0, dtype=torch.int64), "boxes": torch.zeros(0, 4)}
    assert build_denoising_queries(None, 80, 10, embed) is None
    assert build_denoising_queries([], 80, 10, embed) is None
    assert build_denoising_queries(TARGETS, 80, 10, embed, num_denoising=0) is None
    assert build_denoising_queries([empty, empty], 80, 10, embed) is None


def test_group_layout_without_noise():
    """Largest image has 2 boxes, budget 5 -> 2 groups of (2 positives, 2 negatives); image 1 is padded."""
    dn = build_denoising_queries(TARGETS, 80, 6, label_embed(80), num_denoising=5,
                                 label_noise_ratio=0.0, box_noise_scale=0.0)
    assert dn.meta["dn_num_group"] == 2 and dn.meta["dn_num_split"] == [8, 6]
    assert [idx.tolist() for idx in dn.meta["dn_positive_idx"]] == [[0, 1, 4, 5], [0, 4]]
    assert labels_of(dn) == [[3, 7] * 4, [12, 80] * 4]  # 80 = padding ("no object")
    assert dn.query_content.shape == (2, 8, 1) and dn.ref_points_unact.shape == (2, 8, 4)
    boxes = torch.sigmoid(dn.ref_points_unact)
    torch.testing.assert_close(boxes[0], TARGETS[0]["boxes"].repeat(4, 1))
    torch.testing.assert_close(boxes[1, 0::2], TARGETS[1]["boxes"].repeat(4, 1))
    assert (boxes[1, 1::2] < 1e-4).all()  # padding boxes are zeros (logit -11.5)


def test_attention_mask_by_hand():
    """Groups of 2 queries, 2 groups, 2 matching queries (True = blocked)."""
    expected = torch.tensor([
        [0, 0, 1, 1, 0, 0],
        [0, 0, 1, 1, 0, 0],
        [1, 1, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0],
        [1, 1, 1, 1, 0, 0],
        [1, 1, 1, 1, 0, 0],
    ], dtype=torch.bool)
    assert torch.equal(denoising_attention_mask(2, 2, 2), expected)


def test_attention_mask_of_a_batch():
    dn = build_denoising_queries(TARGETS, 80, 6, label_embed(80), num_denoising=7)  # 3 groups of 4
    mask = dn.attn_mask
    assert mask.shape == (18, 18) and mask.dtype == torch.bool
    assert mask[12:, :12].all() and not mask[:, 12:].any()  # matching queries: blind to dn, seen by all
    for g in range(3):
        rows = slice(4 * g, 4 * g + 4)
        assert not mask[rows, rows].any()
        assert int(mask[rows, :12].sum()) == 4 * 8  # every other group is hidden


def test_box_noise_bounds():
    """Positives move each edge by less than half the box size, negatives by one to two halves.

    A negative's edges may cross (both moved inwards); the output box then has them swapped,
    so each axis is checked against both assignments of the (sorted) output edges."""
    box = torch.tensor([[.5, .5, .2, .1]])
    targets = [{"labels": torch.tensor([1]), "boxes": box}]
    torch.manual_seed(0)
    dn = build_denoising_queries(targets, 5, 4, label_embed(5), num_denoising=200, label_noise_ratio=0.0)
    noisy = box_convert(torch.sigmoid(dn.ref_points_unact[0]).double(), "cxcywh", "xyxy")
    edges = box_convert(box.double(), "cxcywh", "xyxy")[0]
    half = torch.tensor([.1, .05, .1, .05], dtype=torch.float64)
    shift = (noisy - edges).abs() / half  # in half sizes, assuming no swap
    positives = shift[0::2]
    assert positives.max() < 1 + 1e-4 and positives.mean() == pytest.approx(0.5, abs=0.1)
    swapped = (noisy[:, [2, 3, 0, 1]] - edges).abs() / half
    crossed = []
    for axis in ((0, 2), (1, 3)):
        straight_ok = ((shift[1::2, axis] > 1 - 1e-4) & (shift[1::2, axis] < 2 + 1e-4)).all(1)
        swapped_ok = ((swapped[1::2, axis] > 1 - 1e-4) & (swapped[1::2, axis] < 2 + 1e-4)).all(1)
        assert (straight_ok | swapped_ok).all()
        crossed.append(~straight_ok)
    assert torch.stack(crossed).any() and not torch.stack(crossed).all()  # both cases occur


def test_noised_boxes_stay_in_the_image():
    targets = [{"labels": torch.tensor([0, 1]), "boxes": torch.tensor([[.1, .1, .2, .2], [.9, .5, .2, .9]])}]
    torch.manual_seed(1)
    dn = build_denoising_queries(targets, 2, 4, label_embed(2), num_denoising=100, box_noise_scale=2.0)
    boxes = torch.sigmoid(dn.ref_points_unact.double())
    xyxy = box_convert(boxes, "cxcywh", "xyxy")
    assert (boxes[..., 2:] >= 0).all()
    assert xyxy.min() > -1e-4 and xyxy.max() < 1 + 1e-4


def test_label_noise_ratio():
    """Each real slot takes a random label with probability ratio / 2 (which may equal the old one)."""
    n, num_classes, ratio = 50, 1000, 0.6
    targets = [{"labels": torch.zeros(n, dtype=torch.int64), "boxes": torch.full((n, 4), 0.5)},
               {"labels": torch.zeros(1, dtype=torch.int64), "boxes": torch.full((1, 4), 0.5)}]
    torch.manual_seed(2)
    dn = build_denoising_queries(targets, num_classes, 4, label_embed(num_classes), num_denoising=5000,
                                 label_noise_ratio=ratio, box_noise_scale=0.0)
    labels = torch.tensor(labels_of(dn))
    assert labels.shape == (2, 100 * 2 * n)
    changed = (labels[0] != 0).double().mean().item()
    assert changed == pytest.approx(ratio / 2 * (1 - 1 / num_classes), abs=0.02)
    padding = labels[1].reshape(200, n)[:, 1:]
    assert (padding == num_classes).all()  # padding slots keep the "no object" label
    assert ((labels >= 0) & (labels <= num_classes)).all()


def test_bad_noise_arguments():
    with pytest.raises(ValueError, match="label_noise_ratio"):
        build_denoising_queries(TARGETS, 80, 6, label_embed(80), label_noise_ratio=1.5)
    with pytest.raises(ValueError, match="box_noise_scale"):
        build_denoising_queries(TARGETS, 80, 6, label_embed(80), box_noise_scale=-1.0)


# Recorded from the official get_contrastive_denoising_training_group (DEIM HEAD a9aa4ad) with
# torch.manual_seed(0), TARGETS, num_classes=80, num_queries=3, num_denoising=4, ratio 0.5, scale 1.0.
OFFICIAL_LABELS = [[3, 7, 74, 33, 3, 7, 3, 7], [12, 80, 12, 80, 29, 80, 12, 80]]
PAD = -11.512925
OFFICIAL_REF = [
    [[-0.650039, -0.529824, -1.848662, -0.312473], [0.537202, 0.502887, 0.621116, -2.457478],
     [-1.432937, 0.386335, -1.449861, -1.133605], [2.166982, 1.200356, -1.352206, -1.253113],
     [-1.108873, -0.090448, -1.854819, -1.594861], [1.310255, 0.385499, -0.302737, -2.364944],
     [-0.744555, -0.341281, -2.251444, 1.324815], [1.750672, -0.092083, -0.866779, -1.419625]],
    [[-0.061723, -0.649244, 0.308722, 0.696854], [PAD] * 4, [-2.043291, 0.0, -1.211339, 11.512925], [PAD] * 4,
     [-0.849874, 0.3399, 0.179173, 1.597491], [PAD] * 4, [1.655855, 0.0, -0.75084, 11.512925], [PAD] * 4],
]


def test_seeded_noise_reproduces_the_official():
    embed = label_embed(80)  # built before seeding: its init draws random numbers
    torch.manual_seed(0)
    dn = build_denoising_queries(TARGETS, 80, 3, embed, num_denoising=4)
    assert labels_of(dn) == OFFICIAL_LABELS
    torch.testing.assert_close(dn.ref_points_unact, torch.tensor(OFFICIAL_REF), atol=2e-6, rtol=0)
    assert [idx.tolist() for idx in dn.meta["dn_positive_idx"]] == [[0, 1, 4, 5], [0, 4]]
