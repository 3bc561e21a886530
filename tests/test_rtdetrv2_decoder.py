"""The RT-DETRv2 decoder: numbers from the official decoder, the official state-dict layout of every
R* preset, output structure in train and eval, denoising isolation, eval_idx, any input size, batch
independence, and where gradients may and may not flow. End-to-end parity is in test_parity."""
from __future__ import annotations

import math
import zlib

import pytest
import torch

from deim.models.build import build_decoder
from deim.presets.catalog import get_preset
from deim.models.rtdetrv2_decoder import RTDETRv2Decoder

TINY = dict(num_classes=7, hidden_dim=32, num_queries=30, feat_channels=(16, 24, 40), feat_strides=(8, 16, 32),
            num_levels=3, num_points=(3, 4, 2), nhead=4, num_layers=3, dim_feedforward=48, activation="silu",
            mlp_act="silu", num_denoising=12, query_pos_method="as_reg", eval_spatial_size=(128, 128), eps=0.04)
# eps=0.04 marks the border anchors of the 16 x 16 level (centre 1/32) invalid, as at full size
TINY_BASELINE = dict(TINY, num_levels=4, num_points=4, query_pos_method="default", activation="relu", mlp_act="relu")

TARGETS = [{"labels": torch.tensor([1, 3, 6]),
            "boxes": torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.7, 0.6, 0.3, 0.4], [0.5, 0.5, 0.9, 0.8]])},
           {"labels": torch.tensor([0]), "boxes": torch.tensor([[0.5, 0.5, 0.5, 0.5]])}]

