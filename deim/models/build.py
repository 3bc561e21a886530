"""Build a detector, its criterion and its postprocessor from a preset name plus overrides.

>>> model = build_model("deim_dfine_s", num_classes=5, eval_spatial_size=(320, 320))
>>> postprocessor = build_postprocessor("deim_dfine_s", num_classes=5)

Override keys (the same set for all three builders, so one dict can be passed to each):

* ``num_classes``, ``eval_spatial_size`` (an int ``s`` means ``(s, s)``; ``None`` disables
  the precomputed anchors);
* ``<section>.<field>`` for any field of the preset's sections ``backbone``, ``encoder``,
  ``decoder``, ``criterion``, ``matcher``, ``postprocessor`` (e.g. ``"decoder.num_layers"``);
* a bare field name when only one section has it (``num_queries``, ``num_denoising``,
  ``reg_max``, ``use_uni_set``, ``num_top_queries`` ...).

Values are converted to the field's type (``"4e-4"`` -> ``0.0004``, a list -> a tuple); a value
that cannot be is refused (``deim.overrides``).

An unknown or ambiguous key raises ``ValueError`` listing the valid keys.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from torch import nn

from deim.models.detector import DEIM
from deim.models.presets import ModelPreset, get_preset, section_kwargs
from deim.overrides import coerce_like, coerce_value, field_types

_TOP_LEVEL = ("num_classes", "eval_spatial_size")


def _sections(preset: ModelPreset) -> dict[str, Any]:
    return {"backbone": preset.backbone, "encoder": preset.encoder, "decoder": preset.decoder,
            "criterion": preset.criterion, "matcher": preset.criterion.matcher,
            "postprocessor": preset.postprocessor}


def _fields(section: Any) -> list[str]:
    """Overridable fields: not ``type``, not nested sections, not fields of another ``type``."""
    kind = getattr(section, "type", None)
    return [f.name for f in dataclasses.fields(section)
            if f.name not in ("type", "matcher") and f.metadata.get("only", kind) == kind]


def _owners(preset: ModelPreset) -> dict[str, list[str]]:
    """Field name -> the sections that have it."""
    owners: dict[str, list[str]] = {}
    for section_name, section in _sections(preset).items():
        for name in _fields(section):
            owners.setdefault(name, []).append(section_name)
    return owners


def valid_override_keys(preset: ModelPreset) -> list[str]:
    """Every key accepted by :func:`apply_overrides` for this preset."""
    owners = _owners(preset)
    qualified = [f"{section}.{name}" for name, where in owners.items() for section in where]
    bare = [name for name, where in owners.items() if len(where) == 1]
    return sorted(_TOP_LEVEL) + sorted(bare) + sorted(qualified)


def _top_level(key: str, value: Any) -> Any:
    if key == "num_classes" and (not isinstance(value, int) or value < 1):
        raise ValueError(f"num_classes must be a positive int, got {value!r}")
    if key == "eval_spatial_size" and value is not None:
        value = (value, value) if isinstance(value, int) else tuple(value)
        if len(value) != 2:
            raise ValueError(f"eval_spatial_size must be (H, W), an int or None, got {value!r}")
    return value


def _locate(preset: ModelPreset, key: str) -> tuple[str, str]:
    """``(section, field)`` that the override ``key`` (qualified or bare) changes."""
    sections, owners = _sections(preset), _owners(preset)
    section_name, _, name = key.rpartition(".")
    if not section_name:
        where = owners.get(name, [])
        if len(where) > 1:
            raise ValueError(f"override {key!r} is ambiguous; use one of "
                             f"{', '.join(f'{s}.{key}' for s in where)}")
        section_name = where[0] if where else ""
    if section_name not in sections or name not in _fields(sections[section_name]):
        raise ValueError(f"unknown override {key!r} for preset {preset.name!r}; valid keys: "
                         f"{', '.join(valid_override_keys(preset))}")
    return section_name, name


def typed_override(name: str | ModelPreset, key: str, value: Any) -> Any:
    """``value`` converted to the type of the preset field that ``key`` overrides (``"4e-4"`` -> a
    float, ``[1, 2]`` -> a tuple); ``ValueError`` for an unknown key or a value of the wrong kind."""
    preset = resolve_preset(name)
    if key in _TOP_LEVEL:
        _top_level(key, value)  # checked; kept as given (an int size stays an int)
        return value
    section_name, field_name = _locate(preset, key)
    return _typed(_sections(preset)[section_name], field_name, key, value)


def _typed(section: Any, name: str, key: str, value: Any) -> Any:
    """``value`` as the type the section's dataclass declares for ``name``."""
    try:
        hint = field_types(type(section))[name]
    except (NameError, KeyError, TypeError):  # an unresolvable annotation: the current value's type
        return coerce_like(key, value, getattr(section, name))
    return coerce_value(key, value, hint)


