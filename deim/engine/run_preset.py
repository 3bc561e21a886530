"""The preset of one run, resolved once: :func:`resolve_run_preset`.

A named preset is one typed entry (:class:`deim.presets.catalog.Preset`): the model with its
criterion and post-processor sections, the paper's schedule and the optimiser's parameter groups.
A run's config names it and overrides its model with builder keys (``decoder.num_layers``,
``num_queries``: the grammar of :mod:`deim.presets.resolve`) and its criterion with
``cfg.criterion``; :func:`deim.engine.run_setup.build_run` resolves the name and the model
overrides once (:func:`deim.presets.resolve.resolve_preset`, before any work, for the query-budget
check) and :func:`resolve_run_preset` adds what the data decide (the number of classes, hence the
post-processor's top-k) and the run's schedule, handing the model builder, the criterion builder,
the post-processor builder and the optimiser each their part.
"""
from __future__ import annotations

from dataclasses import dataclass

from deim.engine.config import TrainConfig
from deim.engine.inference import capped_top_k
from deim.engine.param_groups import OptimizerConfig
from deim.presets.catalog import Preset
from deim.presets.resolve import apply_overrides, resolve_preset
from deim.presets.sections import ModelPreset
from deim.presets.training import OptimizerGroups, TrainSchedule


@dataclass(frozen=True)
class RunPreset:
    """The preset of one run with its overrides applied.

    ``model``: the model (``cfg.model`` and the dataset's ``num_classes``); ``criterion``: the same
    with ``cfg.criterion`` on top (what :func:`deim.losses.build.build_criterion` reads);
    ``postprocessor``: the model with its top-k capped at the number of candidates;
    ``schedule``: the run's schedule; ``groups``: how the optimiser groups parameters (the entry's).
    """

    name: str
    model: ModelPreset
    criterion: ModelPreset
    postprocessor: ModelPreset
    schedule: TrainSchedule
    groups: OptimizerGroups

    def optimizer_config(self) -> OptimizerConfig:
        """AdamW's learning rates and weight decay from the schedule, its groups from the preset."""
        s = self.schedule
        return OptimizerConfig(s.lr, s.backbone_lr, s.weight_decay, no_decay_bias=self.groups.no_decay_bias)


def resolve_run_preset(cfg: TrainConfig, schedule: TrainSchedule, num_classes: int,
                       resolved: Preset | None = None) -> RunPreset:
    """The preset of ``cfg`` for ``num_classes`` categories, its criterion with ``cfg.criterion`` on
    top, trained with ``schedule`` (``cfg``'s, as the run adjusted it). ``resolved``: ``cfg.preset``
    already resolved with ``cfg.model`` (:func:`deim.presets.resolve.resolve_preset`), else it is
    resolved here."""
    preset = resolve_preset(cfg.preset, **cfg.model) if resolved is None else resolved
    if preset.name != cfg.preset:
        raise ValueError(f"resolved preset {preset.name!r} is not the config's {cfg.preset!r}")
    model = apply_overrides(preset.model, num_classes=num_classes)
    return RunPreset(name=cfg.preset, model=model, criterion=apply_overrides(model, **cfg.criterion),
                     postprocessor=capped_top_k(model, cfg.model), schedule=schedule,
                     groups=preset.optimizer_groups)
