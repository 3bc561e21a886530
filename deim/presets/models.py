"""The model half of every named preset: every value of the official DEIM, D-FINE and RT-DETRv2 configs.

One :class:`~deim.presets.sections.ModelPreset` per model of the paper's zoo. The values were
resolved by hand from the official YAML include chains (``configs/deim_dfine/*.yml``,
``configs/deim_rtdetrv2/*.yml`` over ``configs/base/*.yml``; later files win, dicts merge, lists
are replaced), as a fresh process sees them (the official loader leaks keys between configs
loaded in one process).

DEIM presets differ from their baselines in exactly these ways:

* decoder ``activation`` / ``mlp_act``: ``silu`` (baselines ``relu``);
* backbone ``freeze_at=-1, freeze_norm=False`` (baselines D-FINE-L/X and RT-DETRv2-R50/R50-M/R101
  freeze the stem and use frozen BatchNorm: ``freeze_at=0, freeze_norm=True``);
* RT-DETRv2 decoder ``query_pos_method="as_reg"`` (baselines ``"default"``);
* classification loss MAL with ``gamma=1.5`` (baselines VFL, ``alpha=0.75, gamma=2.0``);
* DEIM-RT-DETRv2-R50-M has 3 decoder layers (baseline 6, both evaluate layer index 2).

Entries are built fresh on every call of a factory in :data:`MODEL_FACTORIES`: no shared state.
"""
from __future__ import annotations

from typing import Callable

from deim.presets.sections import (BackboneConfig, CriterionConfig, DecoderConfig, EncoderConfig,
                                   ModelPreset)

# ---------------------------------------------------------------- criteria

def _criterion(deim: bool, local: bool, use_uni_set: bool) -> CriterionConfig:
    """DEIM's MAL (gamma 1.5) or the baselines' VFL (gamma 2), with the box terms, and with D-FINE's
    fine-grained localisation terms when ``local``."""
    cls = "mal" if deim else "vfl"
    weights = {f"loss_{cls}": 1.0, "loss_bbox": 5.0, "loss_giou": 2.0}
    if local:
        weights.update(loss_fgl=0.15, loss_ddf=1.5)
    losses = (cls, "boxes", "local") if local else (cls, "boxes")
    return CriterionConfig(losses=losses, weight_dict=weights, alpha=0.75, gamma=1.5 if deim else 2.0,
                           use_uni_set=use_uni_set)


def baseline_criterion(preset: ModelPreset) -> CriterionConfig:
    """The VFL criterion of the baselines (D-FINE, RT-DETRv2) on ``preset``'s model: with the
    fine-grained localisation terms when its decoder is D-FINE's, its own ``use_uni_set``."""
    return _criterion(deim=False, local=preset.decoder.type == "dfine", use_uni_set=preset.criterion.use_uni_set)


# ---------------------------------------------------------------- D-FINE family (HGNetv2)

# size: (backbone kwargs, encoder kwargs, decoder kwargs), from configs/deim_dfine/dfine_hgnetv2_*_coco.yml
_DFINE_SIZES: dict[str, tuple[dict, dict, dict]] = {
    "n": (dict(name="B0", use_lab=True, return_idx=(2, 3)),
          dict(in_channels=(512, 1024), feat_strides=(16, 32), hidden_dim=128, use_encoder_idx=(1,),
               dim_feedforward=512, expansion=0.34, depth_mult=0.5),
          dict(hidden_dim=128, feat_channels=(128, 128), feat_strides=(16, 32), num_levels=2,
               num_points=(6, 6), num_layers=3, dim_feedforward=512)),
    "s": (dict(name="B0", use_lab=True),
          dict(in_channels=(256, 512, 1024), expansion=0.5, depth_mult=0.34),
          dict(num_layers=3)),
    "m": (dict(name="B2", use_lab=True),
          dict(in_channels=(384, 768, 1536), expansion=1.0, depth_mult=0.67),
          dict(num_layers=4)),
    "l": (dict(name="B4"),
          dict(in_channels=(512, 1024, 2048)),
          dict(num_layers=6)),
    "x": (dict(name="B5"),
          dict(in_channels=(512, 1024, 2048), hidden_dim=384, dim_feedforward=2048),
          dict(feat_channels=(384, 384, 384), num_layers=6, reg_scale=8)),
}