def apply_overrides(preset: ModelPreset, **overrides: Any) -> ModelPreset:
    """A copy of ``preset`` with ``overrides`` applied (see the module docstring for the keys)."""
    preset = dataclasses.replace(preset)  # shallow; every changed section is replaced below
    sections = _sections(preset)
    changes: dict[str, dict[str, Any]] = {}
    for key, value in overrides.items():
        if key in _TOP_LEVEL:
            setattr(preset, key, _top_level(key, value))
            continue
        section_name, name = _locate(preset, key)
        changes.setdefault(section_name, {})[name] = _typed(sections[section_name], name, key, value)

    matcher = dataclasses.replace(preset.criterion.matcher, **changes.pop("matcher", {}))
    preset.criterion = dataclasses.replace(preset.criterion, matcher=matcher, **changes.pop("criterion", {}))
    for section_name, fields in changes.items():
        setattr(preset, section_name, dataclasses.replace(getattr(preset, section_name), **fields))
    return preset


def resolve_preset(name: str | ModelPreset, **overrides: Any) -> ModelPreset:
    """The preset ``name`` (or a given :class:`ModelPreset`) with ``overrides`` applied."""
    preset = get_preset(name) if isinstance(name, str) else name
    return apply_overrides(preset, **overrides)


def build_backbone(preset: ModelPreset) -> nn.Module:
    kwargs = section_kwargs(preset.backbone)
    kwargs["return_idx"] = list(kwargs["return_idx"])
    if preset.backbone.type == "hgnetv2":
        from deim.models.hgnetv2 import HGNetv2

        return HGNetv2(**kwargs)
    if preset.backbone.type == "presnet":
        from deim.models.presnet import PResNet

        return PResNet(**kwargs)
    raise ValueError(f"unknown backbone type {preset.backbone.type!r}; expected 'hgnetv2' or 'presnet'")


def build_encoder(preset: ModelPreset) -> nn.Module:
    from deim.models.hybrid_encoder import HybridEncoder

    kwargs = {k: list(v) if isinstance(v, tuple) else v for k, v in section_kwargs(preset.encoder).items()}
    return HybridEncoder(**kwargs, eval_spatial_size=preset.eval_spatial_size)


def build_decoder(preset: ModelPreset) -> nn.Module:
    kwargs = section_kwargs(preset.decoder)
    kwargs.update(num_classes=preset.num_classes, eval_spatial_size=preset.eval_spatial_size)
    if preset.decoder.type == "dfine":
        from deim.models.dfine_decoder import DFineDecoder

        return DFineDecoder(**kwargs)
    if preset.decoder.type == "rtdetrv2":
        from deim.models.rtdetrv2_decoder import RTDETRv2Decoder

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


def build_model(name: str | ModelPreset, **overrides: Any) -> DEIM:
    """The detector of preset ``name`` (e.g. ``"deim_dfine_s"``), freshly initialised."""
    preset = resolve_preset(name, **overrides)
    backbone = build_backbone(preset)
    _check_consistency(preset, backbone)
    return DEIM(backbone=backbone, encoder=build_encoder(preset), decoder=build_decoder(preset))


def build_postprocessor(name: str | ModelPreset, **overrides: Any) -> nn.Module:
    """The postprocessor of preset ``name``: top-k detections, boxes ``xyxy`` in pixels."""
    from deim.models.postprocessor import PostProcessor

    preset = resolve_preset(name, **overrides)
    p = preset.postprocessor
    candidates = preset.decoder.num_queries * preset.num_classes if p.use_focal_loss else preset.decoder.num_queries
    if p.num_top_queries > candidates:
        raise ValueError(f"num_top_queries={p.num_top_queries} exceeds the {candidates} candidate detections "
                         f"(num_queries={preset.decoder.num_queries}, num_classes={preset.num_classes})")
    return PostProcessor(num_classes=preset.num_classes, num_top_queries=p.num_top_queries,
                         use_focal_loss=p.use_focal_loss, remap_mscoco_category=p.remap_mscoco_category)
