"""The training half of a preset: the paper's schedule and the optimiser's parameter groups.

:class:`TrainSchedule` is everything about *when* things happen in a run (epochs, the Dense O2O
augmentation stages, the flat-cosine LR phases, EMA) plus the optimiser's numbers;
:class:`OptimizerGroups` is how a preset's official config groups parameters beyond the default
(backbone / rest, norms without weight decay: :mod:`deim.engine.param_groups`). The values of every
named preset are in :mod:`deim.presets.catalog`; the LR schedule they drive is
:class:`deim.engine.lr_schedule.FlatCosine`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from deim.data.aug_schedule import AugSchedule


@dataclass(frozen=True)
class TrainSchedule:
    """Everything about *when* things happen in a training run, plus the optimiser numbers.

    ``flat_epoch`` / ``no_aug_epoch``: the LR stays at ``lr`` until ``flat_epoch``, then follows a
    cosine down to ``lr * lr_gamma``, reached ``no_aug_epoch`` epochs before the end;
    ``warmup_iter``: quadratic warm-up iterations; ``total_batch_size``: the batch the LRs are for.
    """

    epochs: int
    aug: AugSchedule
    flat_epoch: int
    no_aug_epoch: int
    lr: float
    backbone_lr: float
    weight_decay: float
    lr_gamma: float
    warmup_iter: int
    total_batch_size: int
    ema_decay: float = 0.9999
    ema_warmups: int = 1000
    clip_max_norm: float = 0.1

    @property
    def stop_epoch(self) -> int:
        return self.aug.stop_epoch

    def scaled_to_batch(self, total_batch_size: int) -> "TrainSchedule":
        """The linear scaling rule of the official README: LRs scale with the total batch size."""
        if total_batch_size <= 0:
            raise ValueError(f"total_batch_size must be positive, got {total_batch_size}")
        k = total_batch_size / self.total_batch_size
        return replace(self, lr=self.lr * k, backbone_lr=self.backbone_lr * k, total_batch_size=total_batch_size)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class OptimizerGroups:
    """How a preset's official config groups parameters, beyond backbone / rest and norms."""

    no_decay_bias: bool = False  # the official N configs also exempt encoder/decoder biases
