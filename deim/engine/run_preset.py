"""One preset, resolved once per run: :func:`resolve_run_preset`.

A named preset has two typed halves: its model entry (:class:`deim.models.presets.ModelPreset`:
backbone, encoder, decoder, criterion, matcher, post-processor) and its paper training entry
(:mod:`deim.engine.schedules`: the schedule and the optimiser's parameter groups). A run's config
names the preset and overrides it with builder keys (``decoder.num_layers``, ``num_queries``,
``criterion.gamma``: the grammar of :mod:`deim.models.build`); :func:`resolve_run_preset` applies
them once and hands the model builder, the criterion builder, the post-processor builder and the
optimiser each their resolved part.
"""
from __future__ import annotations

from dataclasses import dataclass

from deim.engine.config import TrainConfig
from deim.engine.inference import capped_top_k
from deim.engine.param_groups import OptimizerConfig, OptimizerGroups
from deim.engine.schedules import TrainSchedule, get_optimizer_groups
from deim.models.build import apply_overrides, resolve_preset
from deim.models.presets import ModelPreset


@dataclass(frozen=True)
class RunPreset:
    """The preset of one run with its overrides applied.

    ``model``: the model (``cfg.model`` and the dataset's ``num_classes``); ``criterion``: the same
    with ``cfg.criterion`` on top (what :func:`deim.losses.build.build_criterion` reads);
    ``postprocessor``: the model with its top-k capped at the number of candidates;
    ``schedule``: the run's schedule; ``groups``: how the optimiser groups parameters.
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


def resolve_run_preset(cfg: TrainConfig, schedule: TrainSchedule, num_classes: int) -> RunPreset:
    """The preset of ``cfg`` resolved with its model and criterion overrides for ``num_classes``
    categories, trained with ``schedule`` (``cfg``'s, as the run adjusted it)."""
    overrides = dict(cfg.model, num_classes=num_classes)
    model = resolve_preset(cfg.preset, **overrides)
    return RunPreset(name=cfg.preset, model=model, criterion=apply_overrides(model, **cfg.criterion),
                     postprocessor=capped_top_k(model, overrides), schedule=schedule,
                     groups=get_optimizer_groups(cfg.preset))
