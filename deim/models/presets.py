"""Typed model presets: every value of the official DEIM, D-FINE and RT-DETRv2 configs.

One :class:`ModelPreset` per model of the paper's zoo. The values were resolved by hand from
the official YAML include chains (``configs/deim_dfine/*.yml``, ``configs/deim_rtdetrv2/*.yml``
over ``configs/base/*.yml``; later files win, dicts merge, lists are replaced), as a fresh
process sees them (the official loader leaks keys between configs loaded in one process).

DEIM presets differ from their baselines in exactly these ways:

* decoder ``activation`` / ``mlp_act``: ``silu`` (baselines ``relu``);
* backbone ``freeze_at=-1, freeze_norm=False`` (baselines D-FINE-L/X and RT-DETRv2-R50/R50-M/R101
  freeze the stem and use frozen BatchNorm: ``freeze_at=0, freeze_norm=True``);
* RT-DETRv2 decoder ``query_pos_method="as_reg"`` (baselines ``"default"``);
* classification loss MAL with ``gamma=1.5`` (baselines VFL, ``alpha=0.75, gamma=2.0``);
* DEIM-RT-DETRv2-R50-M has 3 decoder layers (baseline 6, both evaluate layer index 2).

``num_classes`` and ``eval_spatial_size`` (``(H, W)``) are shared by several parts and live on
the preset itself. Presets are built fresh on every :func:`get_preset` call: no shared state.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable

import yaml


def _only(kind: str) -> Any:
    """Field metadata: the field is used only by the backbone/decoder of this ``type``."""
    return {"only": kind}


@dataclass
class BackboneConfig:
    """HGNetv2 (``type="hgnetv2"``, ``name`` B0..B5) or PResNet-vd (``type="presnet"``, ``depth``)."""

    type: str
    return_idx: tuple[int, ...] = (1, 2, 3)
    freeze_at: int = -1
    freeze_norm: bool = False
    name: str = field(default="B0", metadata=_only("hgnetv2"))
    use_lab: bool = field(default=False, metadata=_only("hgnetv2"))
    freeze_stem_only: bool = field(default=True, metadata=_only("hgnetv2"))
    depth: int = field(default=50, metadata=_only("presnet"))
    variant: str = field(default="d", metadata=_only("presnet"))
    num_stages: int = field(default=4, metadata=_only("presnet"))
    act: str = field(default="relu", metadata=_only("presnet"))


@dataclass
class EncoderConfig:
    """HybridEncoder: AIFI on ``use_encoder_idx`` levels, then the CCFF FPN/PAN.
    ``version``: ``dfine`` (RepNCSPELAN4 blocks, SCDown) or ``rt_detrv2`` (CSPRep blocks)."""

    in_channels: tuple[int, ...]
    feat_strides: tuple[int, ...] = (8, 16, 32)
    hidden_dim: int = 256
    nhead: int = 8
    dim_feedforward: int = 1024
    dropout: float = 0.0
    enc_act: str = "gelu"
    use_encoder_idx: tuple[int, ...] = (2,)
    num_encoder_layers: int = 1
    pe_temperature: int = 10000
    expansion: float = 1.0
    depth_mult: float = 1.0
    act: str = "silu"
    version: str = "dfine"


@dataclass
class DecoderConfig:
    """D-FINE (``type="dfine"``) or RT-DETRv2 (``type="rtdetrv2"``) decoder."""

    type: str
    hidden_dim: int = 256
    num_queries: int = 300
    feat_channels: tuple[int, ...] = (256, 256, 256)
    feat_strides: tuple[int, ...] = (8, 16, 32)
    num_levels: int = 3
    num_points: tuple[int, ...] = (3, 6, 3)
    nhead: int = 8
    num_layers: int = 6
    dim_feedforward: int = 1024
    dropout: float = 0.0
    activation: str = "relu"
    mlp_act: str = "relu"
    num_denoising: int = 100
    label_noise_ratio: float = 0.5
    box_noise_scale: float = 1.0
    learn_query_content: bool = False
    eval_idx: int = -1
    eps: float = 1e-2
    aux_loss: bool = True
    cross_attn_method: str = "default"
    query_select_method: str = "default"
    reg_max: int = field(default=32, metadata=_only("dfine"))
    reg_scale: int | float = field(default=4, metadata=_only("dfine"))
    layer_scale: float = field(default=1, metadata=_only("dfine"))
    value_shape: str = field(default="reshape", metadata=_only("rtdetrv2"))
    query_pos_method: str = field(default="default", metadata=_only("rtdetrv2"))


@dataclass
class MatcherConfig:
    """Hungarian matcher cost weights and its focal class-cost parameters."""

    cost_class: float = 2.0
    cost_bbox: float = 5.0
    cost_giou: float = 2.0
    alpha: float = 0.25
    gamma: float = 2.0


@dataclass
class CriterionConfig:
    """DEIMCriterion settings (``reg_max`` comes from the decoder)."""

    losses: tuple[str, ...]
    weight_dict: dict[str, float]
    alpha: float = 0.75
    gamma: float = 2.0
    mal_alpha: float | None = None
    use_uni_set: bool = True
    matcher: MatcherConfig = field(default_factory=MatcherConfig)


@dataclass
class PostProcessorConfig:
    """Top-k selection over ``[Q * C]`` sigmoid scores; ``remap_mscoco_category`` maps the 80
    contiguous labels to COCO category ids (set it for COCO evaluation)."""

    num_top_queries: int = 300
    use_focal_loss: bool = True
    remap_mscoco_category: bool = False


@dataclass
class ModelPreset:
    """Everything needed to build a model, its criterion and its postprocessor."""

    name: str
    official_config: str
    backbone: BackboneConfig
    encoder: EncoderConfig
    decoder: DecoderConfig
    criterion: CriterionConfig
    postprocessor: PostProcessorConfig = field(default_factory=PostProcessorConfig)
    num_classes: int = 80
    eval_spatial_size: tuple[int, int] | None = (640, 640)

    @property
    def official_name(self) -> str:
        """Stem of the official config file, e.g. ``deim_hgnetv2_s_coco``."""
        return self.official_config.rsplit("/", 1)[-1].removesuffix(".yml")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of every value (type-specific fields of other types left out)."""
        return _plain(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def section_kwargs(config: Any) -> dict[str, Any]:
    """Constructor keyword arguments of a section: its fields, minus ``type`` and the fields
    reserved for another ``type``."""
    kind = getattr(config, "type", None)
    out = {}
    for f in dataclasses.fields(config):
        if f.name == "type" or ("only" in f.metadata and f.metadata["only"] != kind):
            continue
        out[f.name] = getattr(config, f.name)
    return out


def _plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        kind = getattr(obj, "type", None)
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                if "only" not in f.metadata or f.metadata["only"] == kind}
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


