"""Backbones: official state-dict layouts, output shapes, freezing, frozen BatchNorm, the affine block."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from deim.models.backbone_blocks import FrozenBatchNorm2d, LearnableAffineBlock, freeze_batch_norm
from deim.models.build import build_backbone
from deim.models.hgnetv2 import HGNetv2
from deim.presets.catalog import get_preset
from deim.models.presnet import PResNet

MANIFESTS = {
    "deim_dfine_n": "deim_hgnetv2_n_coco", "deim_dfine_s": "deim_hgnetv2_s_coco",
    "deim_dfine_m": "deim_hgnetv2_m_coco", "deim_dfine_l": "deim_hgnetv2_l_coco",
    "deim_dfine_x": "deim_hgnetv2_x_coco", "deim_rtdetrv2_r18": "deim_r18vd_120e_coco",
    "deim_rtdetrv2_r34": "deim_r34vd_120e_coco", "deim_rtdetrv2_r50m": "deim_r50vd_m_60e_coco",
    "deim_rtdetrv2_r50": "deim_r50vd_60e_coco", "deim_rtdetrv2_r101": "deim_r101vd_60e_coco",
}


def manifest_backbone(manifest_dir, name: str) -> list[tuple[str, tuple[int, ...]]]:
    rows = []
    for line in (manifest_dir / f"{name}.tsv").read_text().splitlines():
        if line.startswith("#") or not line.startswith("backbone."):
            continue
        key, shape = line.split("\t")
        rows.append((key.removeprefix("backbone."), tuple(int(s) for s in shape.strip("()").split(",") if s.strip())))
    return rows


@pytest.mark.parametrize("preset", sorted(MANIFESTS))
def test_state_dict_equals_the_official_manifest(preset, manifest_dir):
    backbone = build_backbone(get_preset(preset).model)
    ours = [(k, tuple(v.shape)) for k, v in backbone.state_dict().items()]
    assert ours == manifest_backbone(manifest_dir, MANIFESTS[preset])


@pytest.mark.parametrize("preset", ["dfine_l", "dfine_x", "rtdetrv2_r50", "rtdetrv2_r50m", "rtdetrv2_r101"])
def test_frozen_baselines_drop_batch_counters_and_freeze_the_stem(preset):
    frozen = build_backbone(get_preset(preset).model)
    plain = build_backbone(get_preset(f"deim_{preset}").model)
    keys = set(frozen.state_dict())
    assert keys == {k for k in plain.state_dict() if not k.endswith("num_batches_tracked")}
    assert not any(isinstance(m, nn.BatchNorm2d) for m in frozen.modules())
    stem = frozen.stem if isinstance(frozen, HGNetv2) else frozen.conv1
    assert stem_params_frozen(stem) and any(p.requires_grad for p in frozen.parameters())


def stem_params_frozen(stem: nn.Module) -> bool:
    return all(not p.requires_grad for p in stem.parameters())


def test_freeze_at_semantics():
    hg = HGNetv2("B0", freeze_at=1, freeze_stem_only=False)
    assert stem_params_frozen(hg.stem) and stem_params_frozen(hg.stages[0]) and stem_params_frozen(hg.stages[1])
    assert all(p.requires_grad for p in hg.stages[2].parameters())
    assert all(p.requires_grad for p in HGNetv2("B0", freeze_at=1).stages[0].parameters())  # stem only
    rn = PResNet(18, freeze_at=1)
    assert stem_params_frozen(rn.conv1) and stem_params_frozen(rn.res_layers[0])
    assert all(p.requires_grad for p in rn.res_layers[1].parameters())
    assert all(p.requires_grad for p in PResNet(18).parameters())


@pytest.mark.parametrize("backbone, channels", [
    (lambda: HGNetv2("B0", use_lab=True), [256, 512, 1024]),
    (lambda: HGNetv2("B0", return_idx=[2, 3]), [512, 1024]),
    (lambda: PResNet(18), [128, 256, 512]),
    (lambda: PResNet(50, return_idx=[0, 1, 2, 3]), [256, 512, 1024, 2048]),
])
def test_outputs_have_the_announced_channels_and_strides(backbone, channels):
    model = backbone().eval()
    assert model.out_channels == channels
    with torch.no_grad():
        outs = model(torch.rand(1, 3, 64, 96))
    assert [o.shape[1] for o in outs] == channels
    assert [(64 // o.shape[2], 96 // o.shape[3]) for o in outs] == [(s, s) for s in model.out_strides]


def test_frozen_batch_norm_equals_batch_norm_in_eval():
    bn = nn.BatchNorm2d(6, eps=1e-3)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2)
        bn.bias.normal_()
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2)
    frozen = freeze_batch_norm(bn)
    assert isinstance(frozen, FrozenBatchNorm2d) and "num_batches_tracked" not in frozen.state_dict()
    x = torch.randn(2, 6, 5, 5)
    torch.testing.assert_close(frozen(x), bn.eval()(x))
    frozen.load_state_dict({**bn.state_dict()})  # a checkpoint with the counter still loads


def test_learnable_affine_block_scales_and_shifts():
    lab = LearnableAffineBlock()
    x = torch.randn(4)
    assert torch.equal(lab(x), x)
    with torch.no_grad():
        lab.scale.fill_(2.0)
        lab.bias.fill_(-1.0)
    torch.testing.assert_close(lab(x), 2 * x - 1)
    with_lab = HGNetv2("B0", use_lab=True)
    assert sum(isinstance(m, LearnableAffineBlock) for m in with_lab.modules()) > 0
    assert not any(isinstance(m, LearnableAffineBlock) for m in HGNetv2("B0").modules())


def test_unknown_architectures_are_refused():
    with pytest.raises(ValueError, match="unknown HGNetv2"):
        HGNetv2("B9")
    with pytest.raises(ValueError, match="unknown ResNet depth"):
        PResNet(152)
    with pytest.raises(ValueError, match="return_idx"):
        PResNet(18, return_idx=[4])
