"""The model zoo: presets, overrides, official state-dict layouts, parameter counts and GFLOPs."""
from __future__ import annotations

import ast
import hashlib
from pathlib import Path

import pytest
import torch
import yaml

from deim.models.build import build_model
from deim.models.flops import count_gflops, count_parameters
from deim.presets.catalog import get_preset, list_presets, preset_to_yaml
from deim.presets.resolve import apply_overrides, valid_override_keys

DEIM_PRESETS = ["deim_dfine_n", "deim_dfine_s", "deim_dfine_m", "deim_dfine_l", "deim_dfine_x",
                "deim_rtdetrv2_r18", "deim_rtdetrv2_r34", "deim_rtdetrv2_r50m", "deim_rtdetrv2_r50",
                "deim_rtdetrv2_r101"]
BASELINES = [p.removeprefix("deim_") for p in DEIM_PRESETS]

MANIFEST = {"deim_dfine_n": "deim_hgnetv2_n_coco", "deim_dfine_s": "deim_hgnetv2_s_coco",
            "deim_dfine_m": "deim_hgnetv2_m_coco", "deim_dfine_l": "deim_hgnetv2_l_coco",
            "deim_dfine_x": "deim_hgnetv2_x_coco", "deim_rtdetrv2_r18": "deim_r18vd_120e_coco",
            "deim_rtdetrv2_r34": "deim_r34vd_120e_coco", "deim_rtdetrv2_r50m": "deim_r50vd_m_60e_coco",
            "deim_rtdetrv2_r50": "deim_r50vd_60e_coco", "deim_rtdetrv2_r101": "deim_r101vd_60e_coco"}

# GFLOPs at 640x640, batch 1, deploy model. PAPER: the README tables. OFFICIAL: the official code
# (HEAD a9aa4ad, deploy(), same input) counted with the same FlopCounterMode as ours; calflops, which
# the README used, gives N 7.16, S 24.70, R50 133.49, R101 251.43 (reference report §5).
PAPER_GFLOPS = {"deim_dfine_n": 7, "deim_dfine_s": 25, "deim_dfine_m": 57, "deim_dfine_l": 91,
                "deim_dfine_x": 202, "deim_rtdetrv2_r18": 60, "deim_rtdetrv2_r34": 92,
                "deim_rtdetrv2_r50m": 100, "deim_rtdetrv2_r50": 136, "deim_rtdetrv2_r101": 259}
OFFICIAL_GFLOPS = {"deim_dfine_n": 7.3138, "deim_dfine_s": 25.4971, "deim_dfine_m": 57.0347,
                   "deim_dfine_l": 91.6029, "deim_dfine_x": 203.0763, "deim_rtdetrv2_r18": 60.5028,
                   "deim_rtdetrv2_r34": 92.6089, "deim_rtdetrv2_r50m": 99.6147, "deim_rtdetrv2_r50": 133.8442,
                   "deim_rtdetrv2_r101": 251.7205}
# The paper rounds N to 7 GFLOPs; FlopCounterMode counts 7.31 on the official model itself (+4.5%).
PAPER_TOLERANCE = {"deim_dfine_n": 0.05}

# Baselines have no shipped manifest: (keys, parameters, sha1 of "key\t(shape)" lines) of the official
# models built from configs/deim_dfine/dfine_hgnetv2_*_coco.yml and configs/deim_rtdetrv2/rtdetrv2_*.yml.
BASELINE_LAYOUT = {"dfine_n": (674, 3782693, "154a84b94010c73d"), "dfine_s": (794, 10321877, "c9b24306ea976f4a"),
                   "dfine_m": (1053, 19590064, "ae56bb0abeb62baa"), "dfine_l": (1173, 31244152, "5fdfbec70b7f20e9"),
                   "dfine_x": (1441, 62621560, "9d41809fced8342f"),
                   "rtdetrv2_r18": (538, 20184464, "3e7ff1946757f27c"),
                   "rtdetrv2_r34": (665, 31441668, "b84b377c98129f8e"),
                   "rtdetrv2_r50m": (768, 36593772, "5c31b22fe5f842a3"),
                   "rtdetrv2_r50": (744, 42891372, "ab4d1f690e94e788"),
                   "rtdetrv2_r101": (999, 76556268, "9fdd747a828786c2")}
BIG = {"deim_dfine_x", "deim_rtdetrv2_r101", "deim_rtdetrv2_r50", "deim_dfine_l"}


