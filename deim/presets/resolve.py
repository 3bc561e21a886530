"""The one override grammar of a preset, and resolution: a name (plus overrides) -> an entry.

>>> resolve_model("deim_dfine_s", num_queries=30, **{"decoder.num_layers": 2}).decoder.num_layers
2

Override keys (the same set for the model, criterion and post-processor builders, so one dict can
be passed to each; ``TrainConfig.model`` / ``criterion`` hold such dicts, and ``--set
model.<key>=<value>`` on the command line adds to them):

* ``num_classes``, ``eval_spatial_size`` (an int ``s`` means ``(s, s)``; ``None`` disables
  the precomputed anchors);
* ``<section>.<field>`` for any field of the preset's sections ``backbone``, ``encoder``,
  ``decoder``, ``criterion``, ``matcher``, ``postprocessor`` (e.g. ``"decoder.num_layers"``);
* a bare field name when only one section has it (``num_queries``, ``num_denoising``,
  ``reg_max``, ``use_uni_set``, ``num_top_queries`` ...).

Values are converted to the field's type (``"4e-4"`` -> ``0.0004``, a list -> a tuple); a value
that cannot be is refused (``deim.overrides``). An unknown or ambiguous key raises ``ValueError``
listing the valid keys.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from deim.overrides import coerce_like, coerce_value, field_types
from deim.presets.catalog import Preset, get_preset
from deim.presets.sections import ModelPreset

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
    preset = resolve_model(name)
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


def resolve_model(name: str | Preset | ModelPreset, **overrides: Any) -> ModelPreset:
    """The model entry of preset ``name`` (or of a given entry) with ``overrides`` applied."""
    if isinstance(name, str):
        name = get_preset(name)
    return apply_overrides(name.model if isinstance(name, Preset) else name, **overrides)


def resolve_preset(name: str | Preset, **overrides: Any) -> Preset:
    """The whole preset ``name`` (or a given entry) with ``overrides`` applied to its model; the
    schedule and optimiser groups come with it unchanged."""
    preset = get_preset(name) if isinstance(name, str) else name
    return dataclasses.replace(preset, model=apply_overrides(preset.model, **overrides))
