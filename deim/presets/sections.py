"""The typed sections of a model preset: backbone, encoder, decoder, criterion (with its matcher)
and post-processor, gathered in :class:`ModelPreset`.

``num_classes`` and ``eval_spatial_size`` (``(H, W)``) are shared by several parts and live on
the preset itself. Fields marked ``only`` belong to one ``type`` of their section (an HGNetv2
``name``, a PResNet ``depth``, D-FINE's ``reg_max``) and are left out of the others' dicts.
The values of every named preset are in :mod:`deim.presets.catalog`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

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
        return plain(self)

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


def plain(obj: Any) -> Any:
    """``obj`` as YAML-ready data: dataclasses to dicts (fields of another ``type`` left out),
    tuples to lists."""
    if dataclasses.is_dataclass(obj):
        kind = getattr(obj, "type", None)
        return {f.name: plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                if "only" not in f.metadata or f.metadata["only"] == kind}
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    return obj
