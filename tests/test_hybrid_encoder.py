"""Hybrid encoder (AIFI + CCFF): official layouts, shapes, the position embedding, the AIFI layer
against a hand-written attention, any-size evaluation, deploy fusion, gradients, and the
official encoder features of DEIM-D-FINE-N."""
from __future__ import annotations

import copy
import math
import zlib

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from deim.models.build import build_backbone, build_encoder
from deim.models.encoder_blocks import ConvNormLayer, CSPLayer, RepNCSPELAN4, SCDown, VGGBlock
from deim.models.hybrid_encoder import HybridEncoder, TransformerEncoderLayer, sincos_position_embedding
from deim.presets.catalog import get_preset

MANIFEST = {"deim_dfine_n": "deim_hgnetv2_n_coco", "deim_dfine_s": "deim_hgnetv2_s_coco",
            "deim_dfine_m": "deim_hgnetv2_m_coco", "deim_dfine_l": "deim_hgnetv2_l_coco",
            "deim_dfine_x": "deim_hgnetv2_x_coco", "deim_rtdetrv2_r18": "deim_r18vd_120e_coco",
            "deim_rtdetrv2_r34": "deim_r34vd_120e_coco", "deim_rtdetrv2_r50m": "deim_r50vd_m_60e_coco",
            "deim_rtdetrv2_r50": "deim_r50vd_60e_coco", "deim_rtdetrv2_r101": "deim_r101vd_60e_coco"}


def small_encoder(version: str, **kwargs) -> HybridEncoder:
    args = dict(in_channels=[8, 16, 24], feat_strides=[8, 16, 32], hidden_dim=32, nhead=4, dim_feedforward=64,
                expansion=0.5, depth_mult=0.34, version=version)
    args.update(kwargs)
    return HybridEncoder(**args)


def features(encoder: HybridEncoder, height: int, width: int, batch: int = 2, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, c, math.ceil(height / s), math.ceil(width / s), generator=g)
            for c, s in zip(encoder.in_channels, encoder.feat_strides)]


