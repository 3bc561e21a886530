"""The epoch-keyed data-augmentation schedule of DEIM (Dense O2O).

DEIM's training runs through four stages (0-based epochs, policy epochs ``[e0, e1, e2]``):

======================  ===============  ==================================================
stage                   epochs           what the data pipeline does
======================  ===============  ==================================================
``warmup``              ``[0, e0)``      no policy ops: only flip, resize (+ multi-scale)
``dense_o2o``           ``[e0, e1)``     per sample mosaic with ``mosaic_prob``, otherwise
                                         zoom-out + IoU crop; photometric distort; batch
                                         mixup with ``mixup_prob`` inside ``mixup_epochs``
``standard``            ``[e1, e2)``     the RT-DETR augmentation (distort, zoom-out, crop)
``no_aug``              ``[e2, ...)``    policy ops and multi-scale off
======================  ===============  ==================================================

``stop_epoch`` (= ``e2``) also ends multi-scale training and starts the LR/EMA stage 2.
The baselines (D-FINE, RT-DETRv2) have no warm-up and no Dense O2O stage: ``e0 = e1 = 0``.

The object is a pure function of the epoch, so DataLoader workers (persistent or not)
ask it with the epoch they are told about instead of relying on being re-forked.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Stage = Literal["warmup", "dense_o2o", "standard", "no_aug"]
# The RT-DETR augmentation of the standard stage (and of the Dense O2O stage's non-mosaic samples), in order.
STANDARD_OPS: tuple[str, ...] = ("photometric_distort", "zoom_out", "iou_crop")


@dataclass(frozen=True)
class AugSchedule:
    """Which augmentations run in which epoch.

    Args:
        policy_epochs: ``(e0, e1, e2)``: end of the warm-up, end of Dense O2O, stop epoch.
        mixup_epochs: ``(start, end)``: batch mixup may run for ``start <= epoch < end``.
        mosaic_prob: probability that a sample is a mosaic during the Dense O2O stage.
        mixup_prob: probability that a batch is mixed up inside ``mixup_epochs``.
        base_size: the training resolution (square), e.g. 640.
        base_size_repeat: how often ``base_size`` appears among the multi-scale sizes;
            ``None`` disables multi-scale training (the official N preset).
        standard_ops: which of :data:`STANDARD_OPS` run where policy ops are on (official: all
            three). A mosaic sample replaces zoom-out and IoU crop and keeps the photometric
            distort when it is listed. The reduced protocol runs none: at 96 px, zoom-out shrinks
            19-48 px items to 5-12 px and the detector learns less than half as fast.
    """

    policy_epochs: tuple[int, int, int]
    mixup_epochs: tuple[int, int] = (0, 0)
    mosaic_prob: float = 0.5
    mixup_prob: float = 0.5
    base_size: int = 640
    base_size_repeat: int | None = 3
    standard_ops: tuple[str, ...] = STANDARD_OPS

    def __post_init__(self) -> None:
        unknown = [op for op in self.standard_ops if op not in STANDARD_OPS]
        if unknown:
            raise ValueError(f"standard_ops {unknown} are not among {list(STANDARD_OPS)}")
        e0, e1, e2 = self.policy_epochs
        if not 0 <= e0 <= e1 <= e2:
            raise ValueError(f"policy_epochs must satisfy 0 <= e0 <= e1 <= e2, got {self.policy_epochs}")
        m0, m1 = self.mixup_epochs
        if not 0 <= m0 <= m1:
            raise ValueError(f"mixup_epochs must satisfy 0 <= start <= end, got {self.mixup_epochs}")
        for name in ("mosaic_prob", "mixup_prob"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {p}")
        if self.base_size % 32:
            raise ValueError(f"base_size must be a multiple of 32, got {self.base_size}")

    @classmethod
    def from_epochs(cls, epochs: int, no_aug_epochs: int, warmup_epochs: int = 4,
                    dense_until: int | None = None, **kwargs) -> "AugSchedule":
        """The DEIM rule: Dense O2O from ``warmup_epochs`` to ``4 + stop_epoch // 2``.

        ``stop_epoch = epochs - no_aug_epochs``. The official ResNet configs end Dense O2O at
        ``4 + epochs // 2`` instead; pass ``dense_until`` to choose it explicitly.
        """
        stop = epochs - no_aug_epochs
        if stop < warmup_epochs:
            raise ValueError(f"epochs - no_aug_epochs = {stop} is shorter than the warm-up ({warmup_epochs})")
        e1 = min(stop, warmup_epochs + stop // 2) if dense_until is None else dense_until
        return cls(policy_epochs=(warmup_epochs, e1, stop), mixup_epochs=(warmup_epochs, e1), **kwargs)

    @classmethod
    def baseline(cls, stop_epoch: int, **kwargs) -> "AugSchedule":
        """The D-FINE / RT-DETRv2 schedule: standard augmentation until ``stop_epoch``."""
        kwargs.setdefault("mosaic_prob", 0.0)
        kwargs.setdefault("mixup_prob", 0.0)
        return cls(policy_epochs=(0, 0, stop_epoch), mixup_epochs=(0, 0), **kwargs)

    @property
    def stop_epoch(self) -> int:
        return self.policy_epochs[2]

    def stage(self, epoch: int) -> Stage:
        e0, e1, e2 = self.policy_epochs
        if epoch < e0:
            return "warmup"
        if epoch < e1:
            return "dense_o2o"
        if epoch < e2:
            return "standard"
        return "no_aug"

    def mosaic_probability(self, epoch: int) -> float:
        """Probability that a sample of this epoch is a mosaic (0 outside Dense O2O)."""
        return self.mosaic_prob if self.stage(epoch) == "dense_o2o" else 0.0

    def mixup_probability(self, epoch: int) -> float:
        """Probability that a batch of this epoch is mixed up."""
        m0, m1 = self.mixup_epochs
        return self.mixup_prob if m0 <= epoch < m1 else 0.0

    def policy_ops_enabled(self, epoch: int) -> bool:
        """Photometric distort, zoom-out and IoU crop (and mosaic) may run."""
        return self.stage(epoch) in ("dense_o2o", "standard")

    def multiscale_enabled(self, epoch: int) -> bool:
        return self.base_size_repeat is not None and epoch < self.stop_epoch

    def multiscale_sizes(self) -> list[int]:
        """The official size list (``generate_scales``): sizes from ``0.75·base`` up in steps of 32,
        ``base_size_repeat`` × base, then from ``1.25·base`` down, the same number of steps.

        640 gives 480…608, 640×r, 800…672; 320 gives 224, 256, 288, 320×r, 384, 352, 320.
        """
        if self.base_size_repeat is None:
            return [self.base_size]
        s = self.base_size
        low, high = int(s * 0.75 / 32) * 32, int(s * 1.25 / 32) * 32
        steps = (s - low) // 32
        return ([low + 32 * i for i in range(steps)] + [s] * self.base_size_repeat
                + [high - 32 * i for i in range(steps)])

    def describe(self, epochs: int) -> list[dict]:
        """One row per epoch: stage, mosaic/mixup probabilities, multi-scale flag."""
        return [{"epoch": e, "stage": self.stage(e), "mosaic_prob": self.mosaic_probability(e),
                 "mixup_prob": self.mixup_probability(e), "multiscale": self.multiscale_enabled(e)}
                for e in range(epochs)]
