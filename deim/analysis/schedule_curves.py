"""The paper's Fig. 4: learning-rate and data-augmentation schedules per preset, over epochs."""
from __future__ import annotations

import pandas as pd

from deim.engine.lr_schedule import FlatCosine
from deim.presets.catalog import get_preset

COCO_TRAIN_IMAGES = 118_287  # train2017; sets the iterations per epoch (the warm-up is counted in iterations)

STAGE_COLORS = {"warmup": "#d9d9d9", "dense_o2o": "#9ecae1", "standard": "#fdd0a2", "no_aug": "#c7e9c0"}
STAGE_LABELS = {"warmup": "aug warm-up", "dense_o2o": "Dense O2O (mosaic + mixup)",
                "standard": "standard aug", "no_aug": "no aug"}


def coco_iters_per_epoch(preset: str) -> int:
    """Iterations per COCO epoch at the preset's total batch size."""
    return COCO_TRAIN_IMAGES // get_preset(preset).schedule.total_batch_size


def schedule_table(preset: str, iters_per_epoch: int | None = None, per_epoch: int = 4) -> pd.DataFrame:
    """Sampled ``per_epoch`` times per epoch: lr / base lr, stage, mosaic/mixup probability, multi-scale.

    ``iters_per_epoch`` defaults to COCO train2017 at the preset's batch size.
    """
    s = get_preset(preset).schedule
    iters_per_epoch = iters_per_epoch or coco_iters_per_epoch(preset)
    lr = FlatCosine.of(s, iters_per_epoch)
    epochs_f, lrs = lr.curve(1.0, per_epoch=per_epoch)
    rows = []
    for e, v in zip(epochs_f, lrs):
        epoch = int(e)
        rows.append({"preset": preset, "epoch": e, "lr_factor": v, "lr": v * s.lr, "stage": s.aug.stage(epoch),
                     "mosaic_prob": s.aug.mosaic_probability(epoch), "mixup_prob": s.aug.mixup_probability(epoch),
                     "multiscale": s.aug.multiscale_enabled(epoch)})
    return pd.DataFrame(rows)


def schedule_summary(presets: list[str]) -> pd.DataFrame:
    """One row per preset with every schedule number (the paper's per-model settings)."""
    rows = []
    for name in presets:
        s = get_preset(name).schedule
        e0, e1, e2 = s.aug.policy_epochs
        rows.append({"preset": name, "epochs": s.epochs, "warmup_end": e0, "dense_o2o_end": e1, "stop_epoch": e2,
                     "flat_epoch": s.flat_epoch, "no_aug_epoch": s.no_aug_epoch, "lr": s.lr,
                     "backbone_lr": s.backbone_lr, "lr_gamma": s.lr_gamma, "warmup_iter": s.warmup_iter,
                     "batch": s.total_batch_size, "multiscale_repeat": s.aug.base_size_repeat})
    return pd.DataFrame(rows)


def plot_schedules(presets: list[str], iters_per_epoch: int | None = None, ncols: int = 5):
    """A grid of panels: LR / base LR over epochs, with the augmentation stages shaded."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    nrows = (len(presets) + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.4 * ncols, 2.6 * nrows), squeeze=False, sharey=True)
    for ax, name in zip(axes.flat, presets):
        df = schedule_table(name, iters_per_epoch)
        s = get_preset(name).schedule
        for epoch in range(s.epochs):
            ax.axvspan(epoch, epoch + 1, color=STAGE_COLORS[s.aug.stage(epoch)], lw=0)
        ax.plot(df["epoch"], df["lr_factor"], color="k", lw=1.5)
        ax.set_title(name, fontsize=10)
        ax.set_xlim(0, s.epochs)
        ax.set_ylim(0, 1.05)
        ax.set_xlabel("epoch")
    for ax in axes.flat[len(presets):]:
        ax.axis("off")
    for row in axes:
        row[0].set_ylabel("lr / base lr")
    handles = [Patch(color=c, label=STAGE_LABELS[k]) for k, c in STAGE_COLORS.items()]
    fig.legend(handles=handles, loc="lower center", ncol=4, frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig
