"""Build the training criterion of a preset (``deim.build_criterion``).

>>> criterion = build_criterion("deim_dfine_s", num_classes=5)

The overrides are those of :mod:`deim.presets.resolve` (one dict can be passed to this and to
:func:`deim.models.build.build_model`); the criterion reads the preset's ``criterion`` and
``matcher`` sections and the decoder's ``reg_max``.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from torch import nn

from deim.losses.criterion import DEIMCriterion
from deim.losses.matcher import HungarianMatcher
from deim.presets.catalog import Preset
from deim.presets.resolve import resolve_model
from deim.presets.sections import ModelPreset


def build_criterion(name: str | Preset | ModelPreset, **overrides: Any) -> nn.Module:
    """The training criterion of preset ``name`` (MAL for DEIM, VFL for the baselines)."""
    preset = resolve_model(name, **overrides)
    c = preset.criterion
    matcher = HungarianMatcher(**dataclasses.asdict(c.matcher))
    return DEIMCriterion(matcher, weight_dict=dict(c.weight_dict), losses=list(c.losses), alpha=c.alpha,
                         gamma=c.gamma, num_classes=preset.num_classes, reg_max=preset.decoder.reg_max,
                         mal_alpha=c.mal_alpha, use_uni_set=c.use_uni_set)