def randomise_norms(module: nn.Module, seed: int = 0) -> None:
    """Non-trivial BatchNorm statistics and affine parameters, so that fusion is really tested."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.2)
                m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=g))
                m.weight.copy_(1 + 0.2 * torch.randn(m.num_features, generator=g))
                m.bias.copy_(0.2 * torch.randn(m.num_features, generator=g))


# ---------------------------------------------------------------- official layout

@pytest.mark.parametrize("name", list(MANIFEST))
def test_state_dict_equals_official_manifest(name, manifest_dir):
    lines = (manifest_dir / f"{MANIFEST[name]}.tsv").read_text().splitlines()[1:]
    official = [tuple(line.split("\t")) for line in lines if line.startswith("encoder.")]
    ours = [(f"encoder.{k}", str(tuple(v.shape))) for k, v in build_encoder(get_preset(name).model).state_dict().items()]
    assert ours == official


# ---------------------------------------------------------------- position embedding

def test_position_embedding_at_hand_checked_points():
    pos = sincos_position_embedding(2, 3, embed_dim=8, temperature=100.0)  # d = 2, omega = [1, 0.1]
    assert pos.shape == (1, 6, 8) and pos.dtype == torch.float32
    zeros, ones = torch.zeros(2), torch.ones(2)
    torch.testing.assert_close(pos[0, 0], torch.cat([zeros, ones, zeros, ones]))  # row 0, col 0
    omega = torch.tensor([1.0, 0.1])
    row1_col2 = 1 * 3 + 2  # flatten order is row-major, as x.flatten(2) of [B, C, 2, 3]
    expected = torch.cat([torch.sin(1 * omega), torch.cos(1 * omega), torch.sin(2 * omega), torch.cos(2 * omega)])
    torch.testing.assert_close(pos[0, row1_col2], expected)


def test_position_embedding_matches_brute_force_formula():
    height, width, dim, temp = 3, 5, 16, 10000.0
    pos = sincos_position_embedding(height, width, dim, temp)[0]
    d = dim // 4
    for y in range(height):
        for x in range(width):
            for i in range(d):
                omega = temp ** (-i / d)
                want = [math.sin(y * omega), math.cos(y * omega), math.sin(x * omega), math.cos(x * omega)]
                got = pos[y * width + x, [i, d + i, 2 * d + i, 3 * d + i]].tolist()
                assert got == pytest.approx(want, abs=1e-6)


def test_position_embedding_rejects_bad_dims():
    with pytest.raises(ValueError, match="divisible by 4.*30"):
        sincos_position_embedding(2, 2, embed_dim=30)
    with pytest.raises(ValueError, match="hidden_dim must be divisible by 4"):
        small_encoder("dfine", hidden_dim=30, nhead=5)


def test_position_embedding_is_cached_per_size_and_dtype():
    encoder = small_encoder("dfine")
    a = encoder.position_embedding(4, 6, torch.device("cpu"), torch.float32)
    assert encoder.position_embedding(4, 6, torch.device("cpu"), torch.float32) is a
    assert encoder.position_embedding(6, 4, torch.device("cpu"), torch.float32) is not a
    double = encoder.position_embedding(4, 6, torch.device("cpu"), torch.float64)
    assert double.dtype == torch.float64 and torch.allclose(double.float(), a)
    assert not any("pos" in k for k in encoder.state_dict())


# ---------------------------------------------------------------- AIFI layer

def test_aifi_layer_equals_hand_written_post_norm_attention():
    torch.manual_seed(0)
    layer = TransformerEncoderLayer(d_model=16, nhead=2, dim_feedforward=24, dropout=0.0, activation="gelu").eval()
    src, pos = torch.randn(2, 7, 16), torch.randn(1, 7, 16)
    w_q, w_k, w_v = layer.self_attn.in_proj_weight.chunk(3)
    b_q, b_k, b_v = layer.self_attn.in_proj_bias.chunk(3)

    def heads(t):  # [B, N, 16] -> [B, 2, N, 8]
        return t.reshape(2, 7, 2, 8).transpose(1, 2)

    q, k, v = heads((src + pos) @ w_q.T + b_q), heads((src + pos) @ w_k.T + b_k), heads(src @ w_v.T + b_v)
    attn = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(8), dim=-1) @ v
    attn = attn.transpose(1, 2).reshape(2, 7, 16) @ layer.self_attn.out_proj.weight.T + layer.self_attn.out_proj.bias
    x = F.layer_norm(src + attn, (16,), layer.norm1.weight, layer.norm1.bias)
    ffn = F.gelu(x @ layer.linear1.weight.T + layer.linear1.bias) @ layer.linear2.weight.T + layer.linear2.bias
    expected = F.layer_norm(x + ffn, (16,), layer.norm2.weight, layer.norm2.bias)
    with torch.no_grad():
        torch.testing.assert_close(layer(src, pos_embed=pos), expected, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- shapes and sizes

@pytest.mark.parametrize("version", ["dfine", "rt_detrv2"])
def test_output_shapes(version):
    encoder = small_encoder(version).eval()
    with torch.no_grad():
        outs = encoder(features(encoder, 64, 96))
    assert [tuple(o.shape) for o in outs] == [(2, 32, 8, 12), (2, 32, 4, 6), (2, 32, 2, 3)]
    assert encoder.out_channels == [32, 32, 32] and encoder.out_strides == [8, 16, 32]


def test_two_levels_and_aifi_on_every_level():
    encoder = small_encoder("dfine", in_channels=[8, 16], feat_strides=[16, 32], use_encoder_idx=[0, 1],
                            num_encoder_layers=2).eval()
    assert len(encoder.encoder) == 2 and len(encoder.encoder[0].layers) == 2
    with torch.no_grad():
        outs = encoder(features(encoder, 64, 64))
    assert [tuple(o.shape) for o in outs] == [(2, 32, 4, 4), (2, 32, 2, 2)]


@pytest.mark.parametrize("version", ["dfine", "rt_detrv2"])
def test_evaluates_at_several_sizes_and_each_image_independently(version):
    """Sizes not known at construction (one not divisible by 32), and batch entries don't mix."""
    encoder = small_encoder(version, eval_spatial_size=[64, 64]).eval()
    with torch.no_grad():
        for height, width in [(64, 64), (96, 128), (80, 112)]:
            feats = features(encoder, height, width, batch=3, seed=height)
            outs = encoder(feats)
            assert [o.shape[2:] for o in outs] == [f.shape[2:] for f in feats]
            alone = encoder([f[1:2] for f in feats])
            for o, a in zip(outs, alone):
                torch.testing.assert_close(o[1:2], a, atol=1e-5, rtol=1e-5)


def test_position_embedding_changes_the_output():
    """The cached embedding reaches the attention: replacing it by zeros changes the AIFI level."""
    encoder = small_encoder("dfine").eval()
    feats = features(encoder, 64, 64)
    with torch.no_grad():
        reference = encoder(feats)[-1]
        level = encoder.use_encoder_idx[0]
        key = (2, 2, torch.device("cpu"), torch.float32)
        encoder._pos_cache[key] = torch.zeros(1, 4, 32)
        assert not torch.allclose(encoder(feats)[level], reference)


def test_bad_arguments_and_inputs_raise():
    with pytest.raises(ValueError, match="unknown encoder version 'rtdetr'"):
        small_encoder("rtdetr")
    with pytest.raises(ValueError, match=r"use_encoder_idx \[3\]"):
        small_encoder("dfine", use_encoder_idx=[3])
    with pytest.raises(ValueError, match="same length"):
        small_encoder("dfine", feat_strides=[8, 16])
    encoder = small_encoder("dfine")
    with pytest.raises(ValueError, match="expected 3 feature maps, got 2"):
        encoder(features(encoder, 64, 64)[:2])


# ---------------------------------------------------------------- deploy fusion

def test_conv_norm_fusion_handles_stride_groups_and_bias():
    torch.manual_seed(0)
    layer = ConvNormLayer(8, 8, 3, 2, groups=4, bias=True, act="silu")
    randomise_norms(layer)
    layer.eval()
    x = torch.randn(2, 8, 9, 11)
    with torch.no_grad():
        expected = layer(x)
        layer.convert_to_deploy()
        layer.convert_to_deploy()  # idempotent
        assert isinstance(layer.norm, nn.Identity) and layer.conv.bias is not None
        torch.testing.assert_close(layer(x), expected, atol=1e-5, rtol=1e-5)