def read_manifest(path: Path) -> tuple[dict[str, tuple[int, ...]], int]:
    """``({key: shape}, parameter count)`` from an official state-dict listing (TSV)."""
    lines = path.read_text().splitlines()
    header = lines[0]
    num_params = int(header.split(";")[2].split()[0])
    shapes = {}
    for line in lines[1:]:
        key, shape = line.split("\t")
        shapes[key] = tuple(ast.literal_eval(shape))
    return shapes, num_params


# ---------------------------------------------------------------- presets and overrides

def test_every_preset_is_listed_once():
    names = list_presets()
    assert names[:10] == DEIM_PRESETS
    assert sorted(names[10:]) == sorted(BASELINES)


def test_preset_yaml_prints_every_value():
    text = preset_to_yaml("deim_rtdetrv2_r50m")
    entry = yaml.safe_load(text)
    d = entry["model"]
    assert entry["schedule"]["epochs"] == 60 and entry["schedule"]["aug"]["policy_epochs"] == [4, 34, 58]
    assert entry["optimizer_groups"] == {"no_decay_bias": False}
    assert d["decoder"]["num_layers"] == 3 and d["decoder"]["eval_idx"] == 2
    assert d["decoder"]["query_pos_method"] == "as_reg" and "reg_max" not in d["decoder"]
    assert d["criterion"]["losses"] == ["mal", "boxes"] and d["criterion"]["gamma"] == 1.5
    assert d["criterion"]["matcher"] == {"cost_class": 2.0, "cost_bbox": 5.0, "cost_giou": 2.0,
                                         "alpha": 0.25, "gamma": 2.0}
    assert d["backbone"] == {"type": "presnet", "return_idx": [1, 2, 3], "freeze_at": -1, "freeze_norm": False,
                             "depth": 50, "variant": "d", "num_stages": 4, "act": "relu"}
    assert d["eval_spatial_size"] == [640, 640] and d["num_classes"] == 80
    n = yaml.safe_load(preset_to_yaml("deim_dfine_n"))["model"]
    assert n["encoder"]["in_channels"] == [512, 1024] and n["decoder"]["num_points"] == [6, 6]
    assert n["decoder"]["reg_scale"] == 4 and "query_pos_method" not in n["decoder"]


@pytest.mark.parametrize("size", ["n", "s", "m", "l", "x"])
def test_dfine_baselines_differ_from_deim_only_where_official(size):
    deim, base = get_preset(f"deim_dfine_{size}").model, get_preset(f"dfine_{size}").model
    assert (deim.decoder.activation, deim.decoder.mlp_act) == ("silu", "silu")
    assert (base.decoder.activation, base.decoder.mlp_act) == ("relu", "relu")
    assert deim.criterion.losses == ("mal", "boxes", "local") and deim.criterion.gamma == 1.5
    assert base.criterion.losses == ("vfl", "boxes", "local") and base.criterion.gamma == 2.0
    assert deim.criterion.use_uni_set and base.criterion.use_uni_set
    frozen = size in ("l", "x")
    assert (base.backbone.freeze_at, base.backbone.freeze_norm) == ((0, True) if frozen else (-1, False))
    assert (deim.backbone.freeze_at, deim.backbone.freeze_norm) == (-1, False)
    assert deim.encoder == base.encoder
    for d in (deim, base):
        d.decoder.activation = d.decoder.mlp_act = "x"
    assert deim.decoder == base.decoder


@pytest.mark.parametrize("size", ["r18", "r34", "r50m", "r50", "r101"])
def test_rtdetrv2_baselines_differ_from_deim_only_where_official(size):
    deim, base = get_preset(f"deim_rtdetrv2_{size}").model, get_preset(f"rtdetrv2_{size}").model
    assert deim.decoder.query_pos_method == "as_reg" and base.decoder.query_pos_method == "default"
    assert not deim.criterion.use_uni_set and not base.criterion.use_uni_set
    assert base.criterion.weight_dict == {"loss_vfl": 1.0, "loss_bbox": 5.0, "loss_giou": 2.0}
    assert deim.criterion.weight_dict == {"loss_mal": 1.0, "loss_bbox": 5.0, "loss_giou": 2.0}
    frozen = size in ("r50m", "r50", "r101")
    assert (base.backbone.freeze_at, base.backbone.freeze_norm) == ((0, True) if frozen else (-1, False))
    assert base.decoder.num_layers == (6 if size == "r50m" else deim.decoder.num_layers)


