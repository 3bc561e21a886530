"""Tests for the DEIM criterion (deim/losses/criterion.py) and its parts: the union ("GO")
match set (go_indices.py) and the FGL / DDF losses (local_losses.py)."""

from __future__ import annotations

import math
import sys

import pytest
import torch
import torch.nn.functional as F

from deim.losses import criterion as criterion_module
from deim.losses.criterion import DEIMCriterion, denoising_match_indices, mean_count_over_processes
from deim.losses.go_indices import union_match_indices
from deim.losses.local_losses import ddf_balance, decoupled_distillation_loss, fine_grained_localization_loss
from deim.losses.matcher import HungarianMatcher
from deim.models.box_coder import bbox2distance

DFINE_WEIGHTS = {"loss_mal": 1, "loss_bbox": 5, "loss_giou": 2, "loss_fgl": 0.15, "loss_ddf": 1.5}
RT_WEIGHTS = {"loss_mal": 1, "loss_bbox": 5, "loss_giou": 2}
REG_MAX = 32


def dfine_criterion(**kw) -> DEIMCriterion:
    settings = dict(alpha=0.75, gamma=1.5, reg_max=REG_MAX, use_uni_set=True)
    settings.update(kw)
    return DEIMCriterion(HungarianMatcher(), DFINE_WEIGHTS, ["mal", "boxes", "local"], **settings)


def rt_criterion(**kw) -> DEIMCriterion:
    settings = dict(alpha=0.75, gamma=1.5, use_uni_set=False)
    settings.update(kw)
    return DEIMCriterion(HungarianMatcher(), RT_WEIGHTS, ["mal", "boxes"], **settings)


def t(*values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.int64)


def xyxy(b: torch.Tensor) -> torch.Tensor:
    cx, cy, w, h = b.unbind(-1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)


def paired_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a, b = xyxy(a), xyxy(b)
    wh = (torch.min(a[:, 2:], b[:, 2:]) - torch.max(a[:, :2], b[:, :2])).clamp(min=0)
    inter = wh[:, 0] * wh[:, 1]
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def make_targets(counts=(3, 2), num_classes=4, seed=0) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    return [{"labels": torch.randint(num_classes, (n,), generator=g),
             "boxes": torch.cat([0.3 + 0.4 * torch.rand(n, 2, generator=g),
                                 0.1 + 0.2 * torch.rand(n, 2, generator=g)], 1)}
            for n in counts]


def make_layer(g, batch, queries, num_classes, ref, corners=True) -> dict:
    out = {"pred_logits": torch.randn(batch, queries, num_classes, generator=g),
           "pred_boxes": (ref + 0.05 * torch.randn(batch, queries, 4, generator=g)).clamp(0.05, 0.95)}
    if corners:
        out["pred_corners"] = torch.randn(batch, queries, 4 * (REG_MAX + 1), generator=g)
        out["ref_points"] = ref
    return out


def make_outputs(batch=2, queries=12, num_classes=4, layers=3, dfine=True, dn_groups=0, targets=None, seed=0) -> dict:
    """A small detector output dict shaped like the D-FINE / RT-DETRv2 decoders' training output."""
    g = torch.Generator().manual_seed(seed)
    ref = torch.cat([0.3 + 0.4 * torch.rand(batch, queries, 2, generator=g),
                     0.1 + 0.2 * torch.rand(batch, queries, 2, generator=g)], -1)
    per_layer = [make_layer(g, batch, queries, num_classes, ref, dfine) for _ in range(layers)]
    out = dict(per_layer[-1])
    out["aux_outputs"] = per_layer[:-1]
    out["enc_aux_outputs"] = [make_layer(g, batch, queries, num_classes, ref, corners=False)]
    out["enc_meta"] = {"class_agnostic": False}
    if dfine:
        for layer in out["aux_outputs"]:
            layer["teacher_corners"], layer["teacher_logits"] = out["pred_corners"], out["pred_logits"]
        out["pre_outputs"] = make_layer(g, batch, queries, num_classes, ref, corners=False)
        out["up"], out["reg_scale"] = torch.tensor([0.5]), torch.tensor([4])
    if dn_groups:
        max_gt = max(len(tg["labels"]) for tg in targets)
        dn_queries = 2 * max_gt * dn_groups
        dn_ref = ref[:, :1].repeat(1, dn_queries, 1)
        dn = [make_layer(g, batch, dn_queries, num_classes, dn_ref, dfine) for _ in range(layers)]
        if dfine:
            for layer in dn:
                layer["teacher_corners"], layer["teacher_logits"] = dn[-1]["pred_corners"], dn[-1]["pred_logits"]
            out["dn_pre_outputs"] = make_layer(g, batch, dn_queries, num_classes, dn_ref, corners=False)
        positives = [torch.tensor([grp * 2 * max_gt + j for grp in range(dn_groups) for j in range(len(tg["labels"]))],
                                  dtype=torch.int64) for tg in targets]
        out["dn_outputs"] = dn
        out["dn_meta"] = {"dn_positive_idx": positives, "dn_num_group": dn_groups,
                          "dn_num_split": [dn_queries, queries]}
    return out


