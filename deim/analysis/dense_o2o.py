"""What the Dense O2O pipeline makes: sample batches per mode and targets (positives) per image.

Used by ``notebooks/03_dense_o2o_samples`` and ``notebooks/04_positives_per_image`` (the paper's
Fig. 5). Everything runs through the real training pipeline (``deim.data.training_set``: ``CocoDetection`` +
``build_train_transforms`` + ``BatchCollator``), with a one-epoch ``AugSchedule`` that forces
the mode under study.

Under one-to-one Hungarian matching every ground-truth box is matched to exactly one query
(when there are at least as many queries as boxes), so the number of positive samples of an
image equals ``min(#targets, num_queries)``: counting targets per training image *is* counting
O2O positives. :func:`check_o2o_positives` verifies that with the real matcher.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from deim.data.aug_schedule import AugSchedule
from deim.data.training_set import dense_o2o_training_set
from deim.losses.box_ops import box_cxcywh_to_xyxy
from deim.losses.matcher import HungarianMatcher

Target = dict[str, torch.Tensor]

#: mode -> (mosaic probability, mixup probability) inside the one studied epoch
MODES: dict[str, tuple[float, float]] = {
    "plain": (0.0, 0.0),
    "mosaic": (1.0, 0.0),
    "mixup": (0.0, 1.0),
    "mosaic+mixup": (1.0, 1.0),
}


def mode_schedule(mode: str, image_size: int) -> AugSchedule:
    """A schedule whose epoch 0 is exactly ``mode`` (no multi-scale; flip and resize always run).

    ``plain`` has no policy ops (the warm-up stage); ``mosaic`` puts every sample in a mosaic;
    ``mixup`` mixes every batch of plain samples; ``mosaic+mixup`` does both.
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose from {list(MODES)}")
    mosaic_p, mixup_p = MODES[mode]
    policy = (0, 1, 1) if mosaic_p > 0 else (1, 1, 1)
    return AugSchedule(policy_epochs=policy, mixup_epochs=(0, 1) if mixup_p > 0 else (0, 0),
                       mosaic_prob=mosaic_p, mixup_prob=mixup_p, base_size=image_size, base_size_repeat=None)


def sample_batch(img_folder: str | Path, ann_file: str | Path, mode: str, *, batch_size: int = 4,
                 image_size: int = 320, seed: int = 0, start: int = 0) -> tuple[torch.Tensor, list[Target]]:
    """One training batch of ``mode``: images ``[B, 3, S, S]`` in [0, 1], targets with ``boxes``
    (``cxcywh`` normalised) and ``labels``; mixed-up batches also carry per-box ``mixup`` weights."""
    schedule = mode_schedule(mode, image_size)
    dataset, collate = dense_o2o_training_set(img_folder, ann_file, schedule, seed=seed)
    n = len(dataset)
    return collate([dataset[(start + i) % n] for i in range(batch_size)])


def draw_batch(images: torch.Tensor, targets: Sequence[Target], names: Sequence[str] | None = None,
               title: str = "", ax_row: Sequence[plt.Axes] | None = None) -> Sequence[plt.Axes]:
    """Draw each image with its boxes (label names when given); returns the axes used."""
    if ax_row is None:
        _, ax_row = plt.subplots(1, len(images), figsize=(3 * len(images), 3.2))
    size = images.shape[-1], images.shape[-2]
    for ax, image, target in zip(ax_row, images, targets):
        ax.imshow(image.permute(1, 2, 0).clamp(0, 1).numpy())
        boxes = box_cxcywh_to_xyxy(target["boxes"]) * torch.tensor([size[0], size[1], size[0], size[1]])
        weights = target.get("mixup", torch.ones(len(boxes)))
        for (x0, y0, x1, y1), label, w in zip(boxes.tolist(), target["labels"].tolist(), weights.tolist()):
            color = "tab:orange" if w >= 0.5 else "tab:cyan"
            ax.add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, color=color, lw=1.2))
            if names is not None:
                ax.text(x0, y0, names[label], color="white", fontsize=6, va="bottom",
                        bbox=dict(facecolor=color, alpha=0.7, pad=0.5, lw=0))
        ax.set_title(f"{title} ({len(boxes)} boxes)" if title else f"{len(boxes)} boxes", fontsize=8)
        ax.axis("off")
    return ax_row


def targets_per_image(img_folder: str | Path, ann_file: str | Path, schedule: AugSchedule, epoch: int, *,
                      batch_size: int = 8, seed: int = 0, max_images: int | None = None,
                      mosaic_cache: bool = False) -> np.ndarray:
    """Number of targets of every training image of one epoch (after mosaic and mixup).

    Iterates the real pipeline in dataset order over ``max_images`` images (all by default);
    returns an int array with one entry per training image the model would see.
    """
    dataset, collate = dense_o2o_training_set(img_folder, ann_file, schedule, seed=seed, mosaic_cache=mosaic_cache)
    dataset.set_epoch(epoch)
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed + epoch)).tolist()
    if max_images is not None:
        order = order[:max_images]
    counts: list[int] = []
    for i in range(0, len(order), batch_size):
        _, targets = collate([dataset[j] for j in order[i:i + batch_size]])
        counts += [len(t["boxes"]) for t in targets]
    return np.asarray(counts, dtype=np.int64)


def o2o_positives(counts: np.ndarray, num_queries: int) -> np.ndarray:
    """O2O positives per image: each target gets one query while queries last."""
    return np.minimum(counts, num_queries)


def check_o2o_positives(counts: Sequence[int], num_queries: int, num_classes: int, seed: int = 0) -> bool:
    """Run the official-cost ``HungarianMatcher`` on random predictions for images with
    ``counts`` targets; true when every image gets exactly ``min(count, num_queries)`` matches."""
    g = torch.Generator().manual_seed(seed)
    counts = list(counts)
    outputs = {"pred_logits": torch.randn(len(counts), num_queries, num_classes, generator=g),
               "pred_boxes": torch.rand(len(counts), num_queries, 4, generator=g) * 0.5 + 0.25}
    targets = [{"labels": torch.randint(num_classes, (n,), generator=g),
                "boxes": torch.rand(n, 4, generator=g) * 0.5 + 0.25} for n in counts]
    indices = HungarianMatcher()(outputs, targets)
    return all(len(src) == min(n, num_queries) for (src, _), n in zip(indices, counts))


def positives_summary(samples: dict[str, np.ndarray]) -> pd.DataFrame:
    """Mean, median, percentiles and maximum of positives per image, one row per setting."""
    rows = []
    for name, values in samples.items():
        rows.append({"setting": name, "images": len(values), "mean": round(float(values.mean()), 2),
                     "median": float(np.median(values)), "p90": float(np.percentile(values, 90)),
                     "max": int(values.max()), "total": int(values.sum())})
    return pd.DataFrame(rows)


def plot_positives(samples: dict[str, np.ndarray], title: str = "") -> plt.Figure:
    """Histogram of positives per image for each setting, with the mean marked."""
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    top = max(int(v.max()) for v in samples.values())
    bins = np.arange(0, top + 2) - 0.5
    for (name, values), color in zip(samples.items(), ["tab:blue", "tab:orange", "tab:green", "tab:red"]):
        ax.hist(values, bins=bins, alpha=0.5, color=color, label=f"{name} (mean {values.mean():.1f})")
        ax.axvline(values.mean(), color=color, ls="--", lw=1)
    ax.set_xlabel("positive samples per image (O2O)")
    ax.set_ylabel("images")
    ax.set_title(title or "Positives per image over one epoch")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