# Produced by the official RTDETRTransformerv2 (DEIM HEAD a9aa4ad, torch 2.14.1, CPU) built with the
# TINY / TINY_BASELINE arguments, weights from `deterministic_weights`, inputs `feats(128)`; the train
# pass ran after torch.manual_seed(123) with TARGETS. Per output: (shape, sum, sum of squares).
OFFICIAL = {
    "deim_eval": {"pred_boxes": ((2, 30, 4), 56.060625, 29.972532), "pred_logits": ((2, 30, 7), -72.042154, 561.472812)},
    "deim_train": {
        "aux_outputs.0.pred_boxes": ((2, 30, 4), 61.332901, 32.212078),
        "aux_outputs.0.pred_logits": ((2, 30, 7), -49.614342, 413.64753),
        "aux_outputs.1.pred_boxes": ((2, 30, 4), 54.796004, 27.233893),
        "aux_outputs.1.pred_logits": ((2, 30, 7), -74.078601, 323.115229),
        "dn_outputs.0.pred_boxes": ((2, 24, 4), 53.325333, 29.76059),
        "dn_outputs.0.pred_logits": ((2, 24, 7), 70.292334, 208.479406),
        "dn_outputs.1.pred_boxes": ((2, 24, 4), 45.420427, 24.482002),
        "dn_outputs.1.pred_logits": ((2, 24, 7), -41.210015, 571.348342),
        "dn_outputs.2.pred_boxes": ((2, 24, 4), 45.068266, 24.694416),
        "dn_outputs.2.pred_logits": ((2, 24, 7), -102.11198, 301.824639),
        "enc_aux_outputs.0.pred_boxes": ((2, 30, 4), 63.048989, 33.350717),
        "enc_aux_outputs.0.pred_logits": ((2, 30, 7), 194.342536, 672.323559),
        "pred_boxes": ((2, 30, 4), 57.285399, 29.611936),
        "pred_logits": ((2, 30, 7), -52.840086, 505.79925)},
    "baseline_eval": {"pred_boxes": ((2, 30, 4), 55.220419, 28.466669),
                      "pred_logits": ((2, 30, 7), -67.186735, 564.382786)},
}
# The official decoder's initial state after torch.manual_seed(0): per group of keys, (sum, sum of squares).
OFFICIAL_INIT = {
    "deim": {"input_proj": (188.018114, 276.883803), "decoder.layers": (311.045116, 1482.315217),
             "denoising_class_embed": (-24.019347, 262.374749), "query_pos_head": (-0.505103, 52.710871),
             "enc_": (-9.181973, 234.075838), "dec_": (-88.0685, 516.162793)},
    "baseline": {"input_proj": (265.853851, 375.295342), "decoder.layers": (330.184316, 2325.669968),
                 "denoising_class_embed": (13.290475, 206.043729), "query_pos_head": (-0.336146, 54.824905),
                 "enc_": (-2.750184, 237.993511), "dec_": (-109.004126, 516.099603)},
}
R_MANIFESTS = {"deim_rtdetrv2_r18": "deim_r18vd_120e_coco", "deim_rtdetrv2_r34": "deim_r34vd_120e_coco",
               "deim_rtdetrv2_r50m": "deim_r50vd_m_60e_coco", "deim_rtdetrv2_r50": "deim_r50vd_60e_coco",
               "deim_rtdetrv2_r101": "deim_r101vd_60e_coco"}


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny matrices: one thread is several times faster than two on a loaded machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def deterministic_weights(model: torch.nn.Module) -> None:
    """Weights from a per-key seeded rule (rule "v2" of tests/fixtures/parity/README.md)."""
    new = {}
    for key, value in model.state_dict().items():
        if (not value.is_floating_point() or key.endswith(("anchors", "valid_mask"))
                or "num_points_scale" in key):
            new[key] = value
            continue
        g = torch.Generator().manual_seed(zlib.crc32(key.encode()))
        if key.endswith("running_var"):
            new[key] = 0.5 + torch.rand(value.shape, generator=g)
        elif value.dim() >= 2:
            new[key] = torch.randn(value.shape, generator=g) / math.sqrt(value.numel() // value.shape[0])
        elif key.endswith(".weight"):
            new[key] = 1.0 + torch.randn(value.shape, generator=g) * 0.05
        else:
            new[key] = torch.randn(value.shape, generator=g) * 0.05
    model.load_state_dict(new)


def tiny(config: dict | None = None, **overrides) -> RTDETRv2Decoder:
    torch.manual_seed(0)
    model = RTDETRv2Decoder(**{**(config or TINY), **overrides})
    deterministic_weights(model)
    return model


def feats(size: int = 128, batch: int = 2) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.randn(batch, c, size // s, size // s, generator=g) for c, s in zip((16, 24, 40), (8, 16, 32))]


def flatten_outputs(out: dict) -> dict[str, torch.Tensor]:
    """``{"aux_outputs.0.pred_boxes": tensor, ...}`` for every predicted tensor."""
    flat = {k: v for k, v in out.items() if k in ("pred_logits", "pred_boxes")}
    for group in ("aux_outputs", "enc_aux_outputs", "dn_outputs"):
        for i, layer in enumerate(out.get(group, [])):
            flat.update({f"{group}.{i}.{k}": v for k, v in layer.items()})
    return flat


@pytest.mark.parametrize("case", sorted(OFFICIAL))
def test_outputs_match_the_official_decoder(case):
    model = tiny(TINY_BASELINE if case.startswith("baseline") else TINY).train(case.endswith("train"))
    torch.manual_seed(123)
    with torch.no_grad():
        out = flatten_outputs(model(feats(128), TARGETS if model.training else None))
    assert set(out) == set(OFFICIAL[case])
    for key, (shape, total, squares) in OFFICIAL[case].items():
        value = out[key].double()
        assert tuple(value.shape) == shape, key
        assert value.sum().item() == pytest.approx(total, rel=1e-5, abs=1e-4), key
        assert value.square().sum().item() == pytest.approx(squares, rel=1e-5, abs=1e-4), key


@pytest.mark.parametrize("case", sorted(OFFICIAL_INIT))
def test_initialisation_matches_the_official_decoder(case):
    torch.manual_seed(0)
    state = RTDETRv2Decoder(**(TINY_BASELINE if case == "baseline" else TINY)).state_dict()
    for prefix, (total, squares) in OFFICIAL_INIT[case].items():
        values = [v.double() for k, v in state.items() if k.startswith(prefix) and v.is_floating_point()]
        assert sum(v.sum().item() for v in values) == pytest.approx(total, rel=1e-6, abs=1e-5), prefix
        assert sum(v.square().sum().item() for v in values) == pytest.approx(squares, rel=1e-6), prefix


@pytest.mark.parametrize("name", sorted(R_MANIFESTS))
def test_state_dict_layout_matches_the_official_manifest(name, manifest_dir):
    lines = (manifest_dir / f"{R_MANIFESTS[name]}.tsv").read_text().splitlines()[1:]
    expected = {key: tuple(eval(shape)) for key, shape in (line.split("\t") for line in lines)
                if key.startswith("decoder.")}
    got = {f"decoder.{k}": tuple(v.shape) for k, v in build_decoder(get_preset(name).model).state_dict().items()}
    assert got == expected


def test_train_outputs_and_the_denoising_split():
    out = tiny().train()(feats(), TARGETS)
    meta = out["dn_meta"]
    # 12 denoising slots / max 3 boxes per image = 4 groups of (positive, negative) pairs
    assert meta["dn_num_group"] == 4 and meta["dn_num_split"] == [24, 30]
    assert len(out["aux_outputs"]) == 2 and len(out["enc_aux_outputs"]) == 1 and len(out["dn_outputs"]) == 3
    assert out["enc_meta"] == {"class_agnostic": False}
    assert all(((o["pred_boxes"] >= 0) & (o["pred_boxes"] <= 1)).all() for o in out["aux_outputs"])


def test_without_denoising_or_aux_loss_only_the_requested_outputs_exist():
    out = tiny(num_denoising=0).train()(feats())  # no targets needed without denoising
    assert "dn_outputs" not in out and "dn_meta" not in out and len(out["aux_outputs"]) == 2
    assert set(tiny(aux_loss=False).train()(feats(), TARGETS)) == {"pred_logits", "pred_boxes"}


def test_denoising_queries_leave_the_matching_queries_unchanged():
    """The attention mask keeps matching queries from seeing denoising ones."""
    model = tiny().train()
    with_dn = model(feats(), TARGETS)
    model.num_denoising = 0
    without_dn = model(feats(), TARGETS)
    for key, value in flatten_outputs(without_dn).items():
        torch.testing.assert_close(flatten_outputs(with_dn)[key], value, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("eval_idx", [0, 1, -1])
def test_eval_returns_layer_eval_idx_of_the_training_pass(eval_idx):
    model = tiny(eval_idx=eval_idx, num_denoising=0)
    with torch.no_grad():
        evaluated = model.eval()(feats())
        model.train()
        model.input_proj.eval()  # same BatchNorm statistics in both passes
        trained = model(feats())
    layers = [*trained["aux_outputs"], trained]
    assert set(evaluated) == {"pred_logits", "pred_boxes"}
    for key in ("pred_logits", "pred_boxes"):
        torch.testing.assert_close(evaluated[key], layers[eval_idx][key], rtol=1e-6, atol=1e-6)


def test_eval_at_other_sizes_computes_anchors_for_the_actual_feature_maps():
    fixed, free = tiny(), tiny(eval_spatial_size=None)
    assert "anchors" in fixed.state_dict() and "anchors" not in free.state_dict()
    fixed.eval(), free.eval()
    with torch.no_grad():
        for size in (128, 160):  # 160: a 20 x 20 level, other invalid anchors
            a, b = fixed(feats(size)), free(feats(size))
            assert a["pred_boxes"].shape == (2, 30, 4)
            assert torch.equal(a["pred_logits"], b["pred_logits"]) and torch.equal(a["pred_boxes"], b["pred_boxes"])


def test_eval_outputs_do_not_depend_on_the_batch():
    model = tiny().eval()
    with torch.no_grad():
        pair = model(feats(batch=2))
        single = model([f[1:] for f in feats(batch=2)])
    torch.testing.assert_close(single["pred_logits"][0], pair["pred_logits"][1], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(single["pred_boxes"][0], pair["pred_boxes"][1], rtol=1e-5, atol=1e-5)


def grad_of(model: RTDETRv2Decoder, loss: torch.Tensor, name: str) -> torch.Tensor | None:
    """d loss / d parameter ``name``; None when the parameter is not in the loss's graph."""
    param = dict(model.named_parameters())[name]
    return torch.autograd.grad(loss, param, retain_graph=True, allow_unused=True)[0]


def test_boxes_chain_through_layers_but_reference_points_are_detached():
    """Layer 1's box is built on layer 0's undetached box; its logits see only the detached one;
    the decoder starts from detached encoder queries."""
    model = tiny(num_denoising=0).train()
    out = model(feats())
    layer1, enc = out["aux_outputs"][1], out["enc_aux_outputs"][0]
    head0 = "dec_bbox_head.0.layers.0.weight"
    assert grad_of(model, layer1["pred_boxes"].sum(), head0).abs().sum() > 0
    assert grad_of(model, layer1["pred_logits"].sum(), head0) is None
    enc_loss = enc["pred_boxes"].sum() + enc["pred_logits"].sum()
    assert grad_of(model, enc_loss, "enc_bbox_head.layers.0.weight").abs().sum() > 0
    assert grad_of(model, enc_loss, "input_proj.0.conv.weight").abs().sum() > 0
    assert grad_of(model, enc_loss, "decoder.layers.0.linear1.weight") is None
    final_loss = out["pred_boxes"].sum() + out["pred_logits"].sum()
    for name in ("enc_output.proj.weight", "enc_score_head.weight", "enc_bbox_head.layers.0.weight"):
        assert grad_of(model, final_loss, name) is None, name


def test_gradients_reach_every_part_from_the_final_outputs():
    model = tiny().train()
    out = model(feats(), TARGETS)
    loss = out["pred_boxes"].sum() + out["pred_logits"].sum()
    for name in ("decoder.layers.0.cross_attn.sampling_offsets.weight", "decoder.layers.0.self_attn.in_proj_weight",
                 "dec_bbox_head.1.layers.0.weight", "query_pos_head.layers.0.weight", "input_proj.2.conv.weight"):
        assert grad_of(model, loss, name).abs().sum() > 0, name
    # a box looks back one layer only: the reference entering layer 1 is detached
    assert not grad_of(model, loss, "dec_bbox_head.0.layers.0.weight").any()
    # matching queries never attend to denoising queries; the denoising outputs train the class embedding
    assert not grad_of(model, loss, "denoising_class_embed.weight").any()
    dn_loss = out["dn_outputs"][-1]["pred_logits"].sum()
    assert grad_of(model, dn_loss, "denoising_class_embed.weight").abs().sum() > 0


def test_layers_start_identical_and_query_pos_head_follows_the_method():
    torch.manual_seed(0)
    model = RTDETRv2Decoder(**TINY)
    first, last = model.decoder.layers[0].state_dict(), model.decoder.layers[-1].state_dict()
    assert all(torch.equal(first[k], last[k]) for k in first)
    assert [tuple(l.weight.shape) for l in model.query_pos_head.layers] == [(32, 4), (32, 32), (32, 32)]
    baseline = RTDETRv2Decoder(**TINY_BASELINE)
    assert [tuple(l.weight.shape) for l in baseline.query_pos_head.layers] == [(64, 4), (32, 64)]
    assert len(baseline.input_proj) == 4 and baseline.input_proj[3].conv.stride == (2, 2)
    assert baseline.feat_strides == [8, 16, 32, 64] and TINY_BASELINE["feat_strides"] == (8, 16, 32)


@pytest.mark.parametrize("overrides, message", [
    (dict(query_pos_method="learned"), "query_pos_method"),
    (dict(value_shape="default"), "value_shape"),
    (dict(eval_idx=3), "eval_idx"),
    (dict(query_select_method="best"), "query_select_method"),
    (dict(feat_strides=(8, 16)), "feat_strides"),
])
def test_bad_arguments_are_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        RTDETRv2Decoder(**{**TINY, **overrides})


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="feature levels"):
        tiny().eval()(feats()[:2])
    with pytest.raises(ValueError, match="targets are required"):
        tiny().train()(feats())