# --- parity with the official criterion -------------------------------------------------------------

PARITY = {"n": dfine_criterion, "s": dfine_criterion, "r18": rt_criterion}


@pytest.mark.parametrize("name", sorted(PARITY))
def test_parity_with_official_losses(parity_dir, name):
    sys.path.insert(0, str(parity_dir))
    import check

    fx = torch.load(parity_dir / f"{name}.pt")
    crit = PARITY[name](num_classes=80)
    plan, _ = crit.plan(fx["train_outputs"], fx["train_targets"])
    for (q, g), (rq, rg) in zip(plan[0].classification.indices, fx["train_main_indices"]):
        assert torch.equal(q, rq) and torch.equal(g, rg)
    losses = crit(fx["train_outputs"], fx["train_targets"])
    result = check.compare_losses(fx, losses, rtol=1e-4)
    assert result["missing"] == [] and result["extra"] == [] and result["mismatched"] == {}, result
    assert result["total_rel_diff"] < 1e-4


# --- the union match set -----------------------------------------------------------------------------

def test_union_majority_and_tie_break():
    main = [(t(5, 3, 7), t(0, 1, 2)), (t(1,), t(0,))]
    aux = [(t(5, 3, 9), t(1, 1, 0)), (t(2,), t(0,))]
    enc = [(t(7,), t(0,)), (t(1,), t(0,))]
    (q0, g0), (q1, g1) = union_match_indices([main, aux, enc])
    # image 0: (3,1) twice ranks first; query 5 tied between gt 0 and 1 -> smaller gt; query 7 tied -> gt 0
    assert q0.tolist() == [3, 5, 7, 9] and g0.tolist() == [1, 0, 0, 0]
    # image 1: (1,0) twice first, then (2,0); a gt may be covered by several queries
    assert q1.tolist() == [1, 2] and g1.tolist() == [0, 0]
    assert q0.dtype == g0.dtype == torch.int64


def test_union_majority_beats_first_seen():
    main = [(t(4,), t(0,))]
    others = [[(t(4,), t(2,))], [(t(4,), t(2,))]]
    (q, g), = union_match_indices([main, *others])
    assert q.tolist() == [4] and g.tolist() == [2]


def test_union_empty_image_and_bad_input():
    empty = (torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.int64))
    (q, g), = union_match_indices([[empty], [empty]])
    assert q.numel() == 0 and g.numel() == 0 and q.dtype == torch.int64
    with pytest.raises(ValueError, match="empty"):
        union_match_indices([])
    with pytest.raises(ValueError, match="images"):
        union_match_indices([[empty], [empty, empty]])


def test_union_set_supervises_boxes_but_not_classification():
    targets = make_targets()
    out = make_outputs(targets=targets)
    crit = dfine_criterion(num_classes=4)
    plan, _ = crit.plan(out, targets)
    by_suffix = {item.suffix: item for item in plan}
    union = by_suffix[""].boxes.indices
    for suffix in ["", "_aux_0", "_aux_1", "_pre", "_enc_0"]:
        assert by_suffix[suffix].boxes.indices is union
        assert all(len(q) == len(tg["labels"]) for (q, _), tg in zip(by_suffix[suffix].classification.indices, targets))
    assert by_suffix["_enc_0"].local.indices is not union
    num_union = sum(len(q) for q, _ in union)
    assert by_suffix[""].boxes.num_boxes == num_union and by_suffix[""].classification.num_boxes == 5
    # brute-force L1 over the union pairs of the last layer
    pred = torch.cat([out["pred_boxes"][i, q] for i, (q, _) in enumerate(union)])
    gt = torch.cat([tg["boxes"][g] for tg, (_, g) in zip(targets, union)])
    losses = crit(out, targets)
    assert losses["loss_bbox"].item() == pytest.approx(5 * (pred - gt).abs().sum().item() / num_union, rel=1e-6)
    # without the union set every output uses its own one-to-one matches
    plan, _ = dfine_criterion(num_classes=4, use_uni_set=False).plan(out, targets)
    assert all(item.boxes.indices is item.classification.indices for item in plan)