def test_vgg_block_fuses_into_one_3x3_conv():
    torch.manual_seed(0)
    block = VGGBlock(6, 6, act="relu")
    randomise_norms(block)
    block.eval()
    x = torch.randn(2, 6, 7, 5)
    with torch.no_grad():
        expected = block(x)
        block.conv1.convert_to_deploy()  # a branch fused first (DEIM.deploy visits modules in any order)
        block.convert_to_deploy()
    assert set(dict(block.named_children())) == {"act", "conv"} and block.conv.kernel_size == (3, 3)
    with torch.no_grad():
        torch.testing.assert_close(block(x), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("version", ["dfine", "rt_detrv2"])
def test_deploy_keeps_outputs_and_removes_every_batch_norm(version):
    torch.manual_seed(0)
    encoder = small_encoder(version)
    randomise_norms(encoder)
    encoder.eval()
    feats = features(encoder, 64, 64)
    with torch.no_grad():
        expected = encoder(feats)
        deployed = copy.deepcopy(encoder)
        for module in list(deployed.modules()):  # what DEIM.deploy() does
            if hasattr(module, "convert_to_deploy"):
                module.convert_to_deploy()
        got = deployed(feats)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    norms = [k for k, m in deployed.named_modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(k.startswith("input_proj.") for k in norms)  # the official leaves input_proj unfused
    assert not any(isinstance(m, VGGBlock) and m.conv is None for m in deployed.modules())


def test_blocks_keep_spatial_size_and_downsample():
    x = torch.randn(1, 16, 9, 10)
    assert SCDown(16, 8, 3, 2)(x).shape == (1, 8, 5, 5)
    assert CSPLayer(16, 12, num_blocks=2, expansion=0.5)(x).shape == (1, 12, 9, 10)
    assert isinstance(CSPLayer(16, 12, expansion=1.0).conv3, nn.Identity)
    assert RepNCSPELAN4(16, 8, 16, 6, n=1)(x).shape == (1, 8, 9, 10)
    with pytest.raises(ValueError, match="c3 must be even, got 15"):
        RepNCSPELAN4(16, 8, 15, 6)


# ---------------------------------------------------------------- training

@pytest.mark.parametrize("version", ["dfine", "rt_detrv2"])
def test_every_parameter_gets_a_gradient_in_train_mode(version):
    torch.manual_seed(0)
    encoder = small_encoder(version).train()
    outs = encoder(features(encoder, 64, 64))
    sum((o * torch.randn_like(o)).sum() for o in outs).backward()
    missing = [k for k, p in encoder.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []
    assert all(m.num_batches_tracked.item() == 1 for m in encoder.modules() if isinstance(m, nn.BatchNorm2d))


# ---------------------------------------------------------------- official numbers

def _deterministic_weights(model: nn.Module, prefix: str) -> None:
    """The parity fixtures' weight rule "v2" (tests/fixtures/parity/README.md), keyed by the full official name."""
    new = {}
    for k, v in model.state_dict().items():
        full = prefix + k
        if k.endswith("num_batches_tracked") or not v.is_floating_point() or ".lab." in full:
            new[k] = v.clone()
            continue
        g = torch.Generator().manual_seed(zlib.crc32(full.encode()))
        if k.endswith("running_var"):
            new[k] = 0.5 + torch.rand(v.shape, generator=g, dtype=torch.float32)
        elif v.dim() >= 2:
            new[k] = torch.randn(v.shape, generator=g, dtype=torch.float32) / math.sqrt(v.numel() // v.shape[0])
        elif k.endswith(".weight"):
            new[k] = 1.0 + torch.randn(v.shape, generator=g, dtype=torch.float32) * 0.05
        else:
            new[k] = torch.randn(v.shape, generator=g, dtype=torch.float32) * 0.05
    model.load_state_dict(new)


def test_encoder_features_equal_the_official_dfine_n(parity_dir):
    """Backbone + encoder of DEIM-D-FINE-N on the fixture's eval input, against the official run."""
    fixture = torch.load(parity_dir / "n.pt")
    preset = get_preset("deim_dfine_n").model
    backbone, encoder = build_backbone(preset).eval(), build_encoder(preset).eval()
    _deterministic_weights(backbone, "backbone.")
    _deterministic_weights(encoder, "encoder.")
    x = torch.rand(2, 3, 640, 640, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        outs = encoder(backbone(x))
    for out, want in zip(outs, fixture["eval_encoder_feats"], strict=True):
        assert tuple(out.shape) == tuple(want["shape"])
        assert out.double().sum().item() == pytest.approx(want["sum"], rel=1e-5)
        assert out.double().abs().sum().item() == pytest.approx(want["abs_sum"], rel=1e-5)
        torch.testing.assert_close(out[0, :8, :4, :4], want["slice_b0_c0to7_h0to3_w0to3"], atol=1e-4, rtol=1e-4)
