"""The RT-DETRv2 decoder: output structure in train and eval, denoising split, eval_idx, any size,
gradient flow through the box-refinement chain. Layout and numeric parity are in test_model_zoo /
test_parity (official manifests and fixtures)."""
from __future__ import annotations

import pytest
import torch

from deim.models.rtdetrv2_decoder import RTDETRv2Decoder


def tiny(**overrides) -> RTDETRv2Decoder:
    kwargs = dict(num_classes=5, hidden_dim=32, num_queries=20, feat_channels=(32, 32), feat_strides=(8, 16),
                  num_levels=3, num_points=(2, 2, 2), nhead=4, num_layers=3, dim_feedforward=64,
                  eval_spatial_size=(64, 64), num_denoising=10, query_pos_method="as_reg", activation="silu",
                  mlp_act="silu")
    torch.manual_seed(0)
    return RTDETRv2Decoder(**{**kwargs, **overrides})


def feats(size: int = 64, batch: int = 2) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return [torch.randn(batch, 32, size // 8, size // 8, generator=g), torch.randn(batch, 32, size // 16, size // 16,
                                                                                generator=g)]


TARGETS = [{"labels": torch.tensor([1, 3]), "boxes": torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.7, 0.6, 0.3, 0.4]])},
           {"labels": torch.tensor([0]), "boxes": torch.tensor([[0.5, 0.5, 0.5, 0.5]])}]


def test_train_outputs_every_layer_the_encoder_and_denoising():
    out = tiny().train()(feats(), TARGETS)
    assert out["pred_logits"].shape == (2, 20, 5) and out["pred_boxes"].shape == (2, 20, 4)
    assert len(out["aux_outputs"]) == 2 and len(out["enc_aux_outputs"]) == 1
    assert len(out["dn_outputs"]) == 3
    n_dn = out["dn_meta"]["dn_num_split"][0]
    assert out["dn_outputs"][0]["pred_boxes"].shape == (2, n_dn, 4) and n_dn > 0
    assert all(((o["pred_boxes"] >= 0) & (o["pred_boxes"] <= 1)).all() for o in out["aux_outputs"])


def test_eval_returns_layer_eval_idx_at_any_size():
    model = tiny(eval_idx=1).eval()
    with torch.no_grad():
        a = model(feats(64))
        b = model(feats(96))  # not the eval_spatial_size: anchors computed for 96 x 96
        full = tiny(eval_idx=-1).eval()(feats(64))
    assert set(a) == {"pred_logits", "pred_boxes"} and b["pred_boxes"].shape == (2, 20, 4)
    assert not torch.equal(a["pred_logits"], full["pred_logits"])  # layer 1 differs from layer 2


def test_gradients_reach_every_head_and_the_first_layer():
    model = tiny(num_denoising=0).train()
    with torch.no_grad():  # the box heads' last layers start at zero, which blocks gradients behind them
        for head in [model.enc_bbox_head, *model.dec_bbox_head]:
            head.layers[-1].weight.normal_(0, 0.02)
    out = model(feats(), TARGETS)
    loss = out["pred_boxes"].sum() + out["pred_logits"].sum() + sum(o["pred_boxes"].sum() for o in out["aux_outputs"])
    loss = loss + out["enc_aux_outputs"][0]["pred_logits"].sum()
    loss.backward()
    for name in ("decoder.layers.0.cross_attn.sampling_offsets.weight", "dec_bbox_head.0.layers.0.weight",
                 "enc_score_head.weight", "query_pos_head.layers.0.weight", "input_proj.0.conv.weight"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_extra_level_downsamples_the_last_feature_map():
    model = tiny()
    assert len(model.input_proj) == 3 and model.input_proj[2].conv.stride == (2, 2)
    assert model.feat_strides == [8, 16, 32]


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="query_pos_method"):
        tiny(query_pos_method="learned")
    with pytest.raises(ValueError, match="feature levels"):
        tiny().eval()(feats()[:1])
    with pytest.raises(ValueError, match="targets are required"):
        tiny().train()(feats())