# --- classification terms: hand-written formulas ------------------------------------------------------

def _bce(logits, target):
    return -(target * F.logsigmoid(logits) + (1 - target) * F.logsigmoid(-logits))


def _score_and_onehot(out, targets, indices, num_classes):
    onehot = torch.zeros_like(out["pred_logits"])
    iou = torch.zeros(out["pred_logits"].shape[:2])
    for i, (q, g) in enumerate(indices):
        onehot[i, q, targets[i]["labels"][g]] = 1.0
        iou[i, q] = paired_iou(out["pred_boxes"][i, q], targets[i]["boxes"][g])
    return iou.unsqueeze(-1) * onehot, onehot


def test_mal_and_vfl_match_hand_formulas():
    targets = make_targets()
    out = make_outputs(dfine=False, targets=targets)
    crit = rt_criterion(num_classes=4)
    plan, _ = crit.plan(out, targets)
    score, onehot = _score_and_onehot(out, targets, plan[0].classification.indices, 4)
    p = out["pred_logits"].sigmoid()
    mal = (_bce(out["pred_logits"], score ** 1.5) * (p ** 1.5 * (1 - onehot) + onehot)).sum() / 5
    assert crit(out, targets)["loss_mal"].item() == pytest.approx(mal.item(), rel=1e-5)

    vfl_crit = DEIMCriterion(HungarianMatcher(), {"loss_vfl": 1, "loss_bbox": 5, "loss_giou": 2}, ["vfl", "boxes"],
                             alpha=0.75, gamma=2.0, num_classes=4, use_uni_set=False)
    losses = vfl_crit(out, targets)
    assert "loss_vfl" in losses and "loss_vfl_aux_1" in losses and "loss_vfl_enc_0" in losses
    assert not any(name.startswith("loss_mal") for name in losses)
    vfl = (_bce(out["pred_logits"], score) * (0.75 * p ** 2 * (1 - onehot) + score)).sum() / 5
    assert losses["loss_vfl"].item() == pytest.approx(vfl.item(), rel=1e-5)


def test_nan_logits_do_not_propagate():
    targets = make_targets()
    out = make_outputs(dfine=False, targets=targets)
    out["pred_logits"] = out["pred_logits"].clone()
    out["pred_logits"][0, 0, 0] = float("nan")
    losses = rt_criterion(num_classes=4)(out, targets)
    assert losses["loss_mal"].item() == 0.0
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["loss_mal_aux_0"].item() > 0


# --- batches without objects ----------------------------------------------------------------------

def test_image_without_targets():
    targets = make_targets(counts=(0, 2))
    out = make_outputs(targets=targets, dn_groups=2)
    losses = dfine_criterion(num_classes=4)(out, targets)
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["loss_bbox"].item() > 0 and losses["loss_fgl"].item() > 0


