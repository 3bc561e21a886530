"""How far a run's EMA lags its raw weights: both evaluated on the validation images.

Every evaluation during training measures the EMA model. Its decay ``d`` averages over about
``1 / (1 - d)`` optimizer steps: the paper's 0.9999 is ~10,000 steps, a few COCO epochs, but most of
a run of a thousand steps, whose EMA then stays close to the weights of its first few hundred steps.
:func:`ema_vs_raw` scores a checkpoint's EMA and its raw (optimised) weights on the same images, which
is how the reduced pilot's plateau was traced (``notebooks/12_protocol_pilot``).
"""
from __future__ import annotations

from pathlib import Path

import torch

from deim.data.labels import LabelMap
from deim.engine.checkpointing import read_checkpoint
from deim.engine.config import TrainConfig
from deim.engine.data_build import build_eval_data
from deim.engine.inference import load_for_inference
from deim.engine.train_loop import evaluate_coco


def ema_horizon(decay: float) -> float:
    """The number of recent steps an EMA of target ``decay`` mostly averages over, ``1 / (1 - decay)``."""
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"EMA decay must lie in [0, 1), got {decay}")
    return 1.0 / (1.0 - decay)


def with_weights(state: dict, which: str) -> dict:
    """A training checkpoint whose inference weights (its EMA slot) are its ``ema`` or ``raw`` weights."""
    if which == "ema":
        return state
    if which == "raw":
        return {**state, "ema": {**state["ema"], "module": state["model"]}}
    raise ValueError(f"which must be 'ema' or 'raw', got {which!r}")


def ema_vs_raw(checkpoint: str | Path) -> dict[str, float]:
    """COCO AP / AP50 (fractions) of one of our training checkpoints' EMA and raw weights on its own
    validation images, with the EMA's decay, horizon and the run's optimizer steps.

    Keys: ``AP_ema``, ``AP50_ema``, ``AP_raw``, ``AP50_raw``, ``ema_decay``, ``ema_horizon``, ``steps``.
    """
    state = read_checkpoint(checkpoint)
    if "config" not in state or "ema" not in state or "model" not in state:
        raise ValueError(f"{checkpoint} is not a deim training checkpoint with model and EMA weights")
    cfg = TrainConfig.from_dict(state["config"])
    val, loader = build_eval_data(cfg.data, LabelMap.from_dict(state["label_map"]), seed=cfg.seed)
    out: dict[str, float] = {}
    for name in ("ema", "raw"):
        im = load_for_inference(with_weights(state, name), device="cpu")
        stats = evaluate_coco(im.model, im.postprocessor, loader, val.ann_file, val.label_map, torch.device("cpu"),
                              progress=False)
        out[f"AP_{name}"], out[f"AP50_{name}"] = stats["AP"], stats["AP50"]
    decay = float(state["ema"]["decay"])
    return {**out, "ema_decay": decay, "ema_horizon": ema_horizon(decay), "steps": int(state["ema"]["updates"])}
