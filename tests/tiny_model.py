"""A tiny checkpoint in our training format (DEIM-D-FINE-N, 12 queries, 3 classes, 96 px), made in
a second on CPU, for tests that need weights to load: downloads, the detector API."""
from __future__ import annotations

from pathlib import Path

import torch

from deim.engine.config import DataConfig, TrainConfig
from deim.data.labels import LabelMap
from deim.models.build import build_model

TINY_MODEL = {"num_queries": 12, "num_denoising": 6}
TINY_LABELS = LabelMap((1, 2, 7), ("shirt", "bag", "boot"))


def write_tiny_checkpoint(path: Path, seed: int = 0) -> Path:
    """``{"model", "config", "label_map"}`` as our trainer writes them (no optimizer state)."""
    torch.manual_seed(seed)
    model = build_model("deim_dfine_n", num_classes=TINY_LABELS.num_classes, eval_spatial_size=96, **TINY_MODEL)
    cfg = TrainConfig(preset="deim_dfine_n", model=dict(TINY_MODEL), data=DataConfig(image_size=96))
    torch.save({"model": model.state_dict(), "config": cfg.to_dict(), "label_map": TINY_LABELS.to_dict()}, path)
    return path
