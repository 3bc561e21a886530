"""The named presets: one typed entry per model of the paper's zoo, looked up by name in one place.

A :class:`Preset` holds all that a name means: the model with its criterion, matcher and
post-processor (:class:`~deim.presets.sections.ModelPreset`, values in :mod:`deim.presets.models`),
the paper's training schedule (:class:`~deim.presets.training.TrainSchedule`, values in
:mod:`deim.presets.schedules`) and how its official config groups the optimiser's parameters.
:func:`get_preset` is the only function that turns a name into an entry; overrides are applied by
:mod:`deim.presets.resolve`.

>>> p = get_preset("deim_dfine_n")
>>> p.model.decoder.num_queries, p.schedule.epochs, p.optimizer_groups.no_decay_bias
(300, 160, True)
"""
from __future__ import annotations

from dataclasses import dataclass, field

import yaml

from deim.presets.models import MODEL_FACTORIES
from deim.presets.schedules import OPTIMIZER_GROUPS, SCHEDULES
from deim.presets.sections import ModelPreset, plain
from deim.presets.training import OptimizerGroups, TrainSchedule


@dataclass(frozen=True)
class Preset:
    """One named preset: ``model`` (backbone, encoder, decoder, criterion, matcher,
    post-processor, ``num_classes``, ``eval_spatial_size``), ``schedule`` (the paper's epochs,
    augmentation stages, LRs, EMA) and ``optimizer_groups``."""

    model: ModelPreset
    schedule: TrainSchedule
    optimizer_groups: OptimizerGroups = field(default_factory=OptimizerGroups)

    @property
    def name(self) -> str:
        return self.model.name

    def to_dict(self) -> dict:
        return {"model": self.model.to_dict(), "schedule": plain(self.schedule),
                "optimizer_groups": {"no_decay_bias": self.optimizer_groups.no_decay_bias}}

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def list_presets() -> list[str]:
    """Names of every preset: the 10 DEIM models, then the D-FINE and RT-DETRv2 baselines."""
    names = list(MODEL_FACTORIES)
    return sorted(names, key=lambda n: (not n.startswith("deim_"), "rtdetrv2" in n, names.index(n)))


def get_preset(name: str) -> Preset:
    """A fresh copy of preset ``name`` (safe to modify); ``ValueError`` listing the names when unknown."""
    try:
        factory = MODEL_FACTORIES[name]
    except KeyError:
        raise ValueError(f"unknown model preset {name!r}; choose one of {', '.join(list_presets())}") from None
    return Preset(model=factory(), schedule=SCHEDULES[name],
                  optimizer_groups=OPTIMIZER_GROUPS.get(name, OptimizerGroups()))


def preset_to_yaml(name: str) -> str:
    """Every value of preset ``name`` (model, schedule, optimiser groups) as YAML, in one place."""
    return get_preset(name).to_yaml()
