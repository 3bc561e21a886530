"""The experiment protocol of each scale: model, data, budget and seeds.

``reduced`` is ours (the paper has no such scale): a narrow DEIM-D-FINE-N on the built-in
Fashion-MNIST detection data (96 px canvases drawn at the training size), its backbone pre-trained
on Fashion-MNIST classification (the paper's ImageNet initialisation in miniature), the paper's
schedule *shape* (augmentation warm-up, Dense O2O, standard augmentation, no-aug epochs) squeezed
into a few epochs, three seeds per setting. ``smoke`` is the same code on a few dozen images for CI.
``full`` is the paper's setting on COCO (a GPU node).

How ``reduced`` was chosen (``notebooks/12_protocol_pilot``): the decision rule of
:data:`PILOT_RULE` was fixed first; then the candidates of :data:`PILOT_CANDIDATES` were trained,
judged only on the baseline (VFL, no Dense O2O) at its 2x budget with two seeds; the first that
meets the rule was to become ``reduced``. None met all of it (see :data:`PILOT_CHOICE` for what was
adopted and why). ``reduced`` has the adopted candidate's fields, so a pilot run and the study's run of
the same setting and seed share one run-cache entry. No DEIM, MAL or Dense O2O run was looked at while choosing,
and the method's own settings (γ, loss weights, matcher costs, schedule shape) were never touched.
"""
from __future__ import annotations