def _dfine(size: str, deim: bool) -> ModelPreset:
    backbone_kw, encoder_kw, decoder_kw = _DFINE_SIZES[size]
    frozen = not deim and size in ("l", "x")  # D-FINE-L/X: frozen stem and FrozenBatchNorm
    act = "silu" if deim else "relu"
    name = f"deim_dfine_{size}" if deim else f"dfine_{size}"
    config = f"configs/deim_dfine/{'deim' if deim else 'dfine'}_hgnetv2_{size}_coco.yml"
    return ModelPreset(
        name=name,
        official_config=config,
        backbone=BackboneConfig(type="hgnetv2", freeze_at=0 if frozen else -1, freeze_norm=frozen, **backbone_kw),
        encoder=EncoderConfig(version="dfine", **encoder_kw),
        decoder=DecoderConfig(type="dfine", activation=act, mlp_act=act, **decoder_kw),
        criterion=_criterion(deim, local=True, use_uni_set=True),
    )


# ---------------------------------------------------------------- RT-DETRv2 family (PResNet-vd)

# size: (depth, encoder kwargs, decoder kwargs, baseline decoder layers), from rtdetrv2_r*vd_*_coco.yml
_RT_SIZES: dict[str, tuple[int, dict, dict, int]] = {
    "r18": (18, dict(in_channels=(128, 256, 512), expansion=0.5), dict(num_layers=3), 3),
    "r34": (34, dict(in_channels=(128, 256, 512), expansion=0.5), dict(num_layers=4), 4),
    "r50m": (50, dict(in_channels=(512, 1024, 2048), expansion=0.5), dict(num_layers=3, eval_idx=2), 6),
    "r50": (50, dict(in_channels=(512, 1024, 2048), expansion=1.0), dict(num_layers=6), 6),
    "r101": (101, dict(in_channels=(512, 1024, 2048), expansion=1.0, hidden_dim=384, dim_feedforward=2048),
             dict(num_layers=6, feat_channels=(384, 384, 384)), 6),
}
_RT_CONFIGS = {"r18": ("r18vd_120e", "r18vd_120e"), "r34": ("r34vd_120e", "r34vd_120e"),
               "r50m": ("r50vd_m_60e", "r50vd_m_7x"), "r50": ("r50vd_60e", "r50vd_6x"),
               "r101": ("r101vd_60e", "r101vd_6x")}


def _rtdetrv2(size: str, deim: bool) -> ModelPreset:
    depth, encoder_kw, decoder_kw, baseline_layers = _RT_SIZES[size]
    frozen = not deim and depth >= 50  # RT-DETRv2-R50/R50-M/R101: frozen stem and FrozenBatchNorm
    decoder_kw = dict(decoder_kw) if deim else {**decoder_kw, "num_layers": baseline_layers}
    act = "silu" if deim else "relu"
    deim_cfg, base_cfg = _RT_CONFIGS[size]
    return ModelPreset(
        name=f"deim_rtdetrv2_{size}" if deim else f"rtdetrv2_{size}",
        official_config=f"configs/deim_rtdetrv2/{'deim_' + deim_cfg if deim else 'rtdetrv2_' + base_cfg}_coco.yml",
        backbone=BackboneConfig(type="presnet", depth=depth, freeze_at=0 if frozen else -1, freeze_norm=frozen),
        encoder=EncoderConfig(version="rt_detrv2", **encoder_kw),
        decoder=DecoderConfig(type="rtdetrv2", num_points=(4, 4, 4), activation=act, mlp_act=act,
                              query_pos_method="as_reg" if deim else "default", **decoder_kw),
        criterion=_criterion(deim, local=False, use_uni_set=False),
    )


def _factories() -> dict[str, Callable[[], ModelPreset]]:
    out: dict[str, Callable[[], ModelPreset]] = {}
    for deim in (True, False):
        for size in _DFINE_SIZES:
            out[f"{'deim_' if deim else ''}dfine_{size}"] = lambda s=size, d=deim: _dfine(s, d)
        for size in _RT_SIZES:
            out[f"{'deim_' if deim else ''}rtdetrv2_{size}"] = lambda s=size, d=deim: _rtdetrv2(s, d)
    return out


# name -> a function returning a fresh ModelPreset; the 10 DEIM models first, then the baselines
MODEL_FACTORIES: dict[str, Callable[[], ModelPreset]] = _factories()
