"""The DEIM set criterion: classification (MAL / VFL / focal), L1 + GIoU, and D-FINE's FGL + DDF,
on every supervised output of the detector.

Which output is supervised how (``outputs`` is the dict of a DEIM detector in training mode):

========================  =============================  ===================================
output (key suffix)       classification ("mal", ...)    boxes / local (L1, GIoU, FGL, DDF)
========================  =============================  ===================================
last layer ("")           own Hungarian match            union set if ``use_uni_set``
``aux_outputs[i]``        own Hungarian match            union set if ``use_uni_set``
``pre_outputs`` (_pre)    own Hungarian match            union set if ``use_uni_set``
``enc_aux_outputs[i]``    own Hungarian match            union set (boxes only) if ``use_uni_set``
``dn_outputs[i]``         denoising groups               denoising groups
``dn_pre_outputs``        denoising groups               denoising groups
========================  =============================  ===================================

Classification always uses ``num_boxes`` (ground truths in the batch, averaged over processes);
the union-set terms use the size of the union set instead; denoising terms use
``num_boxes * dn_num_group``. Every term is multiplied by ``weight_dict[base name]`` (terms whose
base name is not in ``weight_dict`` are dropped) and passed through ``nan_to_num``; the
training loss is the plain sum of the returned dict.

Boxes are ``cxcywh`` normalised throughout; targets are ``{"labels": [n] int64, "boxes": [n, 4]}``.

The official ``DEIMCriterion`` gives the same numbers (checked against its fixtures), except
where it has bugs: it computes FGL targets once per forward from the first output's matches
and reuses them for every layer (wrong when ``use_uni_set=False``), here each output gets its
own; with a class-agnostic encoder it matches the encoder against the class labels, here
against the single class the encoder is trained on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from deim.losses.box_ops import box_cxcywh_to_xyxy, paired_box_iou, paired_generalized_box_iou
from deim.losses.classification import focal_loss, matchability_aware_loss, varifocal_loss
from deim.losses.go_indices import MatchIndices, union_match_indices
from deim.losses.local_losses import ddf_balance, decoupled_distillation_loss, fine_grained_localization_loss
from deim.losses.matcher import HungarianMatcher
from deim.models.box_coder import bbox2distance

LOSS_KINDS = ("mal", "vfl", "focal", "boxes", "local")
_CLASSIFICATION = ("mal", "vfl", "focal")


def mean_count_over_processes(count: int, device: torch.device) -> float:
    """``count`` summed over the process group, divided by the world size, at least 1."""
    total = torch.as_tensor([count], dtype=torch.float, device=device)
    world_size = 1
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(total)
        world_size = dist.get_world_size()
    return torch.clamp(total / world_size, min=1).item()


def denoising_match_indices(dn_meta: dict, targets: list[dict]) -> MatchIndices:
    """Fixed matches of the denoising queries: ``dn_meta["dn_positive_idx"][i]`` (positive queries
    of image ``i``, group after group) against ground truths ``0..n_i-1`` tiled ``dn_num_group`` times."""
    positive_idx, num_groups = dn_meta["dn_positive_idx"], dn_meta["dn_num_group"]
    indices = []
    for image, target in enumerate(targets):
        device = target["labels"].device
        num_gt = len(target["labels"])
        if num_gt == 0:
            empty = torch.zeros(0, dtype=torch.int64, device=device)
            indices.append((empty, empty.clone()))
            continue
        gt_idx = torch.arange(num_gt, dtype=torch.int64, device=device).tile(num_groups)
        if len(positive_idx[image]) != len(gt_idx):
            raise ValueError(f"image {image}: {len(positive_idx[image])} positive denoising queries, expected "
                             f"{num_gt} ground truths x {num_groups} groups = {len(gt_idx)}")
        indices.append((positive_idx[image], gt_idx))
    return indices


@dataclass(frozen=True)
class Matches:
    """Matches used by one loss of one output and the count that normalises it."""

    indices: MatchIndices
    num_boxes: float


@dataclass(frozen=True)
class Supervision:
    """How one output is supervised: its key suffix and the matches of each loss family."""

    output: dict
    suffix: str
    classification: Matches
    boxes: Matches
    local: Matches
    targets: list[dict]
    num_classes: int


@dataclass(frozen=True)
class LocalContext:
    """Shared by all outputs' FGL/DDF: the decoder's bin parameters and the DDF mixing weights."""

    up: Tensor
    reg_scale: Tensor
    ddf_balance: tuple[float, float]


def _flat_index(indices: MatchIndices) -> tuple[Tensor, Tensor]:
    """``(batch_idx [K], query_idx [K])`` for indexing ``[B, Q, ...]`` tensors."""
    batch_idx = torch.cat([torch.full_like(query, image) for image, (query, _) in enumerate(indices)])
    query_idx = torch.cat([query for query, _ in indices])
    return batch_idx, query_idx


def _matched_targets(targets: list[dict], indices: MatchIndices, key: str) -> Tensor:
    return torch.cat([t[key][gt] for t, (_, gt) in zip(targets, indices)], dim=0)


class DEIMCriterion(nn.Module):
    """Loss of a DEIM detector (DEIM-D-FINE or DEIM-RT-DETRv2).

    Args:
        matcher: Hungarian matcher, run once per non-denoising output.
        weight_dict: weight per base term name (``loss_mal``, ``loss_bbox``, ``loss_giou``,
            ``loss_fgl``, ``loss_ddf``, ``loss_vfl``, ``loss_focal``).
        losses: subset of ``("mal" | "vfl" | "focal", "boxes", "local")``.
        alpha: negative weight of VFL / focal (unused by MAL).
        gamma: exponent of MAL / VFL / focal (DEIM configs: 1.5).
        num_classes: number of classes ``C``.
        reg_max: D-FINE bins per edge minus one.
        mal_alpha: optional negative weight of MAL (``None``: 1).
        use_uni_set: supervise boxes with the union set of all layers' matches.
    """

    def __init__(
        self,
        matcher: HungarianMatcher,
        weight_dict: dict[str, float],
        losses: Sequence[str],
        alpha: float = 0.2,
        gamma: float = 2.0,
        num_classes: int = 80,
        reg_max: int = 32,
        mal_alpha: float | None = None,
        use_uni_set: bool = True,
    ) -> None:
        super().__init__()
        unknown = [name for name in losses if name not in LOSS_KINDS]
        if unknown:
            raise ValueError(f"unknown losses {unknown}; choose from {LOSS_KINDS}")
        self.matcher = matcher
        self.weight_dict = dict(weight_dict)
        self.losses = list(losses)
        self.alpha = alpha
        self.gamma = gamma
        self.num_classes = num_classes
        self.reg_max = reg_max
        self.mal_alpha = mal_alpha
        self.use_uni_set = use_uni_set
        self.last_positives = 0  # one-to-one matches of the final layer in the last batch (logged per epoch)

    def forward(self, outputs: dict, targets: list[dict]) -> dict[str, Tensor]:
        """All weighted loss terms, e.g. ``loss_mal``, ``loss_bbox_aux_0``, ``loss_giou_enc_0``,
        ``loss_fgl_dn_1``, ``loss_mal_dn_pre``; see the module docstring."""
        plan, context = self.plan(outputs, targets)
        losses: dict[str, Tensor] = {}
        for item in plan:
            losses.update(self._output_losses(item, context))
        return {name: torch.nan_to_num(value, nan=0.0) for name, value in losses.items()}

    def plan(self, outputs: dict, targets: list[dict]) -> tuple[list[Supervision], LocalContext]:
        """Match every non-denoising output and decide which matches each loss of each output uses."""
        device = outputs["pred_logits"].device
        layers = [(out, f"_aux_{i}") for i, out in enumerate(outputs.get("aux_outputs", []))]
        if "pre_outputs" in outputs:
            layers.append((outputs["pre_outputs"], "_pre"))
        encoder = [(out, f"_enc_{i}") for i, out in enumerate(outputs.get("enc_aux_outputs", []))]
        enc_targets, enc_classes = targets, self.num_classes
        if outputs.get("enc_meta", {}).get("class_agnostic", False):  # one-class encoder score head
            enc_targets = [{**t, "labels": torch.zeros_like(t["labels"])} for t in targets]
            enc_classes = 1
        main_idx = self.matcher(outputs, targets)
        self.last_positives = sum(len(q) for q, _ in main_idx)
        layer_idx = [self.matcher(out, targets) for out, _ in layers]
        enc_idx = [self.matcher(out, enc_targets) for out, _ in encoder]

        num_boxes = mean_count_over_processes(sum(len(t["labels"]) for t in targets), device)
        union = None
        if self.use_uni_set:
            pooled = union_match_indices([main_idx, *layer_idx, *enc_idx])
            union = Matches(pooled, mean_count_over_processes(sum(len(q) for q, _ in pooled), device))

        plan = []
        for (out, suffix), idx in zip([(outputs, ""), *layers], [main_idx, *layer_idx]):
            own = Matches(idx, num_boxes)
            plan.append(Supervision(out, suffix, own, union or own, union or own, targets, self.num_classes))
        for (out, suffix), idx in zip(encoder, enc_idx):
            own = Matches(idx, num_boxes)
            plan.append(Supervision(out, suffix, own, union or own, own, enc_targets, enc_classes))

        if "dn_outputs" in outputs:
            dn = Matches(denoising_match_indices(outputs["dn_meta"], targets),
                         num_boxes * outputs["dn_meta"]["dn_num_group"])
            dn_outputs = [(out, f"_dn_{i}") for i, out in enumerate(outputs["dn_outputs"])]
            if "dn_pre_outputs" in outputs:
                dn_outputs.append((outputs["dn_pre_outputs"], "_dn_pre"))
            plan += [Supervision(out, suffix, dn, dn, dn, targets, self.num_classes) for out, suffix in dn_outputs]

        # DDF mixes matched/unmatched edges with weights from the regular queries' local matches
        batch, queries = outputs["pred_logits"].shape[:2]
        num_local = sum(len(q) for q, _ in plan[0].local.indices)
        context = LocalContext(outputs.get("up"), outputs.get("reg_scale"), ddf_balance(num_local, batch, queries))
        return plan, context

    def _output_losses(self, item: Supervision, context: LocalContext) -> dict[str, Tensor]:
        """Weighted terms of one output, names suffixed; terms without a weight are dropped."""
        terms: dict[str, Tensor] = {}
        for kind in self.losses:
            if kind in _CLASSIFICATION:
                terms.update(self._classification(kind, item.output, item.targets, item.classification,
                                                  item.num_classes))
            elif kind == "boxes":
                terms.update(self._boxes(item.output, item.targets, item.boxes))
            elif "pred_corners" in item.output:
                terms.update(self._local(item.output, item.targets, item.local, context))
        return {name + item.suffix: value * self.weight_dict[name] for name, value in terms.items()
                if name in self.weight_dict}

    def _classification(self, kind: str, out: dict, targets: list[dict], matches: Matches,
                        num_classes: int) -> dict[str, Tensor]:
        logits = out["pred_logits"]
        idx = _flat_index(matches.indices)
        target_classes = torch.full(logits.shape[:2], num_classes, dtype=torch.int64, device=logits.device)
        target_classes[idx] = _matched_targets(targets, matches.indices, "labels")
        onehot = F.one_hot(target_classes, num_classes=num_classes + 1)[..., :-1].to(logits.dtype)
        if kind == "focal":
            return {"loss_focal": focal_loss(logits, onehot, matches.num_boxes, alpha=self.alpha, gamma=self.gamma)}
        matched_boxes = _matched_targets(targets, matches.indices, "boxes")
        ious = paired_box_iou(box_cxcywh_to_xyxy(out["pred_boxes"][idx]), box_cxcywh_to_xyxy(matched_boxes))
        iou_map = torch.zeros(logits.shape[:2], dtype=logits.dtype, device=logits.device)
        iou_map[idx] = ious.detach().to(logits.dtype)
        if kind == "vfl":
            return {"loss_vfl": varifocal_loss(logits, onehot, iou_map, matches.num_boxes,
                                               alpha=self.alpha, gamma=self.gamma)}
        return {"loss_mal": matchability_aware_loss(logits, onehot, iou_map, matches.num_boxes,
                                                    gamma=self.gamma, alpha=self.mal_alpha)}

    def _boxes(self, out: dict, targets: list[dict], matches: Matches) -> dict[str, Tensor]:
        idx = _flat_index(matches.indices)
        pred = out["pred_boxes"][idx]
        target = _matched_targets(targets, matches.indices, "boxes")
        giou = paired_generalized_box_iou(box_cxcywh_to_xyxy(pred), box_cxcywh_to_xyxy(target))
        return {"loss_bbox": F.l1_loss(pred, target, reduction="none").sum() / matches.num_boxes,
                "loss_giou": (1 - giou).sum() / matches.num_boxes}

    def _local(self, out: dict, targets: list[dict], matches: Matches, context: LocalContext) -> dict[str, Tensor]:
        """FGL on the matched queries; DDF when the output carries a teacher that differs from it.
        FGL targets are computed from this output's own reference points, on every call."""
        if context.up is None or context.reg_scale is None:
            raise ValueError("the 'local' loss needs outputs['up'] and outputs['reg_scale'] (D-FINE decoder)")
        idx = _flat_index(matches.indices)
        target = _matched_targets(targets, matches.indices, "boxes")
        corners = out["pred_corners"]
        fgl_targets = bbox2distance(out["ref_points"][idx].detach(), box_cxcywh_to_xyxy(target),
                                    self.reg_max, context.reg_scale, context.up)
        ious = paired_box_iou(box_cxcywh_to_xyxy(out["pred_boxes"][idx]), box_cxcywh_to_xyxy(target)).detach()
        iou_per_edge = ious.unsqueeze(-1).repeat(1, 4).reshape(-1)
        matched_corners = corners[idx].reshape(-1, self.reg_max + 1)
        terms = {"loss_fgl": fine_grained_localization_loss(matched_corners, *fgl_targets, iou_per_edge,
                                                            matches.num_boxes)}
        teacher = out.get("teacher_corners")
        if teacher is not None and not torch.equal(corners, teacher):
            terms["loss_ddf"] = decoupled_distillation_loss(corners, teacher, out["teacher_logits"], idx, ious,
                                                            context.ddf_balance)
        return terms
