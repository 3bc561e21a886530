"""Build a detector, its criterion's model entry and its postprocessor from a preset (a name, an
entry, or a resolved :class:`~deim.presets.sections.ModelPreset`) plus overrides.

>>> model = build_model("deim_dfine_s", num_classes=5, eval_spatial_size=(320, 320))
>>> postprocessor = build_postprocessor("deim_dfine_s", num_classes=5)

The override keys are those of :mod:`deim.presets.resolve` (the one grammar).
"""
from __future__ import annotations

from typing import Any

from torch import nn

from deim.models.detector import DEIM
from deim.models.dfine_decoder import DFineDecoder
from deim.models.hgnetv2 import HGNetv2
from deim.models.hybrid_encoder import HybridEncoder
from deim.models.postprocessor import PostProcessor
from deim.models.presnet import PResNet
from deim.models.rtdetrv2_decoder import RTDETRv2Decoder
from deim.presets.catalog import Preset
from deim.presets.resolve import resolve_model
from deim.presets.sections import ModelPreset, section_kwargs


def build_backbone(preset: ModelPreset) -> nn.Module:
    kwargs = section_kwargs(preset.backbone)
    kwargs["return_idx"] = list(kwargs["return_idx"])
    if preset.backbone.type == "hgnetv2":
        return HGNetv2(**kwargs)
    if preset.backbone.type == "presnet":
        return PResNet(**kwargs)
    raise ValueError(f"unknown backbone type {preset.backbone.type!r}; expected 'hgnetv2' or 'presnet'")


def build_encoder(preset: ModelPreset) -> nn.Module:
    kwargs = {k: list(v) if isinstance(v, tuple) else v for k, v in section_kwargs(preset.encoder).items()}
    return HybridEncoder(**kwargs, eval_spatial_size=preset.eval_spatial_size)


def build_decoder(preset: ModelPreset) -> nn.Module:
    kwargs = section_kwargs(preset.decoder)
    kwargs.update(num_classes=preset.num_classes, eval_spatial_size=preset.eval_spatial_size)
    if preset.decoder.type == "dfine":
        return DFineDecoder(**kwargs)
    if preset.decoder.type == "rtdetrv2":
        return RTDETRv2Decoder(**kwargs)
    raise ValueError(f"unknown decoder type {preset.decoder.type!r}; expected 'dfine' or 'rtdetrv2'")


def _check_consistency(preset: ModelPreset, backbone: nn.Module) -> None:
    encoder, decoder = preset.encoder, preset.decoder
    if list(backbone.out_channels) != list(encoder.in_channels):
        raise ValueError(f"{preset.name}: backbone outputs channels {list(backbone.out_channels)} "
                         f"but encoder.in_channels is {list(encoder.in_channels)}")
    if list(backbone.out_strides) != list(encoder.feat_strides):
        raise ValueError(f"{preset.name}: backbone outputs strides {list(backbone.out_strides)} "
                         f"but encoder.feat_strides is {list(encoder.feat_strides)}")
    if list(decoder.feat_strides) != list(encoder.feat_strides):
        raise ValueError(f"{preset.name}: decoder.feat_strides {list(decoder.feat_strides)} differ from "
                         f"encoder.feat_strides {list(encoder.feat_strides)}")


def build_model(name: str | Preset | ModelPreset, **overrides: Any) -> DEIM:
    """The detector of preset ``name`` (e.g. ``"deim_dfine_s"``), freshly initialised."""
    preset = resolve_model(name, **overrides)
    backbone = build_backbone(preset)
    _check_consistency(preset, backbone)
    return DEIM(backbone=backbone, encoder=build_encoder(preset), decoder=build_decoder(preset))


def build_postprocessor(name: str | Preset | ModelPreset, **overrides: Any) -> nn.Module:
    """The postprocessor of preset ``name``: top-k detections, boxes ``xyxy`` in pixels."""
    preset = resolve_model(name, **overrides)
    p = preset.postprocessor
    candidates = preset.decoder.num_queries * preset.num_classes if p.use_focal_loss else preset.decoder.num_queries
    if p.num_top_queries > candidates:
        raise ValueError(f"num_top_queries={p.num_top_queries} exceeds the {candidates} candidate detections "
                         f"(num_queries={preset.decoder.num_queries}, num_classes={preset.num_classes})")
    return PostProcessor(num_classes=preset.num_classes, num_top_queries=p.num_top_queries,
                         use_focal_loss=p.use_focal_loss, remap_mscoco_category=p.remap_mscoco_category)