def test_batch_without_targets():
    targets = make_targets(counts=(0, 0))
    out = make_outputs(targets=targets)
    losses = dfine_criterion(num_classes=4)(out, targets)
    assert losses["loss_bbox"].item() == 0.0 and losses["loss_giou"].item() == 0.0 and losses["loss_fgl"].item() == 0.0
    # num_boxes clamps to 1: MAL is the plain sum of the negatives' focal-weighted BCE
    logits = out["pred_logits"]
    expected = (_bce(logits, torch.zeros_like(logits)) * logits.sigmoid() ** 1.5).sum()
    assert losses["loss_mal"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert all(torch.isfinite(v) for v in losses.values())


# --- denoising ----------------------------------------------------------------------------------------

def test_denoising_terms_and_normalisation():
    targets = make_targets(counts=(3, 2))
    groups = 2
    out = make_outputs(targets=targets, dn_groups=groups)
    losses = dfine_criterion(num_classes=4)(out, targets)
    for layer in range(3):
        for base in ["loss_mal", "loss_bbox", "loss_giou", "loss_fgl"]:
            assert f"{base}_dn_{layer}" in losses
    assert "loss_ddf_dn_0" in losses and "loss_ddf_dn_1" in losses and "loss_ddf_dn_2" not in losses
    assert {"loss_mal_dn_pre", "loss_bbox_dn_pre", "loss_giou_dn_pre"} <= set(losses)
    assert "loss_fgl_dn_pre" not in losses and "loss_ddf" not in losses
    assert len(losses) == 20 + 3 * 4 + 2 + 3

    positives = out["dn_meta"]["dn_positive_idx"]
    for layer in range(3):
        pred = torch.cat([out["dn_outputs"][layer]["pred_boxes"][i, q] for i, q in enumerate(positives)])
        gt = torch.cat([tg["boxes"].repeat(groups, 1) for tg in targets])
        expected = 5 * (pred - gt).abs().sum() / (5 * groups)
        assert losses[f"loss_bbox_dn_{layer}"].item() == pytest.approx(expected.item(), rel=1e-6)


def test_denoising_match_indices():
    targets = make_targets(counts=(2, 0))
    meta = {"dn_positive_idx": [t(0, 1, 6, 7), t()], "dn_num_group": 2}
    (q0, g0), (q1, g1) = denoising_match_indices(meta, targets)
    assert q0.tolist() == [0, 1, 6, 7] and g0.tolist() == [0, 1, 0, 1] and q1.numel() == g1.numel() == 0
    with pytest.raises(ValueError, match="positive denoising queries"):
        denoising_match_indices({"dn_positive_idx": [t(0, 1, 6), t()], "dn_num_group": 2}, targets)


# --- local losses -------------------------------------------------------------------------------------

def test_fgl_matches_brute_force():
    g = torch.Generator().manual_seed(1)
    pred = torch.randn(8, REG_MAX + 1, generator=g)
    corners = torch.tensor([0.0, 3.0, 15.0, 31.9, 16.0, 2.0, 7.0, 30.0])
    wr = torch.rand(8, generator=g)
    iou = torch.rand(8, generator=g)
    log_p = pred.log_softmax(-1)
    left = corners.long()
    expected = sum(-(log_p[i, left[i]] * (1 - wr[i]) + log_p[i, left[i] + 1] * wr[i]) * iou[i] for i in range(8)) / 3.0
    got = fine_grained_localization_loss(pred, corners, wr, 1 - wr, iou, num_boxes=3.0)
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)


def test_ddf_matches_brute_force():
    g = torch.Generator().manual_seed(2)
    batch, queries, bins = 2, 3, REG_MAX + 1
    pred = torch.randn(batch, queries, 4 * bins, generator=g)
    teacher = torch.randn(batch, queries, 4 * bins, generator=g)
    teacher_logits = torch.randn(batch, queries, 5, generator=g)
    matched = (t(0, 1), t(2, 0))
    ious = torch.tensor([0.7, 0.4])
    balance = ddf_balance(2, batch, queries)
    assert balance == pytest.approx((math.sqrt(4 * 2 * 4), math.sqrt(4 * 4 * 4)))
    got = decoupled_distillation_loss(pred, teacher, teacher_logits, matched, ious, balance)

    pos, neg = [], []
    for b in range(batch):
        for q in range(queries):
            is_pos = (b, q) in [(0, 2), (1, 0)]
            w = ious[[(0, 2), (1, 0)].index((b, q))] if is_pos else teacher_logits[b, q].sigmoid().max()
            for e in range(4):
                s = slice(e * bins, (e + 1) * bins)
                p_t = (teacher[b, q, s] / 5).softmax(-1)
                kl = (p_t * (p_t.log() - (pred[b, q, s] / 5).log_softmax(-1))).sum()
                (pos if is_pos else neg).append(w * 25 * kl)
    expected = (torch.stack(pos).mean() * balance[0] + torch.stack(neg).mean() * balance[1]) / sum(balance)
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)


