"""Contrastive denoising queries (DN-DETR / DINO, as in RT-DETR and DEIM).

In training, noised copies of the ground truths are fed to the decoder next to the
matching queries; the loss asks them to reconstruct their ground truth. Layout, for a
batch whose largest image has ``m`` boxes and ``G = max(num_denoising // m, 1)`` groups::

    [ group 0: m positives, m negatives | group 1: ... | ... ]   n_dn = 2 * m * G queries

padded per image to ``m`` (padding slots carry the "no object" label ``num_classes``).
Positives get box noise of at most half their size per edge (``|d| < box_noise_scale *
w / 2``), negatives between one and two half-sizes, so a negative should be predicted as
background. Any slot's label is replaced by a random class with probability
``label_noise_ratio / 2``. The attention mask lets each group see only itself and the
matching queries, and hides all groups from the matching queries.

Random numbers are drawn exactly like the official code (same calls, shapes and order),
so a seeded run reproduces its noise. Difference: ``box_noise_scale = 0`` is allowed
(the official code fails with it).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torchvision.ops import box_convert

from deim.models.query_selection import inverse_sigmoid


@dataclass
class DenoisingQueries:
    """Denoising inputs for the decoder, the denoising queries first in the query axis."""

    query_content: torch.Tensor  # [B, n_dn, D] class embeddings of the (noised) labels
    ref_points_unact: torch.Tensor  # [B, n_dn, 4] logits of the noised cxcywh boxes
    attn_mask: torch.Tensor  # [n_dn + Q, n_dn + Q] bool, True = attention blocked
    meta: dict  # dn_positive_idx (per image [n_i * G] int64), dn_num_group (G), dn_num_split ([n_dn, Q])


def denoising_attention_mask(group_size: int, num_groups: int, num_queries: int,
                             device: torch.device | str = "cpu") -> torch.Tensor:
    """``[n_dn + Q, n_dn + Q]`` bool self-attention mask, ``n_dn = group_size * num_groups``.

    Blocked (True): matching query -> any denoising query, and denoising query -> a denoising
    query of another group. Denoising queries see their own group and the matching queries.
    """
    num_dn = group_size * num_groups
    mask = torch.zeros(num_dn + num_queries, num_dn + num_queries, dtype=torch.bool, device=device)
    mask[num_dn:, :num_dn] = True
    group = torch.arange(num_dn, device=device) // group_size
    mask[:num_dn, :num_dn] = group[:, None] != group[None, :]
    return mask


def build_denoising_queries(
    targets: Sequence[dict] | None,
    num_classes: int,
    num_queries: int,
    class_embed: nn.Embedding,
    num_denoising: int = 100,
    label_noise_ratio: float = 0.5,
    box_noise_scale: float = 1.0,
) -> DenoisingQueries | None:
    """Build the denoising groups for a batch.

    Args:
        targets: per image ``{"labels": [n_i] int64, "boxes": [n_i, 4] cxcywh normalised}``.
        num_classes: ``C``; label ``C`` is the padding ("no object") row of ``class_embed``.
        num_queries: ``Q``, number of matching queries (for the attention mask).
        class_embed: ``Embedding(C + 1, D)`` giving the content of each denoising query.
        num_denoising: budget of positive queries per image across all groups.
        label_noise_ratio: twice the probability of replacing a label by a random class.
        box_noise_scale: box noise amplitude in half box sizes (0 disables box noise).

    Returns:
        None when there is nothing to denoise (no targets, ``num_denoising <= 0``, or no
        box in the batch); else a :class:`DenoisingQueries`.
    """
    if not targets or num_denoising <= 0:
        return None
    if not 0.0 <= label_noise_ratio <= 1.0:
        raise ValueError(f"label_noise_ratio must lie in [0, 1], got {label_noise_ratio}")
    if box_noise_scale < 0:
        raise ValueError(f"box_noise_scale must be >= 0, got {box_noise_scale}")
    num_gts = [len(t["labels"]) for t in targets]
    max_gt = max(num_gts)
    if max_gt == 0:
        return None
    device = targets[0]["labels"].device
    batch = len(targets)
    num_groups = max(num_denoising // max_gt, 1)
    num_dn = 2 * max_gt * num_groups

    labels = torch.full([batch, max_gt], num_classes, dtype=torch.int32, device=device)
    boxes = torch.zeros([batch, max_gt, 4], device=device)
    real = torch.zeros([batch, max_gt], dtype=torch.bool, device=device)
    for i, (target, n) in enumerate(zip(targets, num_gts)):
        if n > 0:
            labels[i, :n] = target["labels"]
            boxes[i, :n] = target["boxes"]
            real[i, :n] = True
    labels = labels.tile([1, 2 * num_groups])
    boxes = boxes.tile([1, 2 * num_groups, 1])
    real = real.tile([1, 2 * num_groups])

    negative = torch.zeros([batch, 2 * max_gt, 1], device=device)
    negative[:, max_gt:] = 1
    negative = negative.tile([1, num_groups, 1])  # [B, n_dn, 1], 1 on negative slots
    positive_idx = torch.nonzero((1 - negative).squeeze(-1) * real)[:, 1]
    positive_idx = torch.split(positive_idx, [n * num_groups for n in num_gts])

    if label_noise_ratio > 0:
        flip = torch.rand_like(labels, dtype=torch.float) < (label_noise_ratio * 0.5)
        random_labels = torch.randint_like(flip, 0, num_classes, dtype=labels.dtype)
        labels = torch.where(flip & real, random_labels, labels)

    if box_noise_scale > 0:
        boxes = _noise_boxes(boxes, negative, box_noise_scale)

    return DenoisingQueries(
        query_content=class_embed(labels),
        ref_points_unact=inverse_sigmoid(boxes),
        attn_mask=denoising_attention_mask(2 * max_gt, num_groups, num_queries, device=device),
        meta={"dn_positive_idx": positive_idx, "dn_num_group": num_groups, "dn_num_split": [num_dn, num_queries]},
    )


def _noise_boxes(boxes: torch.Tensor, negative: torch.Tensor, scale: float) -> torch.Tensor:
    """Move each edge by ``sign * r * scale * size / 2`` with ``r ~ U[0, 1)`` for positives and
    ``U[1, 2)`` for negatives; clip to the image; cxcywh ``[B, n, 4]`` in and out."""
    corners = box_convert(boxes, in_fmt="cxcywh", out_fmt="xyxy")
    half_size = torch.tile(boxes[..., 2:] * 0.5, [1, 1, 2]) * scale
    sign = torch.randint_like(boxes, 0, 2) * 2.0 - 1.0
    magnitude = torch.rand_like(boxes)
    magnitude = (magnitude + 1.0) * negative + magnitude * (1 - negative)
    corners = (corners + sign * magnitude * half_size).clip(min=0.0, max=1.0)
    # edges may cross; a negative width or height is flipped
    return box_convert(corners, in_fmt="xyxy", out_fmt="cxcywh").abs()
