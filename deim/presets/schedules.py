"""The training half of every named preset: the paper's schedules (official configs, merged by hand).

Every value comes from the official DEIM configs (see ``docs/official-differences.md``):
epochs, the augmentation policy epochs, mixup epochs, flat-cosine parameters, learning rates,
weight decay, batch size, EMA and multi-scale repeat. The baselines (D-FINE, RT-DETRv2) run
a constant learning rate after a quadratic warm-up (``flat_epoch`` beyond the run, ``lr_gamma 1``)
and standard augmentation until their stop epoch.

>>> s = SCHEDULES["deim_dfine_l"]; s.epochs, s.aug.policy_epochs, s.flat_epoch
(58, (4, 29, 50), 29)
"""
from __future__ import annotations

from dataclasses import dataclass

from deim.data.aug_schedule import AugSchedule
from deim.presets.training import OptimizerGroups, TrainSchedule

_NEVER = 4_000_000  # a flat phase longer than any run: constant LR after warm-up


@dataclass(frozen=True)
class _Rates:
    """The optimiser numbers of an official config: LRs, weight decay and the total batch size."""

    lr: float
    backbone_lr: float
    weight_decay: float
    total_batch_size: int


def _deim(epochs: int, policy: tuple[int, int, int], flat: int, no_aug: int, rates: _Rates, repeat: int | None,
          lr_gamma: float = 0.5, ema_warmups: int = 1000) -> TrainSchedule:
    aug = AugSchedule(policy_epochs=policy, mixup_epochs=(policy[0], policy[1]), mosaic_prob=0.5,
                      mixup_prob=0.5, base_size_repeat=repeat)
    return TrainSchedule(epochs=epochs, aug=aug, flat_epoch=flat, no_aug_epoch=no_aug, lr=rates.lr,
                         backbone_lr=rates.backbone_lr, weight_decay=rates.weight_decay, lr_gamma=lr_gamma,
                         warmup_iter=2000, total_batch_size=rates.total_batch_size, ema_warmups=ema_warmups)


def _baseline(epochs: int, stop: int, rates: _Rates, repeat: int | None, warmup_iter: int,
              ema_warmups: int) -> TrainSchedule:
    aug = AugSchedule.baseline(stop, base_size_repeat=repeat)
    return TrainSchedule(epochs=epochs, aug=aug, flat_epoch=_NEVER, no_aug_epoch=0, lr=rates.lr,
                         backbone_lr=rates.backbone_lr, weight_decay=rates.weight_decay, lr_gamma=1.0,
                         warmup_iter=warmup_iter, total_batch_size=rates.total_batch_size, ema_warmups=ema_warmups)


SCHEDULES: dict[str, TrainSchedule] = {
    # DEIM-D-FINE (configs/deim_dfine/deim_hgnetv2_*_coco.yml)
    "deim_dfine_n": _deim(160, (4, 78, 148), 7800, 12, _Rates(8e-4, 4e-4, 1e-4, 128), None, lr_gamma=1.0),
    "deim_dfine_s": _deim(132, (4, 64, 120), 64, 12, _Rates(4e-4, 2e-4, 1e-4, 32), 20),
    "deim_dfine_m": _deim(102, (4, 49, 90), 49, 12, _Rates(4e-4, 4e-5, 1e-4, 32), 6),
    "deim_dfine_l": _deim(58, (4, 29, 50), 29, 8, _Rates(5e-4, 2.5e-5, 1.25e-4, 32), 4),
    "deim_dfine_x": _deim(58, (4, 29, 50), 29, 8, _Rates(5e-4, 5e-6, 1.25e-4, 32), 3),
    # DEIM-RT-DETRv2 (configs/deim_rtdetrv2/deim_r*vd_*_coco.yml)
    "deim_rtdetrv2_r18": _deim(120, (4, 64, 117), 64, 3, _Rates(2e-4, 2e-4, 1e-4, 16), 3, ema_warmups=2000),
    "deim_rtdetrv2_r34": _deim(120, (4, 64, 117), 64, 3, _Rates(2e-4, 1e-4, 1e-4, 16), 3, ema_warmups=2000),
    "deim_rtdetrv2_r50m": _deim(60, (4, 34, 58), 34, 2, _Rates(2e-4, 2e-5, 1e-4, 16), 3, ema_warmups=2000),
    "deim_rtdetrv2_r50": _deim(60, (4, 34, 58), 34, 2, _Rates(2e-4, 2e-5, 1e-4, 16), 3, ema_warmups=2000),
    "deim_rtdetrv2_r101": _deim(60, (4, 34, 58), 34, 2, _Rates(2e-4, 2e-6, 1e-4, 16), 3, ema_warmups=2000),
    # D-FINE baselines (configs/deim_dfine/dfine_hgnetv2_*_coco.yml)
    "dfine_n": _baseline(160, 148, _Rates(8e-4, 4e-4, 1e-4, 128), None, 500, 1000),
    "dfine_s": _baseline(132, 120, _Rates(2e-4, 1e-4, 1e-4, 32), 20, 500, 1000),
    "dfine_m": _baseline(132, 120, _Rates(2e-4, 2e-5, 1e-4, 32), 6, 500, 1000),
    "dfine_l": _baseline(80, 72, _Rates(2.5e-4, 1.25e-5, 1.25e-4, 32), 4, 500, 1000),
    "dfine_x": _baseline(80, 72, _Rates(2.5e-4, 2.5e-6, 1.25e-4, 32), 3, 500, 1000),
    # RT-DETRv2 baselines (configs/deim_rtdetrv2/rtdetrv2_r*vd_*_coco.yml). The official R18
    # config mixes stop_epoch 72 with policy epoch 117; we use 117 for both.
    "rtdetrv2_r18": _baseline(120, 117, _Rates(1e-4, 1e-4, 1e-4, 16), 3, 2000, 2000),
    "rtdetrv2_r34": _baseline(120, 117, _Rates(1e-4, 5e-5, 1e-4, 16), 3, 2000, 2000),
    "rtdetrv2_r50m": _baseline(84, 81, _Rates(1e-4, 1e-5, 1e-4, 16), 3, 2000, 2000),
    "rtdetrv2_r50": _baseline(72, 72, _Rates(1e-4, 1e-5, 1e-4, 16), 3, 2000, 2000),
    "rtdetrv2_r101": _baseline(72, 72, _Rates(1e-4, 1e-6, 1e-4, 16), 3, 2000, 2000),
}


# The presets whose official config groups parameters other than the default (deim_hgnetv2_n_coco.yml,
# dfine_hgnetv2_n_coco.yml: biases without weight decay).
OPTIMIZER_GROUPS: dict[str, OptimizerGroups] = {
    "deim_dfine_n": OptimizerGroups(no_decay_bias=True),
    "dfine_n": OptimizerGroups(no_decay_bias=True),
}