# ---------------------------------------------------------------- criteria

def _deim_criterion(local: bool, use_uni_set: bool) -> CriterionConfig:
    weights = {"loss_mal": 1.0, "loss_bbox": 5.0, "loss_giou": 2.0}
    if local:
        weights.update(loss_fgl=0.15, loss_ddf=1.5)
    losses = ("mal", "boxes", "local") if local else ("mal", "boxes")
    return CriterionConfig(losses=losses, weight_dict=weights, alpha=0.75, gamma=1.5, use_uni_set=use_uni_set)


def _baseline_criterion(local: bool, use_uni_set: bool) -> CriterionConfig:
    weights = {"loss_vfl": 1.0, "loss_bbox": 5.0, "loss_giou": 2.0}
    if local:
        weights.update(loss_fgl=0.15, loss_ddf=1.5)
    losses = ("vfl", "boxes", "local") if local else ("vfl", "boxes")
    return CriterionConfig(losses=losses, weight_dict=weights, alpha=0.75, gamma=2.0, use_uni_set=use_uni_set)


def baseline_criterion(preset: ModelPreset) -> CriterionConfig:
    """The VFL criterion of the baselines (D-FINE, RT-DETRv2) on ``preset``'s model: with the
    fine-grained localisation terms when its decoder is D-FINE's, its own ``use_uni_set``."""
    return _baseline_criterion(local=preset.decoder.type == "dfine", use_uni_set=preset.criterion.use_uni_set)


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
        criterion=(_deim_criterion if deim else _baseline_criterion)(local=True, use_uni_set=True),
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
        criterion=(_deim_criterion if deim else _baseline_criterion)(local=False, use_uni_set=False),
    )


def _factories() -> dict[str, Callable[[], ModelPreset]]:
    out: dict[str, Callable[[], ModelPreset]] = {}
    for deim in (True, False):
        for size in _DFINE_SIZES:
            out[f"{'deim_' if deim else ''}dfine_{size}"] = lambda s=size, d=deim: _dfine(s, d)
        for size in _RT_SIZES:
            out[f"{'deim_' if deim else ''}rtdetrv2_{size}"] = lambda s=size, d=deim: _rtdetrv2(s, d)
    return out


_PRESETS = _factories()


def list_presets() -> list[str]:
    """Names of every preset: the 10 DEIM models, then the D-FINE and RT-DETRv2 baselines."""
    return sorted(_PRESETS, key=lambda n: (not n.startswith("deim_"), "rtdetrv2" in n, list(_PRESETS).index(n)))


def get_preset(name: str) -> ModelPreset:
    """A fresh copy of preset ``name`` (safe to modify)."""
    try:
        factory = _PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown model preset {name!r}; choose one of {', '.join(list_presets())}") from None
    return factory()


def preset_to_yaml(name: str) -> str:
    """Every value of preset ``name`` as YAML, in one place."""
    return get_preset(name).to_yaml()
