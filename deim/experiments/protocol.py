"""The experiment protocol of each scale: model, data, budget and seeds.

``reduced`` is ours (the paper has no such scale): a narrow DEIM-D-FINE-N on the built-in
Fashion-MNIST detection data, its backbone pre-trained on Fashion-MNIST classification (the
paper's ImageNet initialisation in miniature), the paper's schedule *shape* (augmentation warm-up,
Dense O2O, standard augmentation, no-aug epochs) squeezed into 6 epochs, three seeds per setting,
so that every notebook together fits the 90-minute budget on a 2-core CPU (81 min measured from
an empty cache, README). ``smoke`` is the same code on
a few dozen images for CI. ``full`` is the paper's setting on COCO (a GPU node).

The protocol was fixed from the time budget and from pilot learning curves (does AP rise at
all?), before any comparison between settings was looked at; it is never tuned until a result
agrees with the paper.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from deim.engine.backbone_pretrain import BackbonePretrain


@dataclass(frozen=True)
class Protocol:
    """How runs of one scale are made.

    Args:
        preset: the model preset every run starts from.
        model: model overrides (``deim.build_model`` keys) shared by every run.
        schedule_preset: whose paper schedule *shape* is rescaled to ``epochs`` (DEIM-D-FINE-S: quadratic
            warm-up, flat, cosine to half the LR, no-aug epochs; the N preset has no cosine phase).
        lr / backbone_lr: base learning rates at ``batch_size``.
        warmup_iter / ema_warmups: iterations (the paper's 2000 / 1000 would cover most of a short run).
        dataset: ``fashion`` (built-in) or ``coco`` (``data_root`` given at run time).
        fashion_scale: size of the built-in data (``deim.data.fashion.FASHION_SCALES``).
        image_size: square training and evaluation size.
        batch_size: total batch size.
        epochs: the "1x" budget of the ablations; the baselines' "2x" doubles it.
        seeds: seeds of every compared setting.
        num_workers: DataLoader workers.
        eval_every: evaluate the EMA model every this many epochs (and at the end).
        train_subset / val_subset: fixed random subsets of the splits (``None`` = all).
        gammas / mix_grid: the γ values of Table 5 and the probabilities of Table 4's grid.
        backbone_pretrain: classification pre-training of the backbone on Fashion-MNIST before every run
            (stands in for the paper's ImageNet initialisation; ``None`` = from scratch).
        backbone_weights_env: environment variable naming a pretrained backbone file (the official
            ImageNet weights) that every run starts from; unset = random initialisation.
    """

    scale: str
    preset: str
    model: dict[str, Any] = field(default_factory=dict)
    schedule_preset: str = "deim_dfine_s"
    lr: float | None = None
    backbone_lr: float | None = None
    warmup_iter: int | None = None
    ema_warmups: int | None = None
    dataset: str = "fashion"
    fashion_scale: str = "reduced"
    image_size: int = 160
    batch_size: int = 16
    epochs: int = 6
    seeds: tuple[int, ...] = (0, 1, 2)
    num_workers: int = 1
    eval_every: int = 1
    train_subset: int | None = None
    val_subset: int | None = None
    gammas: tuple[float, ...] = (1.0, 1.25, 1.5, 2.0)
    mix_grid: tuple[float, ...] = (0.0, 0.5)
    backbone_pretrain: BackbonePretrain | None = None
    backbone_weights_env: str | None = None


_NARROW_DFINE = {"num_queries": 40, "num_denoising": 20, "decoder.num_layers": 2}

PROTOCOLS: dict[str, Protocol] = {
    "smoke": Protocol(scale="smoke", preset="deim_dfine_n", model={**_NARROW_DFINE, "eval_spatial_size": 96,
                                                                  "num_queries": 12, "num_denoising": 6},
                      lr=4e-4, backbone_lr=2e-4, warmup_iter=2, ema_warmups=4, fashion_scale="smoke",
                      image_size=96, batch_size=8, epochs=2, seeds=(0,), num_workers=0, train_subset=16,
                      val_subset=8, gammas=(1.0, 1.5),
                      backbone_pretrain=BackbonePretrain(image_size=32, min_item=16, iterations=4, batch_size=16)),
    "reduced": Protocol(scale="reduced", preset="deim_dfine_n", model={**_NARROW_DFINE, "eval_spatial_size": 128},
                        lr=4e-4, backbone_lr=2e-4, warmup_iter=60, ema_warmups=100, image_size=128, batch_size=8,
                        epochs=6, seeds=(0, 1, 2), num_workers=1, train_subset=500, val_subset=200,
                        backbone_pretrain=BackbonePretrain(image_size=64, min_item=20, iterations=300, batch_size=128)),
    "full": Protocol(scale="full", preset="deim_rtdetrv2_r50", schedule_preset="deim_rtdetrv2_r50", dataset="coco",
                     image_size=640, batch_size=16, epochs=36, seeds=(0,), num_workers=4, eval_every=1,
                     backbone_weights_env="DEIM_BACKBONE_WEIGHTS"),
}


def get_protocol(scale: str) -> Protocol:
    try:
        return PROTOCOLS[scale]
    except KeyError:
        raise ValueError(f"unknown scale {scale!r}; choose from {sorted(PROTOCOLS)}") from None
