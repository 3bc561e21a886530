"""The flat-cosine learning-rate schedule of D-FINE/DEIM, as a stateless function of the iteration.

::

    it <= warmup                      : lr * (it / warmup) ** 2           quadratic warm-up
    warmup < it <= flat               : lr                                flat
    flat < it < total - no_aug        : cosine from lr down to lr * lr_gamma
    it >= total - no_aug              : lr * lr_gamma                     held for the no-aug epochs

Because it is a pure function of the iteration, resuming needs nothing but the iteration.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from deim.presets.training import TrainSchedule


def flat_cosine_lr(it: int, *, total_iter: int, warmup_iter: int, flat_iter: int, no_aug_iter: int,
                   init_lr: float, min_lr: float) -> float:
    """Learning rate at iteration ``it`` (0-based, counted over the whole run)."""
    if warmup_iter > 0 and it <= warmup_iter:
        return init_lr * (it / warmup_iter) ** 2
    if it <= flat_iter:
        return init_lr
    if it >= total_iter - no_aug_iter:
        return min_lr
    cosine_len = total_iter - flat_iter - no_aug_iter
    progress = (it - flat_iter) / cosine_len
    return min_lr + (init_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


@dataclass(frozen=True)
class FlatCosine:
    """Flat-cosine parameters in epochs/iterations; ``lr_at`` gives the factor for any group."""

    iters_per_epoch: int
    epochs: int
    flat_epoch: int
    no_aug_epoch: int
    warmup_iter: int
    lr_gamma: float = 0.5

    def __post_init__(self) -> None:
        if self.iters_per_epoch <= 0:
            raise ValueError(f"iters_per_epoch must be positive, got {self.iters_per_epoch}")
        if self.no_aug_epoch > self.epochs:
            raise ValueError(f"no_aug_epoch ({self.no_aug_epoch}) exceeds epochs ({self.epochs})")

    @classmethod
    def of(cls, schedule: TrainSchedule, iters_per_epoch: int) -> "FlatCosine":
        """The LR schedule of a training schedule, with ``iters_per_epoch`` iterations per epoch."""
        return cls(iters_per_epoch=iters_per_epoch, epochs=schedule.epochs, flat_epoch=schedule.flat_epoch,
                   no_aug_epoch=schedule.no_aug_epoch, warmup_iter=schedule.warmup_iter, lr_gamma=schedule.lr_gamma)

    @property
    def total_iter(self) -> int:
        return self.iters_per_epoch * self.epochs

    def lr_at(self, it: int, base_lr: float) -> float:
        return flat_cosine_lr(it, total_iter=self.total_iter, warmup_iter=self.warmup_iter,
                              flat_iter=self.iters_per_epoch * self.flat_epoch,
                              no_aug_iter=self.iters_per_epoch * self.no_aug_epoch,
                              init_lr=base_lr, min_lr=base_lr * self.lr_gamma)

    def curve(self, base_lr: float, per_epoch: int = 1) -> tuple[list[float], list[float]]:
        """(epoch as float, lr) sampled ``per_epoch`` times per epoch, for plots."""
        step = max(1, self.iters_per_epoch // per_epoch)
        its = list(range(0, self.total_iter, step))
        return [i / self.iters_per_epoch for i in its], [self.lr_at(i, base_lr) for i in its]


class FlatCosineScheduler:
    """Sets every optimizer group's ``lr`` from its ``initial_lr`` (recorded at construction).

    Call ``step(it)`` after each optimizer step with the global iteration. It holds no state
    beyond the base LRs, which are also stored in the optimizer's param groups.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, schedule: FlatCosine) -> None:
        self.optimizer = optimizer
        self.schedule = schedule
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])

    def step(self, it: int) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = self.schedule.lr_at(it, group["initial_lr"])

    def get_last_lr(self) -> list[float]:
        return [group["lr"] for group in self.optimizer.param_groups]
