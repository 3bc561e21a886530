"""Checkpoint loading and saving in the official layouts."""
from __future__ import annotations

import pytest
import torch

from deim.models.build import build_model
from deim.engine.checkpointing import extract_state_dict, is_class_head, load_checkpoint, save_checkpoint

SMALL = dict(eval_spatial_size=320, num_queries=50)


def small_model(seed: int, **overrides) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model("deim_dfine_n", **{**SMALL, **overrides})


def randomised_state(model: torch.nn.Module, seed: int = 1) -> dict[str, torch.Tensor]:
    """The model's state dict with every float tensor redrawn (the default init zeroes box heads)."""
    g = torch.Generator().manual_seed(seed)
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    for k, v in sd.items():
        if not v.is_floating_point() or ".lab." in k or k.endswith(("anchors", "valid_mask", "up", "reg_scale")):
            continue
        if v.dim() >= 2:
            sd[k] = torch.randn(v.shape, generator=g) / v[0].numel() ** 0.5
        elif k.endswith(("weight", "running_var")):  # norm gains and variances
            sd[k] = 1.0 + 0.05 * torch.randn(v.shape, generator=g).abs()
        else:
            sd[k] = 0.05 * torch.randn(v.shape, generator=g)
    return sd


@pytest.fixture(scope="module")
def source():
    model = small_model(0)
    model.load_state_dict(randomised_state(model))
    return model.eval()


@pytest.fixture(scope="module")
def images():
    return torch.rand(2, 3, 320, 320, generator=torch.Generator().manual_seed(0))


def outputs(model: torch.nn.Module, images: torch.Tensor) -> dict:
    with torch.no_grad():
        return model.eval()(images)


@pytest.mark.parametrize("layout", ["ema", "model", "state_dict"])
def test_round_trip_in_each_layout(layout, source, images, tmp_path):
    sd = source.state_dict()
    if layout == "ema":  # the EMA weights win over the (here deliberately wrong) raw model weights
        obj = {"ema": {"module": sd, "updates": 3}, "model": {k: torch.zeros_like(v) for k, v in sd.items()}}
    else:
        obj = {"model": sd} if layout == "model" else sd
    path = tmp_path / "ckpt.pth"
    torch.save(obj, path)
    target = small_model(1)
    report = load_checkpoint(target, path)
    assert report.layout == layout and report.complete, str(report)
    assert len(report.loaded) == len(sd)
    ref, got = outputs(source, images), outputs(target, images)
    assert torch.equal(ref["pred_logits"], got["pred_logits"]) and torch.equal(ref["pred_boxes"], got["pred_boxes"])


def test_save_checkpoint_writes_the_official_layout(source, images, tmp_path):
    path = save_checkpoint(source, tmp_path / "out" / "model.pth")
    raw = torch.load(path, weights_only=True)
    assert set(raw) == {"model", "ema"} and set(raw["ema"]) == {"module", "updates"}
    assert list(raw["ema"]["module"]) == list(source.state_dict())
    target = small_model(2)
    assert load_checkpoint(target, path).layout == "ema"
    assert torch.equal(outputs(source, images)["pred_boxes"], outputs(target, images)["pred_boxes"])


def test_ddp_prefix_is_stripped(source):
    sd = {f"module.{k}": v for k, v in source.state_dict().items()}
    state, layout = extract_state_dict({"model": sd})
    assert layout == "model" and list(state) == list(source.state_dict())


def test_missing_and_unexpected_keys_are_reported(source):
    sd = dict(source.state_dict())
    dropped = "encoder.input_proj.0.conv.weight"
    kept_value = small_model(3).state_dict()[dropped].clone()
    del sd[dropped]
    sd["decoder.extra_head.weight"] = torch.zeros(3)
    target = small_model(3)
    report = load_checkpoint(target, sd)
    assert report.missing == [dropped] and report.unexpected == ["decoder.extra_head.weight"]
    assert not report.complete and dropped in str(report) and "extra_head" in str(report)
    assert torch.equal(target.state_dict()[dropped], kept_value)
    with pytest.raises(ValueError, match="strict loading failed"):
        load_checkpoint(small_model(3), sd, strict=True)


def test_shape_mismatch_is_refused_with_the_key(source):
    sd = dict(source.state_dict())
    sd["decoder.enc_output.proj.weight"] = torch.zeros(7, 7)
    expected = r"decoder\.enc_output\.proj\.weight: checkpoint \(7, 7\) vs model \(128, 128\)"
    with pytest.raises(ValueError, match=expected):
        load_checkpoint(small_model(4), sd)


def test_class_heads_of_another_size_need_permission(source):
    expected = r"(?s)num_classes_changed_ok=True.*decoder\.enc_score_head\.weight: checkpoint \(80, 128\)"
    with pytest.raises(ValueError, match=expected):
        load_checkpoint(small_model(5, num_classes=5), source.state_dict())


def test_finetune_to_five_classes_reinitialises_only_class_heads(source):
    target = small_model(5, num_classes=5)
    fresh = {k: v.clone() for k, v in target.state_dict().items()}
    report = load_checkpoint(target, source.state_dict(), num_classes_changed_ok=True)
    heads = sorted(k for k in fresh if is_class_head(k))
    assert sorted(report.reinitialised) == heads
    assert "decoder.denoising_class_embed.weight" in heads and "decoder.enc_score_head.weight" in heads
    assert len(heads) == 2 * 3 + 2 + 1  # 3 decoder layers + encoder head (weight, bias) + denoising embed
    after, src = target.state_dict(), source.state_dict()
    for k, v in after.items():
        if k in heads:
            assert torch.equal(v, fresh[k]), k
        else:
            assert torch.equal(v, src[k]), k
    assert after["decoder.dec_score_head.0.weight"].shape == (5, 128)


def test_anchors_for_another_eval_size_are_kept(source):
    target = small_model(6, eval_spatial_size=640)
    anchors = target.state_dict()["decoder.anchors"].clone()
    report = load_checkpoint(target, source.state_dict())
    assert sorted(report.kept_derived) == ["decoder.anchors", "decoder.valid_mask"]
    assert torch.equal(target.state_dict()["decoder.anchors"], anchors)


def test_unrecognised_checkpoint_is_refused():
    with pytest.raises(ValueError, match="unrecognised checkpoint.*optimizer"):
        load_checkpoint(small_model(7), {"optimizer": {"lr": 1.0}})