def test_fgl_targets_use_each_outputs_own_reference_points():
    targets = make_targets()
    out = make_outputs(targets=targets)
    layer = out["aux_outputs"][0]
    layer["ref_points"] = (layer["ref_points"] + 0.03).clamp(max=0.95)  # differs from the last layer's
    crit = dfine_criterion(num_classes=4, use_uni_set=False)
    plan, _ = crit.plan(out, targets)
    indices = plan[1].local.indices
    batch_idx = torch.cat([torch.full_like(q, i) for i, (q, _) in enumerate(indices)])
    query_idx = torch.cat([q for q, _ in indices])
    gt = torch.cat([tg["boxes"][gi] for tg, (_, gi) in zip(targets, indices)])
    ref = layer["ref_points"][batch_idx, query_idx]
    fgl_targets = bbox2distance(ref, xyxy(gt), REG_MAX, out["reg_scale"], out["up"])
    iou = paired_iou(layer["pred_boxes"][batch_idx, query_idx], gt).repeat_interleave(4)
    expected = fine_grained_localization_loss(layer["pred_corners"][batch_idx, query_idx].reshape(-1, REG_MAX + 1),
                                              *fgl_targets, iou, 5.0)
    assert crit(out, targets)["loss_fgl_aux_0"].item() == pytest.approx(0.15 * expected.item(), rel=1e-5)


def test_ddf_only_where_the_teacher_differs():
    targets = make_targets()
    out = make_outputs(targets=targets)
    out["aux_outputs"][1]["pred_corners"] = out["pred_corners"]
    losses = dfine_criterion(num_classes=4)(out, targets)
    assert "loss_ddf_aux_0" in losses and "loss_ddf_aux_1" not in losses
    without_ddf = DEIMCriterion(HungarianMatcher(), {k: v for k, v in DFINE_WEIGHTS.items() if k != "loss_ddf"},
                                ["mal", "boxes", "local"], gamma=1.5, num_classes=4)(out, targets)
    assert not any("ddf" in name for name in without_ddf)


# --- encoder, distributed normalisation, configuration --------------------------------------------------

def test_class_agnostic_encoder():
    targets = make_targets()
    out = make_outputs(targets=targets, dfine=False)
    g = torch.Generator().manual_seed(3)
    out["enc_aux_outputs"][0]["pred_logits"] = torch.randn(2, 12, 1, generator=g)
    out["enc_meta"] = {"class_agnostic": True}
    crit = rt_criterion(num_classes=4)
    losses = crit(out, targets)
    plan, _ = crit.plan(out, targets)
    enc = plan[-1]
    score, onehot = _score_and_onehot(enc.output, enc.targets, enc.classification.indices, 1)
    logits = enc.output["pred_logits"]
    expected = (_bce(logits, score ** 1.5) * (logits.sigmoid() ** 1.5 * (1 - onehot) + onehot)).sum() / 5
    assert losses["loss_mal_enc_0"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_num_boxes_averaged_over_processes(monkeypatch):
    fake = criterion_module.dist
    monkeypatch.setattr(fake, "is_available", lambda: True)
    monkeypatch.setattr(fake, "is_initialized", lambda: True)
    monkeypatch.setattr(fake, "get_world_size", lambda: 2)
    monkeypatch.setattr(fake, "all_reduce", lambda tensor: tensor.add_(5.0))  # the other process has 5
    assert mean_count_over_processes(3, torch.device("cpu")) == 4.0
    monkeypatch.setattr(fake, "all_reduce", lambda tensor: tensor.add_(0.0))
    assert mean_count_over_processes(1, torch.device("cpu")) == 1.0  # 0.5 clamped to 1


def test_bad_configuration():
    with pytest.raises(ValueError, match="unknown losses"):
        DEIMCriterion(HungarianMatcher(), RT_WEIGHTS, ["mal", "giou"])
    targets = make_targets()
    out = make_outputs(targets=targets)
    del out["up"]
    with pytest.raises(ValueError, match="up"):
        dfine_criterion(num_classes=4)(out, targets)


def test_backward_reaches_every_supervised_tensor():
    targets = make_targets()
    out = make_outputs(targets=targets, dn_groups=2)
    leaves = [out["pred_logits"], out["pred_boxes"], out["pred_corners"], out["aux_outputs"][0]["pred_corners"],
              out["enc_aux_outputs"][0]["pred_boxes"], out["dn_outputs"][0]["pred_corners"]]
    for leaf in leaves:
        leaf.requires_grad_(True)
    sum(dfine_criterion(num_classes=4)(out, targets).values()).backward()
    for leaf in leaves:
        assert leaf.grad is not None and torch.isfinite(leaf.grad).all() and leaf.grad.abs().sum() > 0