import dataclasses
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
        ema_decay: the EMA's target decay (``None`` = the paper's 0.9999). 0.9999 averages over about
            10,000 iterations, a few COCO epochs; a run of about a thousand iterations needs a shorter
            horizon, or its EMA, the model every evaluation measures, stays near its early weights.
        dataset: ``fashion`` (built-in) or ``coco`` (``data_root`` given at run time).
        fashion_scale: size of the built-in data (``deim.data.fashion.FASHION_SCALES``).
        canvas: overrides of that scale's canvas recipe (``deim.data.fashion.FASHION_CANVAS``).
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
        standard_ops: which RT-DETR augmentation ops run in the Dense O2O and standard stages
            (``None`` = the official three; see :class:`deim.data.aug_schedule.AugSchedule`).
        val_batch_size: the evaluation batch.
        snapshots: keep the EMA weights after this many evenly spaced epochs of every run (the last
            one included), for analyses of the trained models (notebook 13); 0 = none.
        note: one line on what distinguishes a pilot candidate (figures and tables show it).
    """

    scale: str
    preset: str
    model: dict[str, Any] = field(default_factory=dict)
    schedule_preset: str = "deim_dfine_s"
    lr: float | None = None
    backbone_lr: float | None = None
    warmup_iter: int | None = None
    ema_warmups: int | None = None
    ema_decay: float | None = None
    dataset: str = "fashion"
    fashion_scale: str = "reduced"
    canvas: dict[str, Any] = field(default_factory=dict)
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
    standard_ops: tuple[str, ...] | None = None
    val_batch_size: int = 8
    snapshots: int = 0
    note: str = ""


_NARROW_DFINE = {"num_queries": 40, "num_denoising": 20, "decoder.num_layers": 2}
_SMOKE = Protocol(scale="smoke", preset="deim_dfine_n", model={**_NARROW_DFINE, "eval_spatial_size": 96,
                                                             "num_queries": 12, "num_denoising": 6},
                  lr=4e-4, backbone_lr=2e-4, warmup_iter=2, ema_warmups=4, fashion_scale="smoke",
                  image_size=96, batch_size=8, epochs=2, seeds=(0,), num_workers=0, train_subset=16,
                  val_subset=8, gammas=(1.0, 1.5), snapshots=2,
                  backbone_pretrain=BackbonePretrain(image_size=32, min_item=16, iterations=4, batch_size=16))
_PILOT_BASE = Protocol(scale="reduced", preset="deim_dfine_n", model={**_NARROW_DFINE, "eval_spatial_size": 96},
                       lr=4e-4, backbone_lr=2e-4, warmup_iter=40, ema_warmups=100, image_size=96, batch_size=16,
                       epochs=6, seeds=(0, 1, 2), num_workers=1, train_subset=640, snapshots=3,
                       backbone_pretrain=BackbonePretrain(image_size=64, min_item=20, iterations=500, batch_size=128))

# The pilot: candidate regimes in the order they are judged (each trains on about the same number of
# images per 1x budget, 3,840, which is what the session's time allows); the first that meets
# PILOT_RULE is ``reduced``.
PILOT_CANDIDATES: dict[str, dict[str, Protocol]] = {
    "reduced": {
        "A": dataclasses.replace(_PILOT_BASE, scale="pilot_A",
                                 note="640 images x 6 epochs (1x), LR 4e-4 at batch 16"),
        "B": dataclasses.replace(_PILOT_BASE, scale="pilot_B", lr=8e-4, backbone_lr=4e-4,
                                 note="640 images x 6 epochs (1x), LR 8e-4 at batch 16"),
        # C (384 images x 10 epochs) was planned third; A's 2x baseline ended at 6 % AP, still climbing, so
        # the session's time went to D instead: a much larger budget, judged by the same rule (its time
        # check was expected to fail at today's training speed)
        "D": dataclasses.replace(_PILOT_BASE, scale="pilot_D", train_subset=None, epochs=5, warmup_iter=125,
                                 note="2,000 images x 5 epochs (1x), LR 4e-4 at batch 16"),
        # E, after D's plateau was traced to the EMA (D's 2x baseline: raw model 18.8 AP, its EMA 6.8):
        # an EMA horizon of ~100 iterations instead of 10,000, canvases without clutter (grey shading +
        # noise, as in the quick try), 1,250 images x 6 epochs so that every schedule stage
        # gets whole epochs within the time a three-seed Table 6 allows
        "E": dataclasses.replace(_PILOT_BASE, scale="pilot_E", train_subset=1250, epochs=6, warmup_iter=80,
                                 ema_decay=0.99, canvas={"clutter_per_image": (0, 0)},
                                 note="1,250 images x 6 epochs (1x), EMA decay 0.99, no clutter"),
        # F, after E's 2x baseline was still climbing at 13.5 % AP: E without the RT-DETR augmentation
        # (photometric distort, zoom-out, IoU crop) in the Dense O2O and standard stages. At 96 px, zoom-out
        # (up to 4x) shrinks the 19-48 px items to 5-12 px; diagnostic runs of E's 2x baseline (seed 0) reached
        # 2.8 % AP after 3 epochs with all three ops, 4.7 without zoom-out and 6.6 without any
        "F": dataclasses.replace(_PILOT_BASE, scale="pilot_F", train_subset=1250, epochs=6, warmup_iter=80,
                                 ema_decay=0.99, canvas={"clutter_per_image": (0, 0)}, standard_ops=(),
                                 note="E without zoom-out, IoU crop and photometric distort"),
        # G: F within the 120-minute budget (800 images x 6 epochs, evaluation at batch 32) and with the LR
        # doubled (B over A; a diagnostic of F at LR 8e-4: 7.2 vs 6.6 % AP after 3 epochs)
        "G": dataclasses.replace(_PILOT_BASE, scale="pilot_G", train_subset=800, epochs=6, warmup_iter=50,
                                 lr=8e-4, backbone_lr=4e-4, ema_decay=0.99, canvas={"clutter_per_image": (0, 0)},
                                 standard_ops=(), val_batch_size=32,
                                 note="F on 800 images x 6 epochs, LR 8e-4 at batch 16"),
    },
    "smoke": {  # the same code on tiny candidates (CI)
        "A": dataclasses.replace(_SMOKE, scale="pilot_smoke_A", seeds=(0, 1), note="16 images x 2 epochs"),
        "B": dataclasses.replace(_SMOKE, scale="pilot_smoke_B", seeds=(0, 1), lr=8e-4, backbone_lr=4e-4,
                                 note="16 images x 2 epochs, 2x LR"),
        "C": dataclasses.replace(_SMOKE, scale="pilot_smoke_C", seeds=(0, 1), train_subset=8, epochs=4,
                                 note="8 images x 4 epochs"),
    },
}
PILOT_SEEDS = (0, 1)
# The rule a candidate must meet (issue 10), judged on the 2x baseline's final-epoch COCO stats.
PILOT_RULE = {"min_AP": 0.30, "min_AP50": 0.50, "max_last_quarter_gain": 0.10, "max_seed_spread": 0.015,
              "max_reproduce_minutes": 120.0}
# The pilot's outcome (notebook 12). A, B and D end their 2x baselines at 6-7 % AP, and D looked
# converged; it was not: its EMA (decay 0.9999, a horizon of ~10,000 steps in a run of 1,250) had stayed
# near its early weights (D's seed-0 raw weights: 18.8 % AP, its EMA 6.8). E shortens the EMA horizon to
# ~100 steps and drops the background clutter; its 2x baseline ends at 13-14 % AP, still climbing. F drops
# the RT-DETR augmentation that shrinks 96 px canvases' items below what the detector sees, and learns
# about twice as fast per step; at 1,250 images per epoch its study does not fit 120 minutes. G is F cut to
# the budget. The rule for when no candidate meets every check, fixed before G was trained: ``reduced``
# adopts the candidate with the highest mean final AP among those whose estimated reproduction fits the
# budget (:func:`deim.analysis.protocol_pilot.best_within_budget`).
PILOT_CHOICE = "G"
# What a reproduction costs besides training, allowed for in the pilot's budget check: backbone
# pre-training (~4 min), data generation (~0.5 min) and executing the notebooks (~5 min).
FIXED_MINUTES = 10.0


def snapshot_epochs(epochs: int, count: int) -> tuple[int, ...]:
    """``count`` evenly spaced epochs of a run of ``epochs`` (0-based), the last one included."""
    return tuple(sorted({max(0, round((i + 1) * epochs / count) - 1) for i in range(count)})) if count else ()


PROTOCOLS: dict[str, Protocol] = {
    "smoke": _SMOKE,
    # seeds are not part of a run's key (each run has its own), so more seeds add runs and invalidate none
    "reduced": dataclasses.replace(PILOT_CANDIDATES["reduced"][PILOT_CHOICE], scale="reduced", seeds=(0, 1, 2),
                                   note=""),
    "full": Protocol(scale="full", preset="deim_rtdetrv2_r50", schedule_preset="deim_rtdetrv2_r50", dataset="coco",
                     image_size=640, batch_size=16, epochs=36, seeds=(0,), num_workers=4, eval_every=1,
                     backbone_weights_env="DEIM_BACKBONE_WEIGHTS"),
}
_PILOTS = {p.scale: p for candidates in PILOT_CANDIDATES.values() for p in candidates.values()}


def get_protocol(scale: str) -> Protocol:
    """The protocol of a scale (``smoke``, ``reduced``, ``full``) or of a pilot candidate (``pilot_A`` ...)."""
    found = PROTOCOLS.get(scale) or _PILOTS.get(scale)
    if found is None:
        raise ValueError(f"unknown scale {scale!r}; choose from {sorted(PROTOCOLS)} (or a pilot: {sorted(_PILOTS)})")
    return found