def test_overrides_reach_the_right_section():
    p = apply_overrides(get_preset("deim_dfine_s").model, num_classes=5, num_queries=100, num_denoising=0,
                        eval_spatial_size=320, **{"encoder.hidden_dim": 128, "matcher.cost_class": 1.0})
    assert p.num_classes == 5 and p.eval_spatial_size == (320, 320)
    assert p.decoder.num_queries == 100 and p.decoder.num_denoising == 0
    assert p.encoder.hidden_dim == 128 and p.decoder.hidden_dim == 256
    assert p.criterion.matcher.cost_class == 1.0
    assert get_preset("deim_dfine_s").model.decoder.num_queries == 300  # presets are not shared state


def test_unknown_or_ambiguous_override_is_refused():
    with pytest.raises(ValueError, match="unknown override 'num_querys'.*num_queries"):
        build_model("deim_dfine_n", num_querys=10)
    with pytest.raises(ValueError, match="ambiguous.*encoder.hidden_dim"):
        apply_overrides(get_preset("deim_dfine_n").model, hidden_dim=64)
    with pytest.raises(ValueError, match="unknown override 'query_pos_method'"):
        apply_overrides(get_preset("deim_dfine_n").model, query_pos_method="as_reg")  # RT-DETRv2 only
    with pytest.raises(ValueError, match="unknown model preset 'deim_dfine_q'"):
        build_model("deim_dfine_q")
    assert "decoder.reg_max" not in valid_override_keys(get_preset("deim_rtdetrv2_r18").model)


# ---------------------------------------------------------------- official layouts

@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in BIG else n for n in DEIM_PRESETS])
def test_layout_params_and_gflops_match_official(name, manifest_dir):
    """State-dict keys (in order) and shapes, parameter count, and GFLOPs: one build per preset."""
    shapes, num_params = read_manifest(manifest_dir / f"{MANIFEST[name]}.tsv")
    torch.manual_seed(0)
    model = build_model(name)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert list(ours) == list(shapes), "keys or their order differ"
    assert ours == shapes
    assert count_parameters(model) == num_params

    gflops = count_gflops(model, 640)
    paper, official = PAPER_GFLOPS[name], OFFICIAL_GFLOPS[name]
    print(f"{name}: {gflops:.2f} GFLOPs (official {official:.2f}, paper {paper})")
    assert abs(gflops - official) / official <= 0.005, f"{gflops:.3f} vs official {official:.3f}"
    assert abs(gflops - paper) / paper <= PAPER_TOLERANCE.get(name, 0.03), f"{gflops:.2f} vs paper {paper}"


def layout_digest(state_dict: dict) -> str:
    text = "\n".join(f"{k}\t{tuple(v.shape)}" for k, v in state_dict.items())
    return hashlib.sha1(text.encode()).hexdigest()[:16]


@pytest.mark.parametrize("name", BASELINES)
def test_baseline_state_dict_matches_official(name):
    """E.g. D-FINE-L has FrozenBatchNorm2d in its backbone (no num_batches_tracked): 1173 keys, not 1253."""
    model = build_model(name)
    sd = model.state_dict()
    assert (len(sd), count_parameters(model), layout_digest(sd)) == BASELINE_LAYOUT[name]


def test_rtdetrv2_query_pos_head_depends_on_method():
    deim = build_model("deim_rtdetrv2_r18").state_dict()
    base = build_model("rtdetrv2_r18").state_dict()
    assert deim["decoder.query_pos_head.layers.0.weight"].shape == (256, 4)
    assert "decoder.query_pos_head.layers.2.weight" in deim
    assert base["decoder.query_pos_head.layers.0.weight"].shape == (512, 4)
    assert "decoder.query_pos_head.layers.2.weight" not in base


# ---------------------------------------------------------------- any input size in eval

@pytest.mark.parametrize("name", ["deim_dfine_n", "deim_rtdetrv2_r18"])
def test_eval_accepts_other_sizes(name):
    torch.manual_seed(0)
    model = build_model(name).eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, 480, 640))
    assert out["pred_logits"].shape == (1, 300, 80) and out["pred_boxes"].shape == (1, 300, 4)
    assert torch.isfinite(out["pred_boxes"]).all()
    with pytest.raises(ValueError, match="multiples of 32"):
        model(torch.rand(1, 3, 500, 640))
